/**
 * The status page (issue 21) on the metrics listener, in a real browser: headless Chromium (Debian's
 * package, test/system-packages.txt) driven by playwright-core. The page renders sessions by user and
 * database, pools, refusals of the last hour and JWKS state; a hostile user name stays text (asserted on
 * the DOM, not on the HTML source); the CSP lets its one stylesheet in and nothing else. The screenshot
 * is kept under .tmp/ as an artifact, not compared.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_USERS } from '../../src/demo/oidc-provider.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';

const HOSTILE = `<img src=x onerror="document.title='pwned'">`;
const USERS = [
  ...DEV_USERS,
  { username: 'olivia', password: 'olivia-pw', sub: 'auth0|olivia0005', email: 'olivia@example.com', name: 'Olivia Ops', roles: ['pg_ops'] },
  // The startup user must equal a username claim: this one logs in as its sub.
  { username: 'mallory', password: 'mallory-pw', sub: HOSTILE, email: 'mallory@example.com', name: 'Mallory', roles: ['pg_reader'], emailVerified: false },
];
const ARTIFACTS = join(process.cwd(), '.tmp');

let stack: ProxyStack;
let browser: Browser;
const tokens: Record<string, TokenSet> = {};

function statusUrl(): string {
  const m = stack.proxy.metricsAddress!;
  return `http://127.0.0.1:${m.port}/status`;
}

function settings(networks?: string[]) {
  return { admin: { database: 'gprxy', roles: ['pg_ops'], status_page: true, ...(networks ? { networks } : {}) }, metrics: { listen: '127.0.0.1:0' } };
}

beforeAll(async () => {
  stack = await startProxyStack({ provider: { users: USERS } });
  await stack.startProxy(settings());
  for (const u of ['alice', 'olivia', 'mallory']) tokens[u] = await loginAs(stack.idp.provider, u);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
});
afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

async function connect(user: string, token: string): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user, password: token, database: 'mydb', ssl: stack.ssl, application_name: '<script>alert(1)</script>' });
  await c.connect();
  return c;
}

describe('status page', () => {
  it('answers 401 without a valid token, 403 for a token without an admin role, with a strict CSP', async () => {
    const none = await fetch(statusUrl());
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    expect((await fetch(statusUrl(), { headers: { authorization: 'Bearer not.a.token' } })).status).toBe(401);
    const alice = await fetch(statusUrl(), { headers: { authorization: `Bearer ${tokens.alice!.accessToken}` } });
    expect(alice.status).toBe(403);
    const ok = await fetch(statusUrl(), { headers: { authorization: `Bearer ${tokens.olivia!.accessToken}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-security-policy')).toMatch(/^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; img-src 'none'; script-src 'none'/);
    expect(ok.headers.get('x-content-type-options')).toBe('nosniff');
    const audit = await stack.logs.waitFor((l) => l.event === 'admin_action' && l.command === 'STATUS PAGE' && l.outcome === 'ok');
    expect(audit).toMatchObject({ admin_sub: 'auth0|olivia0005', admin_roles: ['pg_ops'] });
    // /metrics is unchanged and needs no token.
    expect((await fetch(statusUrl().replace('/status', '/metrics'))).status).toBe(200);
  });

  it('renders in headless Chromium: sessions by user, pools, refusals chart, JWKS; a hostile user name stays text', async () => {
    const held = [await connect('alice@example.com', tokens.alice!.accessToken), await connect('alice@example.com', tokens.alice!.accessToken), await connect(HOSTILE, tokens.mallory!.accessToken)];
    // Two refused logins for the chart.
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: 'not-a-token', database: 'mydb', ssl: stack.ssl });
      await c.connect().catch(() => undefined);
    }
    const context = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${tokens.olivia!.accessToken}` } });
    try {
      const page = await context.newPage();
      const consoleErrors: string[] = [];
      page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
      const response = await page.goto(statusUrl());
      expect(response?.status()).toBe(200);
      expect(await page.title()).toBe('gprxy status');

      const users = await page.locator('#sessions td.user').allTextContents();
      expect(users).toContain('alice@example.com');
      expect(users).toContain(HOSTILE);
      const aliceRow = page.locator('#sessions tr', { hasText: 'alice@example.com' });
      expect(await aliceRow.locator('td').allTextContents()).toEqual(['alice@example.com', 'mydb', '2', '0', '2', '0']);
      // The hostile name is text: no element came out of it, its handler never ran.
      expect(await page.locator('img').count()).toBe(0);
      expect(await page.locator('script').count()).toBe(0);
      expect(await page.title()).toBe('gprxy status');

      expect(await page.locator('#pools td').first().textContent()).toBe('mydb/app_writer');
      expect(await page.locator('svg rect').count()).toBe(60);
      expect(await page.locator('svg').getAttribute('aria-label')).toBe('2 refused logins in the last hour');
      expect(await page.locator('#refusals td').allTextContents()).toEqual(['token_malformed', '2']);
      const provider = await page.locator('#providers td').allTextContents();
      expect(provider[0]).toBe(stack.idp.provider.issuer);
      expect(provider[1]).toBe('1');
      // The stylesheet applied under the CSP (its hash matched): tables have collapsed borders.
      // (A string: this file is compiled without the DOM types.)
      expect(await page.evaluate('getComputedStyle(document.querySelector("table")).borderCollapse')).toBe('collapse');
      expect(consoleErrors).toEqual([]);

      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'admin-status-page.png'), fullPage: true });
    } finally {
      await context.close();
      await Promise.all(held.map((c) => c.end()));
    }
  });

  it('refuses a browser outside admin.networks with 403', async () => {
    await stack.startProxy(settings(['10.0.0.0/8']));
    try {
      const r = await fetch(statusUrl(), { headers: { authorization: `Bearer ${tokens.olivia!.accessToken}` } });
      expect(r.status).toBe(403);
    } finally {
      await stack.startProxy(settings());
    }
  });
});
