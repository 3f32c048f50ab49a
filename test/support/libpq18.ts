/**
 * The real libpq 18 client library for OAUTHBEARER tests: the embedded PostgreSQL 18 package ships
 * lib/libpq.so.5.18; libpq18-oauth-client.c is compiled against it with gcc at test time (once per suite,
 * into a temp directory). Without gcc the suites skip with that reason printed; nothing else is optional.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { embeddedBinDir } from '../../src/demo/postgres-cluster.js';

export interface Libpq18Client {
  readonly binary: string;
  readonly libDir: string;
  /** Connects with `conninfo` (no secrets) and runs `sql`; the hook hands libpq `token`. */
  run(conninfo: string, sql: string, token: string): Promise<Libpq18Outcome>;
  dispose(): void;
}

export interface Libpq18Outcome {
  /** openid_configuration and scope of each token request libpq 18 made through the hook. */
  readonly hooks: { readonly discoveryUrl: string; readonly scope: string }[];
  readonly value?: string;
  readonly sqlstate?: string;
  readonly error?: string;
}

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why the libpq 18 suites cannot run here, or undefined when they can. */
export function libpq18SkipReason(): string | undefined {
  if (!hasGcc()) return 'gcc is not installed: the libpq 18 OAUTHBEARER test client is compiled at test time (apt-get install gcc libpq-dev)';
  if (!existsSync('/usr/include/postgresql/libpq-fe.h')) return 'libpq-fe.h is missing (apt-get install libpq-dev)';
  return undefined;
}

export async function buildLibpq18Client(): Promise<Libpq18Client> {
  const libDir = join(dirname(await embeddedBinDir()), 'lib');
  if (!existsSync(join(libDir, 'libpq.so.5.18'))) throw new Error(`libpq.so.5.18 not found in ${libDir}`);
  const dir = mkdtempSync(join(tmpdir(), 'gprxy-libpq18-'));
  const source = join(dirname(fileURLToPath(import.meta.url)), 'libpq18-oauth-client.c');
  const binary = join(dir, 'oauth-client');
  execFileSync('gcc', ['-O1', '-Wall', '-o', binary, source, '-I/usr/include/postgresql', `-L${libDir}`, '-l:libpq.so.5.18', `-Wl,-rpath,${libDir}`], { stdio: 'pipe' });
  return {
    binary,
    libDir,
    run(conninfo, sql, token) {
      return new Promise((resolve, reject) => {
        execFile(
          binary,
          [conninfo, sql],
          // The token travels in the environment, never in argv (visible to every local user in ps).
          { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LD_LIBRARY_PATH: libDir, GPRXY_TEST_TOKEN: token }, timeout: 20_000 },
          (err, stdout) => {
            if (err && (err as { code?: unknown }).code !== 1) return reject(new Error(`libpq 18 client failed: ${err.message}\n${stdout}`));
            const hooks: { discoveryUrl: string; scope: string }[] = [];
            let value: string | undefined;
            let sqlstate: string | undefined;
            let error: string | undefined;
            for (const line of stdout.split('\n')) {
              const [kind, ...rest] = line.split(' ');
              if (kind === 'hook') hooks.push({ discoveryUrl: rest[0]!, scope: rest.slice(1).join(' ') });
              else if (kind === 'ok') value = rest.join(' ');
              else if (kind === 'error') {
                sqlstate = rest[0];
                error = stdout.slice(stdout.indexOf('error ') + 12);
              }
            }
            resolve({ hooks, ...(value !== undefined ? { value } : {}), ...(sqlstate ? { sqlstate } : {}), ...(error ? { error } : {}) });
          },
        );
      });
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
