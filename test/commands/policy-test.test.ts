/**
 * `gprxy policy test` (issue 19): each verdict, against a local CI issuer (real signatures, JWKS over HTTPS)
 * and a people's provider with role_mapping: admitted by a CI rule (with identity and session end), refused
 * by the rules (the rule and the claim), a fork merge request, a foreign issuer, a wrong audience, an expired
 * token, role_mapping's admit and refusal; claims files skip the signature and say so. The CLI runs for the
 * exit codes (0 admitted, 1 refused, 2 usage), the JSON output, and the placeholder for unset variables.
 * No PostgreSQL anywhere: the config points at a port nothing listens on.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority } from '../../src/demo/certificates.js';
import { loadProxyConfig, type ProxyConfig } from '../../src/config/proxy-config.js';
import { describePolicy, explainPolicy } from '../../src/proxy/policy-explain.js';
import { CI_AUDIENCE as AUDIENCE, startCiIssuer, type CiIssuer } from '../support/ci-issuer.js';
import { GITHUB_MAIN_PUSH, GITHUB_PULL_REQUEST, GITLAB_FORK_MR, GITLAB_MAIN_DEPLOY } from '../support/ci-claims.js';
import { runCli } from '../support/cli.js';

let dir: string;
let github: CiIssuer;
let gitlab: CiIssuer;
let configFile: string;
let config: ProxyConfig;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'gprxy-policy-'));
  const ca = await createCertificateAuthority('policy test CA');
  github = await startCiIssuer(ca);
  gitlab = await startCiIssuer(ca);
  await writeFile(path.join(dir, 'ca.pem'), ca.cert);
  configFile = path.join(dir, 'proxy.json');
  await writeFile(
    configFile,
    JSON.stringify({
      tls: { allow_plaintext_loopback: true },
      providers: [
        {
          issuer: github.issuer,
          kind: 'github_actions',
          prefix: 'gha',
          audience: AUDIENCE,
          ca: 'ca.pem',
          rules: [
            { match: { repository_id: '74', ref: 'refs/heads/main', event_name: ['push', 'workflow_dispatch'] }, account: 'app_writer', max_session: '30m' },
            { match: { repository_id: '74', ref: 'refs/heads/release/*' }, account: 'app_reader' },
          ],
        },
        { issuer: gitlab.issuer, kind: 'gitlab', prefix: 'gl', audience: AUDIENCE, ca: 'ca.pem', rules: [{ match: { project_id: '20' }, account: 'app_reader', allow_pull_requests: true }] },
        { issuer: 'https://people.example/', prefix: 'corp', audience: 'https://gprxy.io' },
      ],
      role_mapping: [{ role: 'corp:pg_writer', account: 'app_writer' }],
      accounts: { app_writer: { password: '${PG_WRITER_PASSWORD}' }, app_reader: { password: 'pw' } },
      databases: { mydb: { host: '127.0.0.1', port: 1 } },
    }),
  );
  config = loadProxyConfig(configFile, { PG_WRITER_PASSWORD: 'x' });
});
afterAll(async () => {
  await github?.close();
  await gitlab?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The proxy config's own CA file makes the JWKS fetch trust the local issuers; nothing else is needed. */
const explain = (input: Parameters<typeof explainPolicy>[1]) => explainPolicy(config, input);

describe('policy test verdicts', () => {
  it('admits a main-branch job by rule 1, with the identity and the session end of max_session', async () => {
    const r = await explain({ token: await github.mint(GITHUB_MAIN_PUSH, { audience: AUDIENCE }) });
    expect(r).toMatchObject({
      admitted: true,
      signatureChecked: true,
      provider: { issuer: github.issuer, kind: 'github_actions', prefix: 'gha' },
      account: 'app_writer',
      identity: { user: GITHUB_MAIN_PUSH.sub, userId: `gha:${GITHUB_MAIN_PUSH.sub as string}`, issuer: github.issuer },
      sessionEnds: { by: 'max_session of rule 1' },
    });
    expect(r.rules!.map((v) => v.admitted)).toEqual([true]);
    const text = describePolicy(r).join('\n');
    expect(text).toContain('signature verified');
    expect(text).toContain('✓ rule 1 → app_writer: matches (repository_id is 74, ref is refs/heads/main, event_name is push)');
    expect(text).toContain('verdict: admitted as app_writer');
  });

  it('refuses a pull-request job with each rule and the claim that differs', async () => {
    const r = await explain({ token: await github.mint(GITHUB_PULL_REQUEST, { audience: AUDIENCE }) });
    expect(r).toMatchObject({ admitted: false, code: 'token_rule_refused', sqlstate: '28000' });
    expect(r.explanation).toContain('rule 1 requires ref refs/heads/main, token has refs/pull/7/merge');
    expect(r.explanation).toContain('rule 2 requires ref matching refs/heads/release/*, token has refs/pull/7/merge');
    const text = describePolicy(r).join('\n');
    expect(text).toContain('✗ rule 1 → app_writer: requires ref refs/heads/main, token has refs/pull/7/merge');
    expect(text).toMatch(/verdict: refused \(token_rule_refused, SQLSTATE 28000\)/);
  });

  it('refuses a GitLab fork merge request although the rule allows merge requests', async () => {
    const r = await explain({ token: await gitlab.mint({ ...GITLAB_FORK_MR, project_id: '20' }, { audience: AUDIENCE }) });
    expect(r).toMatchObject({ admitted: false, code: 'token_rule_refused' });
    expect(r.explanation).toMatch(/rule 1 matches, but a merge request from the fork mallory\/my-project .*allow_forks: true/);
  });

  it('says why no provider verifies a token: a foreign issuer, a wrong audience, an expired token', async () => {
    const stranger = await startCiIssuer(await createCertificateAuthority('stranger'));
    try {
      const foreign = await explain({ token: await stranger.mint(GITHUB_MAIN_PUSH, { audience: AUDIENCE }) });
      expect(foreign).toMatchObject({ admitted: false, code: 'token_issuer', sqlstate: '28000' });
      expect(foreign.provider).toBeUndefined();
      expect(describePolicy(foreign)[0]).toBe('provider: none verifies this token');
    } finally {
      await stranger.close();
    }
    expect(await explain({ token: await github.mint(GITHUB_MAIN_PUSH, { audience: 'https://github.com/octo-org' }) })).toMatchObject({ admitted: false, code: 'token_audience' });
    const old = Math.floor(Date.now() / 1000) - 3600;
    expect(await explain({ token: await github.mint(GITHUB_MAIN_PUSH, { audience: AUDIENCE, issuedAt: old }) })).toMatchObject({ admitted: false, code: 'token_expired' });
    expect(await explain({ token: 'not-a-token' })).toMatchObject({ admitted: false, code: 'token_malformed', sqlstate: '28P01' });
  });

  it('with a claims file: no signature check, and it says so; issuer and audience still decide', async () => {
    const claims = { ...GITLAB_MAIN_DEPLOY, iss: gitlab.issuer, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) - 60 };
    const r = await explain({ claims });
    expect(r).toMatchObject({ admitted: true, signatureChecked: false, account: 'app_reader', identity: { userId: `gl:${GITLAB_MAIN_DEPLOY.sub as string}` } });
    expect(r.notes.join('\n')).toMatch(/signature, algorithm and signing key are not checked[\s\S]*is in the past/);
    expect(await explain({ claims: { ...claims, aud: 'other' } })).toMatchObject({ admitted: false, code: 'token_audience' });
    expect(await explain({ claims: { ...claims, iss: `${gitlab.issuer}/` } })).toMatchObject({ admitted: false, code: 'token_issuer' });
  });

  it("explains role_mapping for a people's provider: the entry that maps, or no role", async () => {
    const person = { iss: 'https://people.example/', aud: 'https://gprxy.io', sub: 'auth0|alice', 'https://gprxy.io/roles': ['pg_reader', 'pg_writer'], exp: 4102444800 };
    const admitted = await explain({ claims: person });
    expect(admitted).toMatchObject({ admitted: true, account: 'app_writer', user: 'auth0|alice', roles: ['corp:pg_reader', 'corp:pg_writer'] });
    expect(admitted.explanation).toBe('role_mapping[0] maps role corp:pg_writer to app_writer (first rule whose role the token holds)');
    const none = await explain({ claims: { ...person, 'https://gprxy.io/roles': ['pg_reader'] } });
    expect(none).toMatchObject({ admitted: false, code: 'token_no_role', sqlstate: '28000' });
  });
});

describe('gprxy policy test (CLI)', () => {
  const env = () => ({ NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.pem') });

  it('exit 0 for an admitted token read from a file, 1 with the reason for a refused one (JSON), 2 without input', async () => {
    const ok = path.join(dir, 'ok.jwt');
    await writeFile(ok, await github.mint(GITHUB_MAIN_PUSH, { audience: AUDIENCE }));
    const admitted = await runCli(['policy', 'test', '--config', configFile, '--token-file', ok], { env: env() });
    expect(admitted.code).toBe(0);
    // PG_WRITER_PASSWORD is not set for the CLI: a placeholder stands in, and it says so.
    expect(admitted.stdout).toContain('note: not set here, placeholders used: PG_WRITER_PASSWORD');
    expect(admitted.stdout).toContain('verdict: admitted as app_writer');
    expect(admitted.stdout).not.toContain(await (await import('node:fs/promises')).readFile(ok, 'utf8'));

    const claimsFile = path.join(dir, 'pr.json');
    await writeFile(claimsFile, JSON.stringify({ ...GITHUB_PULL_REQUEST, iss: github.issuer, aud: AUDIENCE, exp: 4102444800 }));
    const refused = await runCli(['policy', 'test', '--config', configFile, '--claims', claimsFile, '--json'], { env: env() });
    expect(refused.code).toBe(1);
    const report = JSON.parse(refused.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({ admitted: false, signatureChecked: false, code: 'token_rule_refused', sqlstate: '28000' });
    expect(report.explanation).toContain('rule 1 requires ref refs/heads/main, token has refs/pull/7/merge');

    const usage = await runCli(['policy', 'test', '--config', configFile], { env: env() });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/stdin was empty|give the token on stdin/);
  });
});
