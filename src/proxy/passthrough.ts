/**
 * Pass-through mode (DESIGN.md section 1): the proxy relays the client's startup to PostgreSQL and then
 * every byte both ways, authentication included, so PostgreSQL 18 validates OAuth tokens itself (SASL
 * OAUTHBEARER) or checks a user's own SCRAM/MD5 password. No pooling: one backend per client.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { DatabaseConfig } from '../config/proxy-config.js';
import { startupMessage } from '../protocol/client-messages.js';
import { errorResponse } from '../protocol/server-messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import type { StartupMessagePacket } from '../protocol/startup.js';
import { defaultDialer, negotiateTls, type Dialer } from './backend.js';
import { Relay, type RelayResult } from './relay.js';

export async function relayPassthrough(
  client: Socket,
  database: DatabaseConfig,
  startup: StartupMessagePacket,
  pending: Buffer,
  deps: { logger: Logger; dialer?: Dialer },
): Promise<RelayResult> {
  let backend: Socket;
  try {
    const raw = (deps.dialer ?? defaultDialer)(database.host, database.port);
    backend = await negotiateTls(raw, { ...database, user: startup.parameters.user ?? '', password: '' });
  } catch (e) {
    client.end(
      errorResponse({ severity: 'FATAL', code: SqlState.CANNOT_CONNECT_NOW, message: `database ${database.name} is unavailable: ${(e as Error).message}; try again later` }),
    );
    return { reason: 'backend_error', backendIdle: false, bytesFromClient: 0, bytesFromBackend: 0, error: (e as Error).message };
  }
  const parameters = { ...startup.parameters, database: database.dbname };
  backend.write(startupMessage(parameters));
  const relay = new Relay(client, backend);
  relay.start(pending);
  const result = await relay.done;
  client.destroy();
  backend.destroy();
  return result;
}
