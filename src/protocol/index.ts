// The PostgreSQL wire codec used by the proxy and the tunnel: pure functions and classes, no I/O.
// pg-protocol (npm) only parses backend messages and serializes frontend ones, so the server side
// (reading what clients send, writing what a server answers) is written here.
export * from './codes.js';
export * from './sqlstate.js';
export * from './errors.js';
export * from './frame-reader.js';
export * from './startup.js';
export * from './server-messages.js';
export * from './client-messages.js';
export * from './message-scanner.js';
export * from './extended-messages.js';
export * from './oauthbearer.js';
export * from './bind-message.js';
