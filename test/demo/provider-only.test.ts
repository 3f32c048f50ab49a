/**
 * `gprxy demo --provider-only`: the local provider an operator uses to try their own gprxy serve. What it prints
 * is enough to use it: the issuer answers discovery over HTTPS trusted through the printed CA file, the CI
 * client's id and secret get a token by client credentials, and SIGTERM stops it and removes its files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { startCli } from '../support/cli.js';
import { appendRunLog } from '../support/run-log.js';

describe('gprxy demo --provider-only', () => {
  it('prints issuer, CA file, client ids and a CI secret that work; SIGTERM removes its files', { timeout: 60_000 }, async () => {
    const p = startCli(['demo', '--provider-only']);
    try {
      await p.waitFor(/For the CLI:\n\s+gprxy configure .*\n/, 'stdout');
      const out = p.stdout();
      const issuer = /issuer\s+(https:\/\/localhost:\d+\/)/.exec(out)![1]!;
      const caPath = /CA file\s+(\S+)/.exec(out)![1]!;
      const [, ciId, ciSecret] = /CI client\s+(\S+) \/ (\S+)/.exec(out)!;
      expect(out).toMatch(/public client id\s+gprxy-cli/);
      expect(out).toMatch(/proxy certificate\s+\S+proxy\.crt and \S+proxy\.key/);
      const fetch = fetchWithCa(readFileSync(caPath, 'utf8'));
      const discovery = (await (await fetch(new URL('.well-known/openid-configuration', issuer))).json()) as { issuer: string; token_endpoint: string };
      expect(discovery.issuer).toBe(issuer);
      const token = await fetch(discovery.token_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${ciId}:${ciSecret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource: 'https://gprxy.io' }).toString(),
      });
      expect(token.status).toBe(200);
      expect(((await token.json()) as { access_token?: string }).access_token).toMatch(/^ey/);

      p.child.kill('SIGTERM');
      const r = await p.result;
      expect(r.code).toBe(143);
      expect(existsSync(caPath)).toBe(false);
    } finally {
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
      const r = await p.result;
      appendRunLog(r.stdout + r.stderr);
    }
  });
});
