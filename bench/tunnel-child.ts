/**
 * `gprxy connect` for the benchmark, in its own process like the real CLI: a Tunnel on a free loopback
 * port in front of the proxy child, injecting a fixed access token (received over IPC, never argv).
 */
import { decodeJwt } from 'jose';
import { Tunnel } from '../src/tunnel/tunnel.js';

interface Init {
  type: 'init';
  proxy: { host: string; port: number; ca: string };
  token: string;
}

let tunnel: Tunnel | undefined;

async function stop(code = 0): Promise<never> {
  await tunnel?.close().catch(() => {});
  process.exit(code);
}

process.on('message', (raw: unknown) => {
  const m = raw as { type: 'init' | 'stats' | 'stop'; id?: number } & Partial<Omit<Init, 'type'>>;
  void (async () => {
    try {
      if (m.type === 'init') {
        const token = m.token!;
        const claims = decodeJwt(token) as Record<string, unknown>;
        const expiresAt = ((claims.exp as number | undefined) ?? 0) * 1000;
        tunnel = new Tunnel({
          databases: ['mydb'],
          proxy: m.proxy!,
          tokens: { getAccessToken: async () => ({ accessToken: token, expiresAt, claims }) },
          port: 0,
        });
        const [listener] = await tunnel.start();
        process.send!({ type: 'ready', port: listener!.port, pid: process.pid });
      } else if (m.type === 'stats') {
        process.send!({ id: m.id, memory: process.memoryUsage() });
      } else if (m.type === 'stop') {
        await stop(0);
      }
    } catch (e) {
      process.send!({ type: 'error', id: m.id, error: (e as Error).stack ?? String(e) });
    }
  })();
});

process.on('disconnect', () => void stop(0));
process.on('SIGINT', () => void stop(130));
process.on('SIGTERM', () => void stop(143));
