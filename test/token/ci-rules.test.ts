/**
 * CI providers' rules (issue 19), on the claim sets of GitHub's and GitLab's documentation: config
 * validation (pinning, mutable-name warnings), first-match, allow-lists and globs, the default denial of
 * pull-request and fork jobs, and the explanation each decision carries.
 */
import { describe, expect, it } from 'vitest';
import { buildProxyConfig, type ProviderConfig } from '../../src/config/proxy-config.js';
import { decideCi, globMatches } from '../../src/token/ci-rules.js';
import { resolveIdentity } from '../../src/token/identity.js';
import { TokenError } from '../../src/token/errors.js';
import type { VerifiedToken } from '../../src/token/verifier.js';
import { GITHUB_MAIN_PUSH, GITHUB_PULL_REQUEST, GITHUB_PULL_REQUEST_TARGET, GITLAB_FEATURE_PUSH, GITLAB_FORK_MR, GITLAB_MAIN_DEPLOY } from '../support/ci-claims.js';
import { configProblems as problems } from '../support/config-docs.js';

const GH = 'https://token.actions.githubusercontent.com';

function doc(providers: unknown[]): Record<string, unknown> {
  return {
    tls: { allow_plaintext_loopback: true },
    providers,
    accounts: { app_writer: { password: 'pw' }, app_reader: { password: 'pw' } },
    databases: { mydb: {} },
  };
}

function github(rules: unknown[], extra: Record<string, unknown> = {}): ProviderConfig {
  return buildProxyConfig(doc([{ issuer: GH, audience: 'https://gprxy.example', kind: 'github_actions', rules, ...extra }]), {}, '/').providers[0]!;
}

const MAIN_WRITER = { match: { repository_id: '74', ref: 'refs/heads/main', event_name: ['push', 'workflow_dispatch'] }, account: 'app_writer', max_session: '20m' };

describe('CI provider config', () => {
  it('builds rules with 1-based numbers, allow-lists, max_session and sub as the username claim', () => {
    const p = github([MAIN_WRITER, { match: { repository_owner_id: 65 }, account: 'app_reader' }]);
    expect(p.ci).toMatchObject({ kind: 'github_actions', rules: [{ number: 1, account: 'app_writer', maxSessionMs: 1_200_000, allowPullRequests: false, allowForks: false }, { number: 2 }] });
    expect(p.ci!.rules[1]!.conditions).toEqual([{ claim: 'repository_owner_id', values: ['65'] }]);
    expect(p.usernameClaims).toEqual(['sub']);
  });

  it('refuses a rule that pins no repository: any repository on GitHub can mint a token with this audience', () => {
    expect(problems(doc([{ issuer: GH, audience: 'a', kind: 'github_actions', rules: [{ match: { ref: 'refs/heads/main' }, account: 'app_writer' }] }]))).toMatch(
      /providers\[0\]\.rules\[0\]\.match: pins no repository.*add repository_id/,
    );
    expect(problems(doc([{ issuer: 'https://gitlab.com', audience: 'a', kind: 'gitlab', rules: [{ match: { ref: 'main' }, account: 'app_writer' }] }]))).toMatch(/pins no project.*project_id/);
  });

  it('warns at load when a rule pins only mutable names, naming the immutable id to use', () => {
    const config = buildProxyConfig(
      doc([
        { issuer: GH, audience: 'a', kind: 'github_actions', prefix: 'gha', rules: [{ match: { repository: 'octo-org/octo-repo', ref: 'refs/heads/main' }, account: 'app_writer' }] },
        { issuer: 'https://gitlab.com', audience: 'a', kind: 'gitlab', prefix: 'gl', rules: [{ match: { project_path: 'my-group/my-project' }, account: 'app_reader' }, { match: { project_id: '20' }, account: 'app_reader' }] },
      ]),
      {},
      '/',
    );
    expect(config.warnings).toHaveLength(2);
    expect(config.warnings[0]).toMatch(/providers\[0\]\.rules\[0\]: pins only repository .*repository_id/);
    expect(config.warnings[1]).toMatch(/providers\[1\]\.rules\[0\]: pins only project_path .*project_id/);
  });

  it('needs rules on a CI provider, accounts that exist, and no rules on an oauth provider', () => {
    expect(problems(doc([{ issuer: GH, audience: 'a', kind: 'github_actions' }]))).toMatch(/rules: a provider of kind github_actions needs rules/);
    expect(problems(doc([{ issuer: GH, audience: 'a', kind: 'github_actions', rules: [{ match: { repository_id: '1' }, account: 'nobody' }] }]))).toMatch(/rules\[0\]\.account: "nobody" is not a key of accounts/);
    expect(problems(doc([{ issuer: GH, audience: 'a', rules: [MAIN_WRITER] }]))).toMatch(/rules apply to CI providers; set kind/);
    expect(problems(doc([{ issuer: GH, audience: 'a', kind: 'github_actions', rules: [{ match: { repository_id: '7*' }, account: 'app_writer' }] }]))).toMatch(/an id is matched exactly/);
  });
});

describe('rules over claims', () => {
  it('admits the main-branch push by the first rule that matches, and explains why', () => {
    const d = decideCi(github([MAIN_WRITER, { match: { repository_id: '74' }, account: 'app_reader' }]).ci!, GITHUB_MAIN_PUSH);
    expect(d.admitted).toBe(true);
    expect(d.rule!.account).toBe('app_writer');
    expect(d.explanation).toBe('rule 1 admits the job as app_writer: repository_id is 74, ref is refs/heads/main, event_name is push');
  });

  it('refuses a pull-request job with the rule and the claim that differ', () => {
    const d = decideCi(github([MAIN_WRITER]).ci!, GITHUB_PULL_REQUEST);
    expect(d.admitted).toBe(false);
    expect(d.explanation).toMatch(/^rule 1 requires ref refs\/heads\/main, token has refs\/pull\/7\/merge; requires event_name one of push, workflow_dispatch, token has pull_request; besides, event pull_request .*allow_pull_requests: true$/);
    // The client hears which claims differ, not the values the rules want.
    expect(d.clientReason).toMatch(/no rule admits this job token \(1 rule checked; the closest, rule 1, differs on ref, event_name; a pull-request job .* is denied by default\)/);
    expect(d.clientReason).not.toContain('refs/heads/main');
  });

  it('denies pull_request_target by default although it carries the base branch ref, unless the rule sets allow_forks', () => {
    const rule = { match: { repository_id: '74', ref: 'refs/heads/main' }, account: 'app_writer' };
    const d = decideCi(github([rule]).ci!, GITHUB_PULL_REQUEST_TARGET);
    expect(d.admitted).toBe(false);
    expect(d.explanation).toMatch(/^rule 1 matches, but event pull_request_target runs with the base branch's ref refs\/heads\/main .*allow_forks: true$/);
    expect(d.clientReason).toMatch(/pull_request_target/);
    expect(decideCi(github([{ ...rule, allow_pull_requests: true }]).ci!, GITHUB_PULL_REQUEST_TARGET).admitted).toBe(false);
    expect(decideCi(github([{ ...rule, allow_forks: true }]).ci!, GITHUB_PULL_REQUEST_TARGET).admitted).toBe(true);
  });

  it('denies pull_request by default even when the rule matches its claims, and admits it when the rule says so', () => {
    const rule = { match: { repository_id: '74' }, account: 'app_reader' };
    const denied = decideCi(github([rule]).ci!, GITHUB_PULL_REQUEST);
    expect(denied.explanation).toMatch(/rule 1 matches, but event pull_request runs the pull request's code .*allow_pull_requests: true/);
    // A later rule that allows pull requests is still reached (first match, not first partial match).
    const admitted = decideCi(github([rule, { ...rule, allow_pull_requests: true }]).ci!, GITHUB_PULL_REQUEST);
    expect(admitted).toMatchObject({ admitted: true, rule: { number: 2 } });
  });

  it('matches globs within a path segment (*) and across (**), and allow-lists', () => {
    expect(globMatches('refs/heads/release/*', 'refs/heads/release/1.2')).toBe(true);
    expect(globMatches('refs/heads/release/*', 'refs/heads/release/1.2/x')).toBe(false);
    expect(globMatches('refs/heads/**', 'refs/heads/a/b')).toBe(true);
    expect(globMatches('refs/heads/ma.n', 'refs/heads/main')).toBe(false);
    const p = github([{ match: { repository_id: '74', ref: ['refs/heads/release/*', 'refs/tags/v*'] }, account: 'app_reader' }]);
    expect(decideCi(p.ci!, { ...GITHUB_MAIN_PUSH, ref: 'refs/tags/v1.0' }).admitted).toBe(true);
    expect(decideCi(p.ci!, GITHUB_MAIN_PUSH).explanation).toBe('rule 1 requires ref one of refs/heads/release/*, refs/tags/v*, token has refs/heads/main');
  });

  it('GitLab: admits a protected main deploy, refuses a feature branch, and denies a fork merge request', () => {
    const config = buildProxyConfig(
      doc([{ issuer: 'https://gitlab.example.com', audience: 'https://gprxy.example', kind: 'gitlab', rules: [{ match: { project_id: '20', ref_protected: 'true', environment: 'production' }, account: 'app_writer' }, { match: { project_id: ['20', '991'], groups_direct: 'my-other-group' }, account: 'app_reader', allow_pull_requests: true }] }]),
      {},
      '/',
    );
    const ci = config.providers[0]!.ci!;
    expect(decideCi(ci, GITLAB_MAIN_DEPLOY)).toMatchObject({ admitted: true, rule: { account: 'app_writer' } });
    expect(decideCi(ci, GITLAB_FEATURE_PUSH)).toMatchObject({ admitted: true, rule: { number: 2 } }); // an array claim: groups_direct contains it
    const fork = decideCi(ci, GITLAB_FORK_MR);
    expect(fork.admitted).toBe(false);
    expect(fork.explanation).toMatch(/rule 2 matches, but a merge request from the fork mallory\/my-project \(pipeline of my-group\/my-project\) .*allow_forks: true/);
  });

  it('through resolveIdentity: the rule picks the account, sub names the pipeline, the run is kept; refusals are token_rule_refused (28000)', () => {
    const provider = github([MAIN_WRITER]);
    const token = (claims: Record<string, unknown>): VerifiedToken => ({ claims: { iss: GH, ...claims } as VerifiedToken['claims'], issuer: GH, provider, expiresAt: Date.now() + 300_000, tokenId: 'x' });
    const identity = resolveIdentity(token(GITHUB_MAIN_PUSH), 'repo:octo-org/octo-repo:ref:refs/heads/main', []);
    expect(identity).toMatchObject({ account: 'app_writer', subject: 'repo:octo-org/octo-repo:ref:refs/heads/main', ci: { kind: 'github_actions', rule: 1, maxSessionMs: 1_200_000 } });
    expect(identity.ci!.run).toMatchObject({ run_id: '5839275712', run_attempt: '2', repository: 'octo-org/octo-repo' });
    let error: unknown;
    try {
      resolveIdentity(token(GITHUB_PULL_REQUEST), 'repo:octo-org/octo-repo:pull_request', []);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TokenError);
    expect(error).toMatchObject({ code: 'token_rule_refused', sqlstate: '28000' });
    expect((error as TokenError).explanation).toContain('rule 1 requires ref refs/heads/main, token has refs/pull/7/merge');
  });
});
