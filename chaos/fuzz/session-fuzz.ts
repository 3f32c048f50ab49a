/**
 * Structure-aware session scripts over real sockets, for the proxy's session state machine and the tunnel's
 * local listener: an optional SSLRequest (followed by a real TLS upgrade when the server says S) or
 * GSSENCRequest, a StartupMessage (valid or mutated), a password (the real token, a mutated one, garbage, a
 * SASL message), then post-authentication traffic (simple and extended queries, mutated messages, a
 * Terminate), all cut into random chunks and sent without waiting for answers (pipelined). The client then
 * half-closes and the server must close the connection within the bound: one still open after it is a hang.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { passwordMessage, query, saslInitialResponse, sslRequest, startupMessage, terminate } from '../../src/protocol/client-messages.js';
import { extendedQuery } from '../../src/protocol/extended-query.js';
import { oauthBearerInitialResponse } from '../../src/protocol/oauthbearer.js';
import type { Rng } from '../lib/rng.js';
import { chunk, mutate } from './mutate.js';

export interface SessionTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  readonly token: string;
  /** CA for the TLS upgrade; absent: the script never upgrades (the tunnel's listener is plaintext). */
  readonly ca?: string;
}

export interface SessionOutcome {
  readonly closedByServer: boolean;
  readonly ms: number;
  readonly bytesIn: number;
  readonly tls: boolean;
}

const GSSENC = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);

/** The bytes of one script after negotiation: startup, credential, traffic. */
export function scriptBody(rng: Rng, t: SessionTarget): Buffer[] {
  const parts: Buffer[] = [];
  const startup = startupMessage({ user: t.user, database: t.database, application_name: 'fuzz' });
  parts.push(rng.chance(0.7) ? startup : mutate(rng, startup, [startup], 'startup'));
  const password = passwordMessage(t.token);
  const credential = rng.pick([
    () => password,
    () => password,
    () => mutate(rng, password, [password], 'tagged'),
    () => passwordMessage(rng.bytes(1 + rng.int(40)).toString('base64url')),
    () => saslInitialResponse('OAUTHBEARER', oauthBearerInitialResponse(t.token)),
    () => rng.bytes(rng.int(64)),
  ])();
  parts.push(credential);
  const traffic = [query('select 1'), extendedQuery('select $1::text', ['x']), query('begin'), query('select pg_sleep(0.01)'), query('rollback')];
  for (let i = rng.int(5); i > 0; i--) {
    const m = rng.pick(traffic);
    parts.push(rng.chance(0.25) ? mutate(rng, m, traffic, 'tagged') : m);
  }
  if (rng.chance(0.3)) parts.push(terminate());
  return parts;
}

/** Runs one script; resolves when the server closed the connection or the bound passed. */
export function runSession(rng: Rng, t: SessionTarget, boundMs: number): Promise<SessionOutcome> {
  const started = Date.now();
  const preamble = rng.int(10);
  const upgrade = !!t.ca && preamble < 4;
  return new Promise((resolve) => {
    let bytesIn = 0;
    let settled = false;
    let tls = false;
    let sock: Socket = netConnect({ host: t.host, port: t.port });
    const raw = sock;
    const timer = setTimeout(() => finish(false), boundMs);
    const finish = (closedByServer: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.destroy();
      sock.destroy();
      resolve({ closedByServer, ms: Date.now() - started, bytesIn, tls });
    };
    const sendBody = (s: Socket) => {
      const bytes = Buffer.concat(scriptBody(rng, t));
      const pieces = chunk(rng, bytes);
      let i = 0;
      const next = () => {
        if (settled || s.destroyed) return;
        if (i < pieces.length) {
          s.write(pieces[i++]!);
          if (rng.chance(0.2)) setTimeout(next, rng.int(20));
          else next();
        } else s.end();
      };
      next();
    };
    const watch = (s: Socket) => {
      s.on('data', (d: Buffer) => (bytesIn += d.length));
      s.on('error', () => finish(true));
      s.on('close', () => finish(true));
    };
    raw.on('error', () => finish(true));
    raw.once('connect', () => {
      if (upgrade) {
        raw.write(sslRequest());
        raw.once('data', (answer: Buffer) => {
          bytesIn += answer.length;
          if (answer[0] !== 0x53) return void (raw.on('close', () => finish(true)), sendBody(raw));
          const secure = tlsConnect({ socket: raw, ca: t.ca, servername: 'localhost' });
          sock = secure;
          tls = true;
          watch(secure);
          secure.once('secureConnect', () => sendBody(secure));
        });
        raw.on('close', () => finish(true));
        return;
      }
      watch(raw);
      if (preamble === 4) raw.write(sslRequest()); // plaintext after an SSLRequest: refused by a TLS proxy
      if (preamble === 5) raw.write(GSSENC);
      if (preamble === 6) raw.write(mutate(rng, sslRequest(), [sslRequest(), GSSENC], 'startup'));
      sendBody(raw);
    });
  });
}
