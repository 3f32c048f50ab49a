/**
 * Pass-through mode (DESIGN.md section 1): the proxy relays the client's startup to PostgreSQL and then
 * every byte both ways, authentication included, so PostgreSQL 18 validates OAuth tokens itself (SASL
 * OAUTHBEARER) or checks a user's own SCRAM/MD5 password. No pooling: one backend per client.
 * Until the first ReadyForQuery we read the server's messages (forwarding them untouched) to learn its
 * BackendKeyData, so a CancelRequest the client sends to the proxy reaches the right server.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { DatabaseConfig } from '../config/proxy-config.js';
import { parseBackendKeyData, parseErrorFields } from '../protocol/backend-messages.js';
import { cancelRequest, startupMessage, terminate } from '../protocol/client-messages.js';
import { sendAndClose } from '../net/send-and-close.js';
import { FrameReader } from '../protocol/frame-reader.js';
import { errorResponse } from '../protocol/server-messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import type { StartupMessagePacket } from '../protocol/startup.js';
import { defaultDialer, negotiateTls, type BackendTarget, type Dialer } from './backend.js';
import type { CancelRegistry } from './cancel-registry.js';
import { Relay, type RelayResult } from './relay.js';
import { BackendCode } from '../protocol/codes.js';

export interface PassthroughResult extends RelayResult {
  /** The server refused the login (its ErrorResponse was relayed to the client). */
  readonly refused?: string;
}

export async function relayPassthrough(
  client: Socket,
  database: DatabaseConfig,
  startup: StartupMessagePacket,
  pending: Buffer,
  deps: { logger: Logger; cancels: CancelRegistry; dialer?: Dialer },
): Promise<PassthroughResult> {
  const target: BackendTarget = { ...database, user: startup.parameters.user ?? '', password: '' };
  const dial = deps.dialer ?? defaultDialer;
  let backend: Socket;
  try {
    backend = await negotiateTls(dial(database.host, database.port), target);
  } catch (e) {
    const message = `database ${database.name} is unavailable: ${(e as Error).message}; try again later`;
    client.end(errorResponse({ severity: 'FATAL', code: SqlState.CANNOT_CONNECT_NOW, message }));
    return { reason: 'backend_error', backendIdle: false, bytesFromClient: 0, bytesFromBackend: 0, error: message };
  }
  backend.setNoDelay(true);
  // negotiateTls hands over a socket without an error listener: a reset must end this session, not the process.
  backend.on('error', (e) => {
    deps.logger.debug({ event: 'passthrough_backend_error', database: database.name, reason: e.message }, 'passthrough backend error');
    backend.destroy();
  });
  backend.write(startupMessage({ ...startup.parameters, database: database.dbname }));
  if (pending.length) backend.write(pending);

  // Authentication: bytes flow both ways untouched; we only read the server's messages.
  const login = await new Promise<{ key?: { processId: number; secretKey: Buffer }; refused?: string; gone?: string }>((resolve) => {
    const reader = new FrameReader({ maxMessageLength: 1024 * 1024 });
    let key: { processId: number; secretKey: Buffer } | undefined;
    const done = (outcome: { refused?: string; gone?: string }) => {
      backend.off('data', fromBackend);
      client.off('data', fromClient);
      backend.off('close', onGone);
      client.off('close', onGone);
      backend.pause();
      client.pause();
      resolve({ ...outcome, ...(key ? { key } : {}) });
    };
    // Before the server has authenticated the client, never buffer more than the socket's own window.
    const fromClient = (chunk: Buffer) => {
      if (!backend.write(chunk)) {
        client.pause();
        backend.once('drain', () => client.resume());
      }
    };
    const fromBackend = (chunk: Buffer) => {
      client.write(chunk);
      try {
        reader.push(chunk);
        for (let m = reader.nextMessage(); m; m = reader.nextMessage()) {
          if (m.type === BackendCode.BACKEND_KEY_DATA) key = parseBackendKeyData(m.body);
          else if (m.type === BackendCode.ERROR_RESPONSE) return done({ refused: parseErrorFields(m.body).message });
          else if (m.type === BackendCode.READY_FOR_QUERY) return done({});
        }
      } catch (e) {
        done({ gone: (e as Error).message });
      }
    };
    const onGone = () => done({ gone: 'connection closed during login' });
    backend.on('data', fromBackend);
    client.on('data', fromClient);
    backend.once('close', onGone);
    client.once('close', onGone);
    client.resume();
  });
  if (login.refused !== undefined || login.gone !== undefined) {
    client.end();
    backend.destroy();
    return { reason: login.refused !== undefined ? 'backend_closed' : 'client_closed', backendIdle: false, bytesFromClient: 0, bytesFromBackend: 0, ...(login.refused !== undefined ? { refused: login.refused } : { error: login.gone }) };
  }

  const key = login.key;
  const registered =
    !!key &&
    deps.cancels.registerKey(key.processId, key.secretKey, {
      cancel: () => {
        void negotiateTls(dial(database.host, database.port), target).then(
          (s) => void sendAndClose(s, cancelRequest(key.processId, key.secretKey)),
          (e: Error) => deps.logger.warn({ event: 'cancel_failed', database: database.name, reason: e.message }, 'could not forward cancel'),
        );
      },
    });
  if (key && !registered) {
    deps.logger.warn({ event: 'cancel_key_collision', database: database.name, pid: key.processId }, 'another session holds this cancel key; cancels for this session are not routed');
  }
  const relay = new Relay(client, backend);
  relay.start();
  const result = await relay.done;
  if (registered && key) deps.cancels.unregister(key.processId);
  // The relay swallows the client's Terminate (pooled sessions keep their backend); here it is the end.
  if (result.reason === 'client_terminate') backend.end(terminate());
  else backend.destroy();
  client.destroy();
  return result;
}
