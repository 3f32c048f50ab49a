/**
 * `gprxy login --browser` (authorization code + PKCE on a loopback redirect) driven end to end by a real
 * browser (issue 21): headless Chromium (Debian's package) through the dev provider's own login and consent
 * pages, the redirect to the CLI's loopback listener, and the token landing in the keychain (gnome-keyring
 * on a private dbus session), as a person would do it. The test opens the URL the CLI prints (no display
 * here, so the CLI opens nothing itself). Chromium trusts the test CA by its key (--ignore-certificate-
 * errors-spki-list names the key of the certificate the provider serves), not by ignoring certificate errors.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID } from '../../src/demo/oidc-provider.js';
import { runCli, startCli } from '../support/cli.js';
import { startKeyringSession, type KeyringSession } from '../support/keyring.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';

let stack: TestProvider;
let keyring: KeyringSession;
let browser: Browser;
let caDir: string;

/**
 * base64 SHA-256 of the SubjectPublicKeyInfo of the certificate the provider serves (verified against the
 * test CA on the way): what Chromium's SPKI allow-list takes.
 */
async function providerSpki(issuer: string, ca: string): Promise<string> {
  const { hostname, port } = new URL(issuer);
  const socket = tlsConnect({ host: '127.0.0.1', servername: hostname, port: Number(port), ca });
  await once(socket, 'secureConnect');
  const der = socket.getPeerCertificate().raw;
  socket.destroy();
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

beforeAll(async () => {
  stack = await startTestProvider();
  keyring = await startKeyringSession();
  caDir = mkdtempSync(path.join(os.tmpdir(), 'gprxy-ca-'));
  writeFileSync(path.join(caDir, 'ca.pem'), stack.provider.caCert);
  const configured = await runCli(
    ['configure', '--issuer', stack.provider.issuer, '--client-id', DEV_CLI_CLIENT_ID, '--audience', DEV_AUDIENCE, '--proxy', '127.0.0.1:6432', '--ca', path.join(caDir, 'ca.pem')],
    { env: keyring.env },
  );
  expect(configured.code).toBe(0);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [`--ignore-certificate-errors-spki-list=${await providerSpki(stack.provider.issuer, stack.provider.caCert)}`] });
});

afterAll(async () => {
  await browser?.close();
  await keyring?.close();
  await stack?.close();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

describe('gprxy login --browser in headless Chromium', () => {
  it('signs in through the provider’s login and consent pages; the token lands in the keychain', async () => {
    const cli = startCli(['login', '--browser'], { env: keyring.env });
    const [url] = await cli.waitFor(/https:\/\/localhost:\d+\/auth\?\S+/);
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(url);
      // The provider's login page (a real form post), then its consent page.
      await page.waitForSelector('form#login');
      await page.fill('#username', 'alice');
      await page.fill('#password', 'alice-pw');
      await page.click('form#login button[type=submit]');
      await page.waitForSelector('form#allow');
      await page.click('form#allow button[type=submit]');
      // The provider redirects to the CLI's loopback listener, which says so.
      await page.waitForURL(/^http:\/\/127\.0\.0\.1:\d+\/callback\?/);
      expect(await page.textContent('body')).toContain('You can close this tab');
      const r = await cli.result;
      expect(r.stderr).not.toContain('warning');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Logged in to ${stack.provider.issuer} as alice@example.com (auth0|alice0001)`);
      expect(r.stdout).toContain('Roles: pg_writer');

      const stored = JSON.parse((await keyring.readSecret('gprxy', 'default'))!) as { refreshToken?: string; accessToken?: string };
      expect(stored.refreshToken).toBeTruthy();
      expect(decodeJwt(stored.accessToken!)).toMatchObject({ sub: 'auth0|alice0001', aud: DEV_AUDIENCE });
      // What a person does next works from the keychain alone.
      const token = await runCli(['token'], { env: keyring.env });
      expect(token.code).toBe(0);
      expect(decodeJwt(token.stdout.trim()).sub).toBe('auth0|alice0001');

      const artifacts = path.join(process.cwd(), '.tmp');
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: path.join(artifacts, 'login-browser-callback.png') });
    } finally {
      await context.close();
      cli.child.kill();
    }
  });
});
