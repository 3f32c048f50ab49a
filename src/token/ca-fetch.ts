/**
 * Moved to src/net/ca-fetch.ts (issue 15). This re-export only keeps branches written before the move
 * compiling while they land; import from '../net/ca-fetch.js'. Remove once nothing imports it.
 */
export * from '../net/ca-fetch.js';
