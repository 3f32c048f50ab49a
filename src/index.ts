// The library entry point (`import { ... } from 'gprxy'`): what applications use besides the CLI.
export { gprxyPassword, type GprxyPasswordOptions } from './cli/pg-password.js';
