/**
 * What an idle Node.js TLS connection costs by itself, before any application state: a server process
 * that only holds connections (plain, tls.createServer, or a net socket upgraded with `new TLSSocket` as
 * gprxy does after SSLRequest), RSS after a full GC, slope between two connection counts. Extra server
 * environment (malloc knobs) can be given as NAME=VALUE;... Used for bench/RESULTS.md ("The floor ...").
 *
 *   node --import tsx bench/micro/tls-idle-memory.ts [plain,tlsserver,wrap,wrap-tls12,wrap-frag] [1000,3000] ['MALLOC_ARENA_MAX=1']
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, createServer as createTlsServer, TLSSocket } from 'node:tls';
import { createCertificateAuthority } from '../../src/demo/certificates.js';

interface Stat {
  rss: number;
  heap: number;
  held: number;
}

function serve(variant: string, cert: string, key: string): void {
  const tlsOptions = { cert, key, minVersion: 'TLSv1.2' as const, ...(variant.includes('tls12') ? { maxVersion: 'TLSv1.2' as const } : {}) };
  const context = createSecureContext(tlsOptions);
  const held = new Set<Socket>();
  const hold = (s: Socket) => {
    held.add(s);
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('close', () => held.delete(s));
  };
  let server: Server;
  if (variant === 'plain') server = createNetServer(hold);
  else if (variant === 'tlsserver') server = createTlsServer(tlsOptions, hold);
  else {
    server = createNetServer((raw) => {
      raw.once('data', () => {
        raw.pause();
        raw.write('S');
        const secure = new TLSSocket(raw, { isServer: true, secureContext: context });
        if (variant.includes('frag')) secure.setMaxSendFragment(512);
        hold(secure);
      });
    });
  }
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
  process.on('message', () => {
    const gc = (globalThis as { gc?: () => void }).gc!;
    gc();
    setTimeout(() => {
      gc();
      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
      process.send!({ rss, heap: process.memoryUsage().heapUsed, held: held.size } satisfies Stat);
    }, 200);
  });
  process.on('disconnect', () => process.exit(0));
}

async function drive(): Promise<void> {
  const [variantList = 'plain,tlsserver,wrap,wrap-tls12,wrap-frag', countList = '1000,3000', envList = ''] = process.argv.slice(2);
  const counts = countList.split(',').map(Number);
  const extraEnv = Object.fromEntries(envList.split(';').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
  const ca = await createCertificateAuthority();
  const leaf = await ca.issue(['localhost', '127.0.0.1']);
  for (const variant of variantList.split(',')) {
    const server = fork(import.meta.filename, ['serve', variant], { execArgv: ['--import', 'tsx', '--expose-gc'], env: { ...process.env, ...extraEnv, BENCH_CERT: leaf.cert, BENCH_KEY: leaf.key } });
    const [{ port }] = (await once(server, 'message')) as [{ port: number }];
    const stat = async (): Promise<Stat> => {
      server.send('stat');
      return ((await once(server, 'message')) as [Stat])[0];
    };
    const sockets: Socket[] = [];
    const openOne = () =>
      new Promise<void>((resolve, reject) => {
        const raw = netConnect({ port, host: '127.0.0.1' });
        raw.on('error', reject);
        const secure = (socket: Socket) => {
          const s = tlsConnect({ socket, ca: ca.cert, servername: 'localhost' });
          s.on('error', reject);
          s.on('secureConnect', () => (s.write('hello'), sockets.push(s), resolve()));
        };
        if (variant === 'plain') raw.on('connect', () => (sockets.push(raw), resolve()));
        else if (variant === 'tlsserver') secure(raw);
        else raw.on('connect', () => (raw.write('x'), raw.once('data', () => secure(raw))));
      });
    const openUpTo = async (n: number) => {
      let started = sockets.length;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (started < n) {
            started++;
            await openOne();
          }
        }),
      );
    };
    await openUpTo(50);
    for (const s of sockets.splice(0)) s.destroy();
    await new Promise((r) => setTimeout(r, 300));
    let previous = await stat();
    let previousCount = 0;
    const base = previous;
    const parts: string[] = [];
    for (const n of counts) {
      await openUpTo(n);
      await new Promise((r) => setTimeout(r, 500));
      const now = await stat();
      const slope = (now.rss - previous.rss) / (n - previousCount) / 1024;
      parts.push(`${n}: ${((now.rss - base.rss) / n / 1024).toFixed(1)} KiB/conn (slope ${slope.toFixed(1)}, JS heap ${((now.heap - base.heap) / n / 1024).toFixed(1)}; held ${now.held})`);
      previous = now;
      previousCount = n;
    }
    console.log(`${variant.padEnd(10)} ${parts.join(' | ')}`);
    for (const s of sockets) s.destroy();
    server.kill();
  }
}

if (process.argv[2] === 'serve') serve(process.argv[3]!, process.env.BENCH_CERT!, process.env.BENCH_KEY!);
else await drive();
