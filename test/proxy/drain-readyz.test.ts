/**
 * /readyz says what keeps a replica out of rotation (issue 18): a database server that refuses TCP
 * connections, a provider whose JWKS cannot be loaded, a drain in progress. /healthz stays 200 through all
 * of it (the process is alive). Readiness follows config reloads.
 */
import { createServer } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { proxyDocument, startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;
let deadPort: number;
let base: string;

/** A loopback port nothing listens on (bound once, then closed). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

beforeAll(async () => {
  deadPort = await freePort();
  stack = await startProxyStack({ overrides: { metrics: { listen: '127.0.0.1:0' } } });
  base = `http://127.0.0.1:${stack.proxy.metricsAddress!.port}`;
});
afterAll(async () => {
  await stack?.stop();
});

async function get(path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`${base}${path}`);
  return { status: r.status, body: await r.text() };
}

async function reloadWith(overrides: Record<string, unknown>): Promise<void> {
  const leaf = await stack.idp.ca.issue(['localhost']);
  const files: Record<string, string> = { 'inline-cert': leaf.cert, 'inline-key': leaf.key, 'inline-ca': stack.idp.provider.caCert };
  const doc = proxyDocument(stack.cluster, stack.idp, leaf, { metrics: { listen: '127.0.0.1:0' }, ...overrides });
  await stack.proxy.reload(buildProxyConfig(doc, {}, '/inline', (p) => files[p.split('/').pop()!] ?? ''));
}

describe('/readyz', () => {
  it('is ready with keys and a reachable database; unready, naming it, while a database server refuses connections', async () => {
    expect(await get('/readyz')).toEqual({ status: 200, body: 'ready\n' });
    await reloadWith({
      databases: {
        mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb' },
        gone: { host: '127.0.0.1', port: deadPort, dbname: 'gone' },
      },
    });
    const r = await get('/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toMatch(new RegExp(`database gone: 127\\.0\\.0\\.1:${deadPort} unreachable \\(ECONNREFUSED\\)`));
    expect(r.body).not.toContain('mydb');
    expect((await get('/healthz')).status).toBe(200);
  });

  it("is unready while a provider's JWKS cannot be loaded, and ready again when the config drops it", async () => {
    await reloadWith({ providers: [{ issuer: stack.idp.provider.issuer, audience: 'https://gprxy.io', ca: 'inline-ca', jwks_uri: `https://127.0.0.1:${deadPort}/jwks.json` }] });
    const r = await get('/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toContain(`jwks: no signing keys loaded for ${stack.idp.provider.issuer}`);
    await reloadWith({});
    expect(await get('/readyz')).toEqual({ status: 200, body: 'ready\n' });
  });

  it('fails from the moment a drain begins, while a session may still finish', async () => {
    const token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: token, database: 'mydb', ssl: stack.ssl });
    await c.connect();
    // pg reports the FATAL, then the closed connection: the first error is the one the proxy sent.
    const ended = new Promise<unknown>((resolve) => c.on('error', resolve));
    const closing = stack.proxy.close(1000);
    const r = await get('/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toContain('draining');
    expect((await get('/healthz')).status).toBe(200);
    expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    await closing;
    expect(await ended).toMatchObject({ code: '57P01' });
    await c.end().catch(() => undefined);
  });
});
