/**
 * Pre-authentication memory (issue 11, item 7): what a client WITHOUT any credential makes `gprxy serve`
 * hold. Each connection does TLS (SSLRequest), a StartupMessage, waits for the password request and sends a
 * partial password, then stays silent until login_timeout. The proxy runs in its own process
 * (bench/proxy-child.ts); its RSS after a full GC is read before and after opening the connections.
 *
 * Two attacks: the issue's "partial 64 KiB password", and the largest partial password the proxy accepts
 * (a password message declaring MAX_PREAUTH_MESSAGE, all but its last bytes sent). Also a baseline row:
 * TLS + StartupMessage + nothing, to separate Node's TLS floor (~25-27 KiB, RESULTS.md) from what the
 * login itself buffers.
 *
 *   node --import tsx bench/preauth-memory.ts [--connections 1000] [--mmap-threshold 16384]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createCertificateAuthority } from '../src/demo/certificates.js';
import { sslRequest, startupMessage } from '../src/protocol/client-messages.js';
import { MAX_PREAUTH_MESSAGE } from '../src/proxy/login.js';
import { startNodeChild } from './processes.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const CONNECTIONS = arg('connections', 1000);
/** 0: glibc's defaults. E.g. 16384: blocks from 16 KiB up are mmapped and returned to the OS when freed. */
const MMAP_THRESHOLD = arg('mmap-threshold', 0);

type Stats = { memory: { heapUsed: number; external: number } };

function rssOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb[1]) * 1024;
}

/** A password message header declaring `length` (the int32 counts itself), followed by `sent` bytes of it. */
function partialPassword(length: number, sent: number): Buffer {
  const header = Buffer.alloc(5);
  header.write('p', 0, 'latin1');
  header.writeUInt32BE(length, 1);
  return Buffer.concat([header, Buffer.alloc(Math.max(0, sent), 0x61)]);
}

/** One unauthenticated connection; resolves once its bytes are sent (or the proxy refused it: `refused`). */
function openOne(port: number, ca: string, payload: Buffer | undefined, counters: { refused: number }): Promise<TLSSocket | undefined> {
  return new Promise((resolve, reject) => {
    const raw: Socket = netConnect({ host: '127.0.0.1', port, noDelay: true });
    raw.once('error', reject);
    raw.once('connect', () => {
      raw.write(sslRequest());
      raw.once('data', (answer: Buffer) => {
        if (answer[0] !== 0x53) return reject(new Error('proxy refused TLS'));
        const secure = tlsConnect({ socket: raw, ca, servername: 'localhost' });
        secure.on('error', () => {});
        secure.once('secureConnect', () => {
          let seen = Buffer.alloc(0);
          secure.on('data', (d: Buffer) => {
            seen = Buffer.concat([seen, d]);
            if (d.includes(0x45) && seen.indexOf(0x45) >= (seen[0] === 0x52 ? 9 : 0)) {
              counters.refused++;
              seen = Buffer.alloc(0);
              return;
            }
            // 'R' with code 3: the cleartext password request.
            if (seen.length >= 9 && seen[0] === 0x52 && seen.readInt32BE(5) === 3 && payload) {
              secure.write(payload, () => resolve(secure));
              payload = undefined;
            }
          });
          secure.write(startupMessage({ user: 'mallory@example.com', database: 'mydb' }));
          if (!payload) setImmediate(() => resolve(secure));
        });
        secure.once('close', () => resolve(undefined));
      });
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'gprxy-preauth-'));
  const ca = await createCertificateAuthority('preauth bench CA');
  const leaf = await ca.issue(['localhost', '127.0.0.1']);
  writeFileSync(join(dir, 'server.crt'), leaf.cert);
  writeFileSync(join(dir, 'server.key'), leaf.key, { mode: 0o600 });
  // Nothing behind the proxy is ever reached: no connection authenticates.
  const config = {
    listen: '127.0.0.1:0',
    tls: { cert: 'server.crt', key: 'server.key' },
    providers: [{ issuer: 'https://127.0.0.1:9/', audience: 'https://gprxy.io', jwks_uri: 'https://127.0.0.1:9/jwks.json' }],
    role_mapping: [{ role: 'pg_reader', account: 'app_reader' }],
    accounts: { app_reader: { password: 'unused-password' } },
    databases: { mydb: { host: '127.0.0.1', port: 9 } },
    limits: { max_client_connections: 20_000, login_timeout: '10m' },
    log: { level: 'fatal' },
  };
  writeFileSync(join(dir, 'gprxy.json'), JSON.stringify(config), { mode: 0o600 });

  const scenarios: { name: string; payload: Buffer | undefined }[] = [
    { name: 'TLS + StartupMessage, no password (baseline)', payload: undefined },
    { name: 'partial 64 KiB password (declared 65,536, 60,000 bytes sent)', payload: partialPassword(65_536, 60_000) },
    {
      name: `largest partial password accepted (declared ${MAX_PREAUTH_MESSAGE}, all but 16 bytes sent)`,
      payload: partialPassword(MAX_PREAUTH_MESSAGE, MAX_PREAUTH_MESSAGE - 4 - 16),
    },
  ];
  console.log(`pre-authentication memory: ${CONNECTIONS} connections per row; MAX_PREAUTH_MESSAGE = ${MAX_PREAUTH_MESSAGE} bytes; node ${process.version}`);
  console.log(`malloc: ${MMAP_THRESHOLD ? `MALLOC_MMAP_THRESHOLD_=${MMAP_THRESHOLD} (freed large blocks go back to the OS: RSS close to live memory)` : 'glibc defaults (RSS keeps freed memory: closer to the peak)'}`);
  console.log('| connections without a credential | proxy RSS, KiB per connection | JS heap + external, KiB per connection | refused by the proxy | still open |');
  console.log('|---|--:|--:|--:|--:|');
  try {
    for (const s of scenarios) {
      // A fresh proxy per row, so rows do not share allocator state.
      const proxy = await startNodeChild<{ port: number; pid: number }>(
        join(import.meta.dirname, 'proxy-child.ts'),
        { configPath: join(dir, 'gprxy.json') },
        { execArgv: ['--expose-gc'], ...(MMAP_THRESHOLD ? { env: { MALLOC_MMAP_THRESHOLD_: String(MMAP_THRESHOLD) } } : {}) },
      );
      try {
        const js = (m: Stats) => m.memory.heapUsed + m.memory.external;
        const jsBefore = js(await proxy.request<Stats>({ type: 'gc' }));
        await new Promise((r) => setTimeout(r, 500));
        const before = rssOf(proxy.ready.pid);
        const counters = { refused: 0 };
        const sockets: (TLSSocket | undefined)[] = [];
        for (let i = 0; i < CONNECTIONS; i += 50) {
          sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, CONNECTIONS - i) }, () => openOne(proxy.ready.port, ca.cert, s.payload, counters)))));
        }
        // Let the proxy read everything that was sent, then collect garbage and measure.
        await new Promise((r) => setTimeout(r, 2000));
        const jsAfter = js(await proxy.request<Stats>({ type: 'gc' }));
        await new Promise((r) => setTimeout(r, 500));
        const after = rssOf(proxy.ready.pid);
        const open = sockets.filter((x) => x && !x.destroyed).length;
        const kib = (n: number) => (n / CONNECTIONS / 1024).toFixed(1);
        console.log(`| ${s.name} | ${kib(after - before)} | ${kib(jsAfter - jsBefore)} | ${counters.refused} | ${open} |`);
        for (const socket of sockets) socket?.destroy();
      } finally {
        await proxy.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
