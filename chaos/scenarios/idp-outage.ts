/**
 * Scenario idp-outage: the OIDC provider down (its listener closed: connection refused) while a tunnel
 * (gprxy connect's openTunnel, with the CLI's TokenSource over a real refresh token) renews 6-second tokens
 * and clients connect through it. Pass: before the last token expires connections keep working (the last
 * token is kept), the engineer is told once what is wrong (not a line per retry or per connection), the
 * tunnel recovers by itself within 5 s of the provider being back, the proxy keeps verifying with the keys
 * it knows, and no token appears in any message or log.
 */
import pg from 'pg';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { OidcClient } from '../../src/oauth/oidc-client.js';
import { TokenSource } from '../../src/oauth/token-source.js';
import { MemoryTokenStore } from '../../src/oauth/token-store.js';
import { openTunnel } from '../../src/tunnel/open.js';
import { SECRET_PATTERNS } from '../../test/support/run-log.js';
import { Load } from '../lib/load.js';
import { Verdict, type Scenario, type ScenarioOptions, type ScenarioResult } from '../lib/scenario.js';
import { EMAIL, startChaosStack } from '../lib/stack.js';

const TOKEN_SECONDS = 6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const idpOutage: Scenario = {
  name: 'idp-outage',
  summary: 'the OIDC provider down while a tunnel refreshes 6-second tokens under load (2 minutes; 8 s short)',
  async run(o: ScenarioOptions): Promise<ScenarioResult> {
    const v = new Verdict('idp-outage');
    const outageMs = (o.seconds ?? (o.short ? 8 : 120)) * 1000;
    const stack = await startChaosStack({ accessTokenTtlSeconds: TOKEN_SECONDS });
    const provider = stack.idp.provider;
    const messages: string[] = [];
    try {
      const person = () => OidcClient.discover({ issuer: provider.issuer, clientId: DEV_CLI_CLIENT_ID, audience: DEV_AUDIENCE, scopes: 'openid profile email offline_access', fetch: fetchWithCa(provider.caCert) });
      const client = await person();
      const device = await client.startDeviceAuthorization();
      const approving = provider.approveDevice(device.userCode, 'alice');
      const login = await client.pollDeviceAuthorization(device, { intervalSeconds: 0.05 });
      await approving;
      const store = new MemoryTokenStore();
      await store.save('default', { issuer: provider.issuer, clientId: DEV_CLI_CLIENT_ID, refreshToken: login.refreshToken, accessToken: login.accessToken, accessTokenIssuedAt: login.issuedAt, accessTokenExpiresAt: login.expiresAt });
      const source = new TokenSource({ profile: 'default', mode: { kind: 'stored', store }, client: person, logger: { warn: (m) => messages.push(`source: ${m}`) } });
      const tunnel = await openTunnel(
        { databases: ['mydb'], proxy: { host: '127.0.0.1', port: stack.proxy.port, ca: stack.idp.ca.cert }, port: 0, findFreePort: false },
        { source, warn: (m) => messages.push(`tunnel: ${m}`) },
      );
      const port = tunnel.listeners[0]!.port;
      const timeline: { t: number; ok: boolean }[] = [];
      const started = Date.now();
      const load = new Load({
        workers: 2,
        stepsPerConnection: 1,
        retryMs: 200,
        hangMs: 15_000,
        config: () => ({ host: '127.0.0.1', port, user: EMAIL.alice, database: 'mydb', connectionTimeoutMillis: 15_000 }),
        step: async (c) => {
          await c.query('select 1');
          timeline.push({ t: Date.now() - started, ok: true });
          await sleep(100);
        },
      });
      const refreshes = () => provider.counters().tokenRequests.refresh_token ?? 0;
      await sleep(o.short ? 4000 : 15_000);
      const refreshesBefore = refreshes();
      const lastToken = await tunnel.keeper.getAccessToken();
      const messagesBefore = messages.length;
      o.log(`provider down for ${outageMs / 1000} s`);
      const down = Date.now() - started;
      await provider.outage.begin();
      await sleep(outageMs);
      await provider.outage.end();
      const up = Date.now() - started;
      o.log('provider back');
      // Recovery: a connection through the tunnel with a token obtained after the outage.
      let recoveredMs = Infinity;
      while (Date.now() - started - up < 30_000) {
        const k = await tunnel.keeper.getAccessToken().catch(() => undefined);
        if (k && k.accessToken !== lastToken.accessToken && refreshes() > refreshesBefore) {
          const c = new pg.Client({ host: '127.0.0.1', port, user: EMAIL.alice, database: 'mydb' });
          c.on('error', () => undefined);
          const ok = await c.connect().then(
            () => c.query('select 1').then(() => true),
            () => false,
          );
          await c.end().catch(() => undefined);
          if (ok) {
            recoveredMs = Date.now() - started - up;
            break;
          }
        }
        await sleep(100);
      }
      await sleep(1000);
      await load.stop();
      await tunnel.close();

      const keptUntil = lastToken.expiresAt - started;
      const okDuringKept = timeline.filter((x) => x.ok && x.t > down + 200 && x.t < Math.min(keptUntil - 2500, up)).length;
      const duringOutage = messages.slice(messagesBefore);
      v.figure('outage (s)', outageMs / 1000);
      v.figure('token lifetime (s)', TOKEN_SECONDS);
      v.figure('queries through the tunnel', timeline.length);
      v.figure('connections that worked on the kept token during the outage', okDuringKept);
      v.figure('client errors', JSON.stringify(load.stats.errors));
      v.figure('messages to the engineer during the outage and after', duringOutage.length);
      const distinct = new Map<string, number>();
      for (const m of duringOutage) distinct.set(m.slice(0, 160), (distinct.get(m.slice(0, 160)) ?? 0) + 1);
      for (const [i, [m, n]] of [...distinct].entries()) v.figure(`message ${i + 1} (×${n})`, m);
      v.figure('recovered after the provider was back (ms)', recoveredMs);
      v.check(keptUntil - 2500 <= down + 200 || okDuringKept > 0, 'no connection worked during the outage although the last token was still valid');
      v.check(recoveredMs <= 5000, `the tunnel worked again ${recoveredMs} ms after the provider was back (bound 5 s)`);
      const refreshFailures = duringOutage.filter((m) => /refresh/i.test(m)).length;
      // The token source says it keeps the current token, the tunnel that refreshing fails, then that it works again.
      v.check(refreshFailures <= 3, `the engineer was told ${refreshFailures} times about the refresh during one outage (once what is wrong, once that it works again)`);
      v.check(duringOutage.length <= 4, `${duringOutage.length} messages during one outage (say once what is wrong)`);
      v.check(load.stats.hangs === 0, `${load.stats.hangs} client operations through the tunnel hung`);
      v.check(!messages.some((m) => SECRET_PATTERNS.some((p) => p.test(m))), 'a message to the engineer holds a token');
      v.check(stack.leakedTokens() === 0, 'a token appeared in the proxy log');
      const proxyAuth = stack.logLines().filter((l) => l.event === 'auth_success' && typeof l.time === 'string' && Date.parse(l.time) - started > down && Date.parse(l.time) - started < up).length;
      v.figure('logins the proxy verified during the outage', proxyAuth);
    } finally {
      await provider.outage.end().catch(() => undefined);
      await stack.stop();
    }
    return v.result();
  },
};
