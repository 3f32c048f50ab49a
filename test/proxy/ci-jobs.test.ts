/**
 * CI job tokens through the real proxy (issue 19): two local issuers minting GitHub-Actions-shaped and
 * GitLab-shaped ID tokens (claim sets from their documentation), providers of kind github_actions and gitlab
 * with rules. A main-branch job becomes app_writer with the pipeline as its identity and its run in the
 * audit log; pull-request, pull_request_target and fork merge-request jobs and a wrong audience are refused
 * with 28000 and the rule's reason in the audit log; a rule's max_session ends the session (57P01).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDbInit } from '../../src/sql/db-init.js';
import { CI_AUDIENCE as AUDIENCE, ciProvider, startCiIssuer, type CiIssuer } from '../support/ci-issuer.js';
import { GITHUB_MAIN_PUSH, GITHUB_PULL_REQUEST, GITHUB_PULL_REQUEST_TARGET, GITLAB_FORK_MR, GITLAB_MAIN_DEPLOY } from '../support/ci-claims.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginRefusal, proxyClient } from '../support/proxy-clients.js';

let stack: ProxyStack;
let github: CiIssuer;
let gitlab: CiIssuer;

function ciProviders(maxSession?: string): Record<string, unknown> {
  return {
    providers: [
      ciProvider(github, 'github_actions', [{ match: { repository_id: '74', ref: 'refs/heads/main', event_name: ['push', 'workflow_dispatch'] }, account: 'app_writer', ...(maxSession ? { max_session: maxSession } : {}) }], { prefix: 'gha' }),
      ciProvider(gitlab, 'gitlab', [{ match: { project_id: '20', ref_protected: 'true' }, account: 'app_writer', allow_pull_requests: true }], { prefix: 'gl' }),
    ],
    role_mapping: [],
    // The admin console is served too: a CI job token must not reach it (it has no admin role).
    admin: { database: 'gprxy', roles: ['gha:pg_ops'] },
  };
}

beforeAll(async () => {
  stack = await startProxyStack();
  github = await startCiIssuer(stack.idp.ca);
  gitlab = await startCiIssuer(stack.idp.ca);
  await stack.startProxy(ciProviders());
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
});
afterAll(async () => {
  await github?.close();
  await gitlab?.close();
  await stack?.stop();
});

function client(user: string, token: string): pg.Client {
  return proxyClient(stack, user, token);
}

function refusal(user: string, token: string): Promise<{ code?: string; message: string }> {
  return loginRefusal(client(user, token));
}

describe('CI job tokens at the proxy', () => {
  it('a main-branch GitHub job becomes app_writer, named by its pipeline, with its run in the audit log', async () => {
    const sub = GITHUB_MAIN_PUSH.sub as string;
    const c = client(sub, await github.mint(GITHUB_MAIN_PUSH, { audience: AUDIENCE }));
    await c.connect();
    const r = await c.query('select current_user as account, gprxy.user_id() as user_id, gprxy.issuer() as issuer');
    await c.end();
    expect(r.rows[0]).toEqual({ account: 'app_writer', user_id: `gha:${sub}`, issuer: github.issuer });
    const line = await stack.logs.waitFor((l) => l.event === 'auth_success' && l.user === sub);
    expect(line.ci).toMatchObject({ kind: 'github_actions', rule: 1, run_id: '5839275712', run_attempt: '2', repository: 'octo-org/octo-repo', event_name: 'push' });
    const end = await stack.logs.waitFor((l) => l.event === 'session_end' && l.user === sub);
    expect(end.ci).toMatchObject({ run_id: '5839275712' });
  });

  it('a GitLab deploy job on protected main becomes app_writer with its pipeline_id and job_id logged', async () => {
    const sub = GITLAB_MAIN_DEPLOY.sub as string;
    const c = client(sub, await gitlab.mint(GITLAB_MAIN_DEPLOY, { audience: AUDIENCE }));
    await c.connect();
    expect((await c.query('select current_user as a, gprxy.user_id() as u')).rows[0]).toEqual({ a: 'app_writer', u: `gl:${sub}` });
    await c.end();
    const line = await stack.logs.waitFor((l) => l.event === 'auth_success' && l.user === sub);
    expect(line.ci).toMatchObject({ kind: 'gitlab', pipeline_id: '575', job_id: '310', project_path: 'my-group/my-project' });
  });

  it('an admitted CI job token does not open the admin console: 42501, audited (its rule picks an account, not admin rights)', async () => {
    const sub = GITHUB_MAIN_PUSH.sub as string;
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: sub, password: await github.mint(GITHUB_MAIN_PUSH, { audience: AUDIENCE }), database: 'gprxy', ssl: stack.ssl });
    c.on('error', () => undefined);
    const error = (await c.connect().then(
      async () => {
        await c.query('SHOW SESSIONS').catch(() => undefined);
        await c.end();
        return undefined;
      },
      (e: unknown) => e,
    )) as { code?: string } | undefined;
    expect(error?.code).toBe('42501');
    await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.user === sub && l.reason === 'admin_role_missing');
  });

  it('refuses a pull-request job with 28000, and the audit log names the rule and the claim', async () => {
    const sub = GITHUB_PULL_REQUEST.sub as string;
    const error = await refusal(sub, await github.mint(GITHUB_PULL_REQUEST, { audience: AUDIENCE }));
    expect(error.code).toBe('28000');
    expect(error.message).toMatch(/no rule admits this job token.*differs on ref, event_name/);
    const line = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'token_rule_refused' && l.user === sub);
    expect(line.explanation).toContain('rule 1 requires ref refs/heads/main, token has refs/pull/7/merge');
  });

  it('refuses pull_request_target although its ref is the base branch', async () => {
    const token = await github.mint(GITHUB_PULL_REQUEST_TARGET, { audience: AUDIENCE });
    const error = await refusal(GITHUB_PULL_REQUEST_TARGET.sub as string, token);
    expect(error.code).toBe('28000');
    expect(error.message).toMatch(/fork-originated job \(pull_request_target/);
    const line = await stack.logs.waitFor((l) => l.reason === 'token_rule_refused' && String(l.explanation).includes('pull_request_target'));
    expect(line.explanation).toMatch(/rule 1 requires event_name one of push, workflow_dispatch, token has pull_request_target; besides, event pull_request_target runs with the base branch's ref refs\/heads\/main .*allow_forks: true/);
  });

  it('refuses a GitLab merge request from a fork even where merge requests are allowed', async () => {
    const sub = GITLAB_FORK_MR.sub as string;
    // The rule pins project 20; the fork's token says project 991 — and even a rule allowing both is gated.
    const error = await refusal(sub, await gitlab.mint({ ...GITLAB_FORK_MR, project_id: '20', ref_protected: 'true' }, { audience: AUDIENCE }));
    expect(error.code).toBe('28000');
    const line = await stack.logs.waitFor((l) => l.reason === 'token_rule_refused' && l.user === sub);
    expect(line.explanation).toMatch(/merge request from the fork mallory\/my-project .*allow_forks: true/);
  });

  it('refuses a job token minted for another audience', async () => {
    const error = await refusal(GITHUB_MAIN_PUSH.sub as string, await github.mint(GITHUB_MAIN_PUSH, { audience: 'https://github.com/octo-org' }));
    expect(error.code).toBe('28000');
    expect(error.message).toMatch(/audience/);
    await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'token_audience');
  });

  for (const mode of ['session', 'transaction'] as const) {
    it(`ends the session at the rule's max_session although the job token is still valid (pool mode ${mode})`, { timeout: 20_000 }, async () => {
      await stack.startProxy({ ...ciProviders('1s'), databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { mode, size: 5 } } } });
      try {
        const sub = GITHUB_MAIN_PUSH.sub as string;
        const runId = `777-${mode}`;
        const c = client(sub, await github.mint({ ...GITHUB_MAIN_PUSH, run_id: runId }, { audience: AUDIENCE, expiresIn: 600 }));
        const ended = new Promise<{ code?: string }>((resolve) => c.on('error', (e) => resolve(e as { code?: string })));
        await c.connect();
        expect((await c.query('select current_user as a')).rows[0]).toEqual({ a: 'app_writer' });
        const line = await stack.logs.waitFor((l) => l.event === 'session_end' && l.reason === 'ci_max_session' && (l.ci as { run_id?: string } | undefined)?.run_id === runId);
        expect(line.ci).toMatchObject({ kind: 'github_actions', rule: 1 });
        expect((await ended).code).toBe('57P01');
        await c.end().catch(() => {});
      } finally {
        await stack.startProxy(ciProviders());
      }
    });
  }
});
