/**
 * Keyless CI on the client side (issue 19): `gprxy connect --ci` in a simulated GitHub Actions job (a local
 * HTTPS endpoint stands in for ACTIONS_ID_TOKEN_REQUEST_URL) reaches psql through the real proxy as the
 * account the job's rule maps to, with an empty HOME that stays empty and no token in argv or output; a job
 * without `permissions: id-token: write` gets an error naming it; the job token is fetched again before it
 * expires; GitLab's id_tokens variable is found by its name (GPRXY_ID_TOKEN or GPRXY_CI_TOKEN_VAR) and its
 * audience checked.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveCliSettings } from '../../src/config/cli-config.js';
import { createTokenSource } from '../../src/oauth/cli-session.js';
import { CiTokenSource } from '../../src/oauth/ci-token-source.js';
import { TokenKeeper } from '../../src/tunnel/token-keeper.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { CI_AUDIENCE as AUDIENCE, ciProvider, MAIN_BRANCH_RULE, startCiIssuer, type CiIssuer } from '../support/ci-issuer.js';
import { GITHUB_MAIN_PUSH, GITLAB_MAIN_DEPLOY } from '../support/ci-claims.js';
import { runCli } from '../support/cli.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';

let stack: ProxyStack;
let github: CiIssuer;
let home: string;
let caDir: string;

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.map((e) => path.join(e.parentPath, e.name));
}

beforeAll(async () => {
  stack = await startProxyStack();
  github = await startCiIssuer(stack.idp.ca);
  github.job = { ...GITHUB_MAIN_PUSH };
  await stack.startProxy({
    providers: [ciProvider(github, 'github_actions', [MAIN_BRANCH_RULE])],
    role_mapping: [],
  });
  home = await mkdtemp(path.join(os.tmpdir(), 'gprxy-ci-job-home-'));
  caDir = await mkdtemp(path.join(os.tmpdir(), 'gprxy-ci-job-ca-'));
  await writeFile(path.join(caDir, 'ca.pem'), stack.idp.ca.cert);
});
afterAll(async () => {
  await github?.close();
  await stack?.stop();
  await rm(home, { recursive: true, force: true });
  await rm(caDir, { recursive: true, force: true });
});

function actionsEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    GITHUB_ACTIONS: 'true',
    ACTIONS_ID_TOKEN_REQUEST_URL: github.requestUrl,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: github.requestToken,
    GPRXY_AUDIENCE: AUDIENCE,
    GPRXY_PROXY: `127.0.0.1:${stack.port}`,
    GPRXY_CA: path.join(caDir, 'ca.pem'),
    ...extra,
  };
}

describe('gprxy connect --ci in GitHub Actions', () => {
  it('reaches psql as the rule\'s account with the job token, and writes nothing to disk', { timeout: 30_000 }, async () => {
    github.requests.length = 0;
    const r = await runCli(['connect', 'mydb', '--ci', '--', 'psql', '-X', '-A', '-t', '-c', 'select current_user'], { env: actionsEnv() });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('app_writer');
    expect(github.requests).toEqual([AUDIENCE]);
    expect(await filesUnder(home)).toEqual([]);
    const line = await stack.logs.waitFor((l) => l.event === 'auth_success' && l.user === GITHUB_MAIN_PUSH.sub);
    expect(line.ci).toMatchObject({ run_id: '5839275712', run_attempt: '2' });
    expect(r.stdout + r.stderr).not.toContain(github.requestToken);
  });

  it('without id-token permission, --ci names `permissions: id-token: write` (exit 1)', async () => {
    const r = await runCli(['token', '--ci'], { env: actionsEnv({ ACTIONS_ID_TOKEN_REQUEST_URL: undefined, ACTIONS_ID_TOKEN_REQUEST_TOKEN: undefined }) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('permissions: id-token: write');
    expect(r.stdout).toBe('');
  });
});

describe('the CI token source', () => {
  const settings = (env: Record<string, string | undefined>) => resolveCliSettings({ env: env as NodeJS.ProcessEnv, configDir: path.join(home, 'none') });

  it('GitHub: is detected without --ci, asks for the audience, and fetches again before the token expires', async () => {
    github.requests.length = 0;
    github.jobTokenLifetime = 300;
    let now = Date.now();
    const source = createTokenSource(settings(actionsEnv()), { now: () => now });
    expect(source).toBeInstanceOf(CiTokenSource);
    const first = await source.getAccessToken();
    expect(decodeJwt(first.accessToken)).toMatchObject({ aud: AUDIENCE, sub: GITHUB_MAIN_PUSH.sub });
    expect(await source.getAccessToken()).toBe(first);
    expect(github.requests).toEqual([AUDIENCE]);
    now = first.refreshAt + 1;
    const second = await source.getAccessToken();
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(github.requests).toHaveLength(2);
  });

  it("GitHub: the tunnel's keeper renews a short job token on its own, ahead of expiry", { timeout: 15_000 }, async () => {
    github.jobTokenLifetime = 2;
    try {
      const source = new CiTokenSource({ job: { kind: 'github_actions', requestUrl: github.requestUrl, requestToken: github.requestToken }, audience: AUDIENCE, fetch: fetchWithCa(stack.idp.ca.cert) });
      const seen: string[] = [];
      const renewed = new Promise<void>((resolve) => {
        const keeper = new TokenKeeper({
          source,
          onRefreshed: (t) => {
            seen.push(t.accessToken);
            if (seen.length === 2) {
              void keeper.close();
              resolve();
            }
          },
        });
        void keeper.getAccessToken();
      });
      await renewed;
      expect(seen[0]).not.toBe(seen[1]);
      // Renewed while the first was still valid (2 s token, renewed at half its life).
      expect(decodeJwt(seen[1]!).iat! - decodeJwt(seen[0]!).iat!).toBeLessThanOrEqual(2);
    } finally {
      github.jobTokenLifetime = 300;
    }
  });

  it('GitLab: the id_tokens variable by its default or configured name; a token for another audience is refused with the YAML to fix', async () => {
    const token = await github.mint(GITLAB_MAIN_DEPLOY, { audience: AUDIENCE });
    const base = { GITLAB_CI: 'true', GPRXY_AUDIENCE: AUDIENCE };
    const byDefault = await createTokenSource(settings({ ...base, GPRXY_ID_TOKEN: token })).getAccessToken();
    expect(byDefault).toMatchObject({ accessToken: token, refreshAt: Number.POSITIVE_INFINITY });
    const named = await createTokenSource(settings({ ...base, GPRXY_CI_TOKEN_VAR: 'DB_TOKEN', DB_TOKEN: token })).getAccessToken();
    expect(named.accessToken).toBe(token);
    await expect(createTokenSource(settings({ ...base, GPRXY_AUDIENCE: 'https://other', GPRXY_ID_TOKEN: token })).getAccessToken()).rejects.toMatchObject({
      code: 'ci_token_unavailable',
      message: expect.stringContaining('id_tokens: GPRXY_ID_TOKEN: aud: https://other'),
    });
    expect(() => createTokenSource(settings({ GITLAB_CI: 'true' }), {}, { ci: true })).toThrow(/no ID token in \$GPRXY_ID_TOKEN: add `id_tokens/);
  });
});
