/**
 * PgBouncer (Debian's package) configured like gprxy for a fair comparison: session pooling with the same
 * pool size, SCRAM to PostgreSQL, SCRAM for clients (the auth file holds the role's SCRAM verifier copied
 * from pg_authid, so PgBouncer logs in to the server with the client's proof and never stores a password),
 * and client TLS (optional per connection, like PostgreSQL) with a certificate from the benchmark's CA.
 * PgBouncer refuses to run as root: it is started with `-u postgres` then, from a directory postgres owns.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from '../src/demo/postgres-cluster.js';
import { spawnTracked, stopChild } from './processes.js';

export interface PgBouncerOptions {
  readonly dir: string;
  readonly server: { host: string; port: number; dbname: string };
  /** user → SCRAM verifier (SCRAM-SHA-256$iterations:salt$storedkey:serverkey) */
  readonly users: Record<string, string>;
  readonly poolSize: number;
  /** session (default) or transaction pooling (no server_reset_query then: PgBouncer runs none in that mode). */
  readonly poolMode?: 'session' | 'transaction';
  readonly maxClientConnections: number;
  readonly tls: { cert: string; key: string };
}

export interface PgBouncer {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

function postgresOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
}

async function waitForPort(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error('pgbouncer exited during startup');
    if (Date.now() > deadline) throw new Error(`pgbouncer did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startPgBouncer(o: PgBouncerOptions): Promise<PgBouncer> {
  const owner = postgresOwner();
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const port = await freePort();
  const file = (name: string, content: string) => {
    const path = join(o.dir, name);
    writeFileSync(path, content, { mode: 0o600 });
    if (owner) chownSync(path, owner.uid, owner.gid);
    return path;
  };
  const userlist = file('userlist.txt', Object.entries(o.users).map(([u, v]) => `"${u}" "${v}"\n`).join(''));
  const cert = file('server.crt', o.tls.cert);
  const key = file('server.key', o.tls.key);
  const ini = file(
    'pgbouncer.ini',
    [
      '[databases]',
      `${o.server.dbname} = host=${o.server.host} port=${o.server.port} dbname=${o.server.dbname}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      `logfile = ${join(o.dir, 'pgbouncer.log')}`,
      'auth_type = scram-sha-256',
      `auth_file = ${userlist}`,
      `pool_mode = ${o.poolMode ?? 'session'}`,
      `default_pool_size = ${o.poolSize}`,
      'min_pool_size = 0',
      'reserve_pool_size = 0',
      `max_client_conn = ${o.maxClientConnections}`,
      'server_reset_query = DISCARD ALL',
      // Idle clients waiting for a server must keep waiting (the memory measurement holds thousands).
      'query_wait_timeout = 0',
      'client_login_timeout = 0',
      'server_tls_sslmode = disable',
      'client_tls_sslmode = allow',
      `client_tls_cert_file = ${cert}`,
      `client_tls_key_file = ${key}`,
      'log_connections = 1',
      'log_disconnections = 1',
      'stats_period = 600',
      '',
    ].join('\n'),
  );
  if (owner) chownSync(o.dir, owner.uid, owner.gid);

  // -q: log to the logfile only, not also to stderr (a second copy of every connection line).
  const args = owner ? ['-q', '-u', 'postgres', ini] : ['-q', ini];
  const child = spawnTracked('pgbouncer', args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: o.dir });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-5000)));
  try {
    await waitForPort(port, 10_000, () => child.exitCode === null);
  } catch (e) {
    await stopChild(child, 'SIGKILL');
    let logTail = '';
    try {
      logTail = readFileSync(join(o.dir, 'pgbouncer.log'), 'utf8').slice(-3000);
    } catch {
      // no log written
    }
    throw new Error(`${(e as Error).message}\n${stderr}${logTail}`);
  }
  return {
    port,
    pid: child.pid!,
    // SIGINT would wait for clients (safe shutdown); SIGTERM is PgBouncer's immediate shutdown.
    stop: () => stopChild(child, 'SIGTERM'),
  };
}
