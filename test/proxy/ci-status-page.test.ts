/**
 * A CI job token never gets admin rights (redteam3 closed the admin console to it), on the status page either:
 * even when the CI provider's roles_claim names a claim the job token carries (here `environment`, which a
 * workflow author chooses) and its value, prefixed, is an admin role. The console and the page apply one rule.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CI_AUDIENCE as AUDIENCE, ciProvider, startCiIssuer, type CiIssuer } from '../support/ci-issuer.js';
import { GITHUB_MAIN_PUSH } from '../support/ci-claims.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';

let stack: ProxyStack;
let github: CiIssuer;

beforeAll(async () => {
  stack = await startProxyStack();
  github = await startCiIssuer(stack.idp.ca);
  await stack.startProxy({
    providers: [
      ciProvider(github, 'github_actions', [{ match: { repository_id: '74', ref: 'refs/heads/main', event_name: ['push'] }, account: 'app_writer' }], { prefix: 'gha', roles_claim: 'environment' }),
    ],
    role_mapping: [],
    admin: { database: 'gprxy', roles: ['gha:pg_ops'], status_page: true },
    metrics: { listen: '127.0.0.1:0' },
  });
});

afterAll(async () => {
  await github?.close();
  await stack?.stop();
});

describe('CI job tokens and the admin surfaces', () => {
  it('a job token whose roles claim holds an admin role opens neither the status page (403) nor the console (42501)', async () => {
    const token = await github.mint({ ...GITHUB_MAIN_PUSH, environment: 'pg_ops' }, { audience: AUDIENCE });
    const page = await fetch(`http://127.0.0.1:${stack.proxy.metricsAddress!.port}/status`, { headers: { authorization: `Bearer ${token}` } });
    expect(page.status).toBe(403);
    await stack.logs.waitFor((l) => l.event === 'admin_action' && l.command === 'STATUS PAGE' && l.reason === 'admin_role_missing');
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: GITHUB_MAIN_PUSH.sub as string, password: token, database: 'gprxy', ssl: stack.ssl });
    c.on('error', () => undefined);
    const error = (await c.connect().then(
      () => c.end().then(() => undefined),
      (e: unknown) => e,
    )) as { code?: string } | undefined;
    expect(error?.code).toBe('42501');
  });
});
