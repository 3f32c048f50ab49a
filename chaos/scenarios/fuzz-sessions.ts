/**
 * Scenario fuzz-sessions: structure-aware session scripts (chaos/fuzz/session-fuzz.ts) over real sockets
 * against `gprxy serve` (plaintext on loopback and TLS after SSLRequest) and against a tunnel's local listener
 * (gprxy connect's, in this process, relaying to the same proxy). Pass: every connection is closed by the
 * server within its bound (no hang), the proxy process stays up and logs no internal error, a normal login
 * works through both afterwards, the proxy's memory after GC comes back near where it started, no token in
 * the log.
 */
import pg from 'pg';
import { openTunnel } from '../../src/tunnel/open.js';
import { runSession, type SessionTarget } from '../fuzz/session-fuzz.js';
import { Rng } from '../lib/rng.js';
import { mb, percentile, Verdict, type Scenario, type ScenarioOptions, type ScenarioResult } from '../lib/scenario.js';
import { EMAIL, startChaosStack } from '../lib/stack.js';

const CONCURRENCY = 24;
const BOUND_MS = 10_000;
/** How long the proxy may take to retire its last sessions after every client left. */
const SETTLE_MS = 5_000;

async function fuzzFor(rng: Rng, target: SessionTarget, ms: number): Promise<{ runs: number; hangs: number; maxMs: number; durations: number[]; tls: number }> {
  const deadline = Date.now() + ms;
  const r = { runs: 0, hangs: 0, maxMs: 0, durations: [] as number[], tls: 0 };
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < deadline) {
        const o = await runSession(rng, target, BOUND_MS);
        r.runs++;
        if (o.tls) r.tls++;
        if (!o.closedByServer) r.hangs++;
        r.maxMs = Math.max(r.maxMs, o.ms);
        if (r.durations.length < 500_000) r.durations.push(o.ms);
      }
    }),
  );
  return r;
}

export const fuzzSessions: Scenario = {
  name: 'fuzz-sessions',
  summary: 'mutated session scripts over sockets against the proxy (plaintext and TLS) and the tunnel listener',
  async run(o: ScenarioOptions): Promise<ScenarioResult> {
    const v = new Verdict('fuzz-sessions');
    const seconds = o.seconds ?? (o.short ? 5 : 600);
    const seed = o.seed ?? Date.now() & 0xffffffff;
    v.figure('seed', seed);
    const rng = new Rng(seed);
    const stack = await startChaosStack({ proxy: { limits: { login_timeout: '2s', pool_wait_timeout: '5s', max_client_connections: 2000 } } });
    try {
      const token = await stack.token('alice');
      const memBefore = (await stack.stats(true)).memory;
      const proxyTarget: SessionTarget = { host: '127.0.0.1', port: stack.proxy.port, user: EMAIL.alice!, database: 'mydb', token, ca: stack.idp.ca.cert };
      const started = Date.now();
      const p = await fuzzFor(rng, proxyTarget, seconds * 600);
      v.figure('proxy: connections', p.runs);
      v.figure('proxy: of them over TLS', p.tls);
      v.figure('proxy: connection time p50 / p99 / max (ms)', `${percentile(p.durations, 50).toFixed(0)} / ${percentile(p.durations, 99).toFixed(0)} / ${p.maxMs}`);
      o.log(`proxy: ${p.runs} connections, ${p.hangs} hangs`);

      const tunnel = await openTunnel(
        { databases: ['mydb'], proxy: { host: '127.0.0.1', port: stack.proxy.port, ca: stack.idp.ca.cert }, port: 0, findFreePort: false },
        { source: { getAccessToken: async () => ({ accessToken: token, expiresAt: Date.now() + 3600_000, claims: { email: EMAIL.alice, sub: 'auth0|alice0001' } }) }, warn: () => undefined },
      );
      let t = { runs: 0, hangs: 0, maxMs: 0, durations: [] as number[], tls: 0 };
      let tunnelWorks = false;
      try {
        const port = tunnel.listeners[0]!.port;
        t = await fuzzFor(rng, { host: '127.0.0.1', port, user: EMAIL.alice!, database: 'mydb', token: '' }, seconds * 400);
        const c = new pg.Client({ host: '127.0.0.1', port, user: EMAIL.alice, database: 'mydb' });
        await c.connect();
        tunnelWorks = (await c.query('select 1 as one')).rows[0].one === 1;
        await c.end();
      } finally {
        await tunnel.close();
      }
      v.figure('tunnel: connections', t.runs);
      v.figure('tunnel: connection time p50 / max (ms)', `${percentile(t.durations, 50).toFixed(0)} / ${t.maxMs}`);
      const elapsed = (Date.now() - started) / 1000;
      v.figure('connections per second', Math.round((p.runs + t.runs) / elapsed));

      const c = new pg.Client(stack.clientConfig(token));
      await c.connect();
      const proxyWorks = (await c.query('select 1 as one')).rows[0].one === 1;
      await c.end();
      // Sessions end asynchronously (the last one may still be handing its backend back): wait for the count
      // to reach zero, bounded like the hangs above; a session that never ends still fails the check below.
      let after = await stack.stats(true);
      for (const deadline = Date.now() + SETTLE_MS; after.sessions > 0 && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 100));
        after = await stack.stats(after.sessions === 0);
      }
      if (after.sessions === 0) after = await stack.stats(true);
      v.figure('proxy heap after GC before / after (MB)', `${mb(memBefore.heapUsed)} / ${mb(after.memory.heapUsed)}`);
      v.figure('proxy RSS before / after (MB)', `${mb(memBefore.rss)} / ${mb(after.memory.rss)}`);
      v.figure('proxy sessions left', after.sessions);
      const internal = stack.logLines().filter((l) => l.event === 'internal_error').length;
      const reasons: Record<string, number> = {};
      for (const l of stack.logLines()) if (l.reason) reasons[String(l.reason)] = (reasons[String(l.reason)] ?? 0) + 1;
      v.figure('proxy end reasons', JSON.stringify(reasons));

      v.check(p.hangs === 0, `${p.hangs} proxy connections were still open ${BOUND_MS / 1000} s after the client's end`);
      v.check(t.hangs === 0, `${t.hangs} tunnel connections were still open ${BOUND_MS / 1000} s after the client's end`);
      v.check(internal === 0, `the proxy logged ${internal} internal errors`);
      v.check(proxyWorks, 'a normal login through the proxy failed after fuzzing');
      v.check(tunnelWorks, 'a normal connection through the tunnel failed after fuzzing');
      v.check(after.sessions === 0, `${after.sessions} proxy sessions still open after every fuzz client left`);
      v.check(after.memory.heapUsed - memBefore.heapUsed < 32 * 1048576, `proxy heap grew by ${mb(after.memory.heapUsed - memBefore.heapUsed)} MB`);
      v.check(stack.leakedTokens() === 0, 'a token appeared in the proxy log');
    } finally {
      await stack.stop();
    }
    return v.result();
  },
};
