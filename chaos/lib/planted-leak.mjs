/**
 * A planted leak for the soak's own test (`npm run soak -- --plant-leak BYTES`): loaded into the proxy process with
 * `--import file:///…/planted-leak.mjs?bytes=N`, it keeps N bytes (touched, so they are resident) for every TCP
 * connection the process accepts, for ever. It shows which leak the soak's RSS verdict catches; it is never loaded
 * otherwise. Plain JavaScript, so it needs no loader in the child.
 */
import net from 'node:net';

const bytes = Number(new URL(import.meta.url).searchParams.get('bytes'));
if (!Number.isInteger(bytes) || bytes <= 0) throw new Error(`planted-leak.mjs: ?bytes=N expected, got ${import.meta.url}`);
const kept = [];
const emit = net.Server.prototype.emit;
net.Server.prototype.emit = function (event, ...args) {
  if (event === 'connection') kept.push(Buffer.alloc(bytes, 1));
  return emit.call(this, event, ...args);
};
