/**
 * Providers of kind CI (issue 19): GitHub Actions and GitLab CI job tokens, admitted by `rules:` over any
 * claim instead of role_mapping. This file holds the YAML shape of a rule, its validated form, and the
 * checks a rule set must pass at load time:
 * - every rule pins who may use it (a repository/project or its owner/namespace, or the whole `sub`):
 *   anyone on github.com can mint a token with any audience, so a rule on `ref` alone would admit every
 *   repository in the world (an error, not a warning);
 * - a rule that pins only mutable names (repository, project_path) gets a warning: a renamed or deleted
 *   and re-created repository of the same name inherits the access; the numeric ids do not move.
 * Matching itself is in src/token/ci-rules.ts.
 */
import { z } from 'zod';
import { parseDuration } from './duration.js';

export type CiKind = 'github_actions' | 'gitlab';

/** A condition on one claim: an exact value, an allow-list, or a glob (`*` within a path segment, `**` across). */
export interface CiClaimCondition {
  readonly claim: string;
  /** Allowed values (one for an exact match); a value containing `*` is a glob. */
  readonly values: readonly string[];
}

export interface CiRule {
  /** 1-based, as people count rules in messages and the audit log. */
  readonly number: number;
  readonly conditions: readonly CiClaimCondition[];
  readonly account: string;
  /** Longest a session opened under this rule may last, whatever the token's expiry; 0: not set. */
  readonly maxSessionMs: number;
  /** Admit pull-request / merge-request jobs (GitHub pull_request, GitLab merge_request_event in the same project). */
  readonly allowPullRequests: boolean;
  /** Admit fork-originated jobs (GitHub pull_request_target, GitLab merge requests from a fork). */
  readonly allowForks: boolean;
}

export interface CiProviderSettings {
  readonly kind: CiKind;
  readonly rules: readonly CiRule[];
}

const scalar = z.union([z.string().min(1), z.number(), z.boolean()]).transform((v) => String(v));

export const ciRuleSchema = z.strictObject({
  match: z.record(z.string().min(1), z.union([scalar, z.array(scalar).min(1)])),
  account: z.string().min(1),
  max_session: z.union([z.string(), z.number()]).optional(),
  allow_pull_requests: z.boolean().default(false),
  allow_forks: z.boolean().default(false),
});

export type CiRuleInput = z.infer<typeof ciRuleSchema>;

/** Claims that name who runs the job, per kind: [immutable ids, mutable names]. */
const PINS: Record<CiKind, { ids: readonly string[]; names: readonly string[] }> = {
  github_actions: { ids: ['repository_id', 'repository_owner_id'], names: ['repository', 'repository_owner', 'sub', 'job_workflow_ref', 'workflow_ref'] },
  gitlab: { ids: ['project_id', 'namespace_id'], names: ['project_path', 'namespace_path', 'sub', 'ci_config_ref_uri'] },
};

/** The advice for a mutable name: which id claim to use instead. */
const ID_FOR: Record<string, string> = {
  repository: 'repository_id',
  repository_owner: 'repository_owner_id',
  sub: 'repository_id',
  job_workflow_ref: 'repository_id',
  workflow_ref: 'repository_id',
  project_path: 'project_id',
  namespace_path: 'namespace_id',
  ci_config_ref_uri: 'project_id',
};

/** Validates a CI provider's rules; problems are errors, warnings are logged at load (config is still used). */
export function buildCiSettings(
  at: string,
  kind: CiKind,
  rules: readonly CiRuleInput[] | undefined,
  accounts: Readonly<Record<string, unknown>>,
  problems: string[],
  warnings: string[],
): CiProviderSettings {
  if (!rules || rules.length === 0) {
    problems.push(`${at}.rules: a provider of kind ${kind} needs rules mapping job claims to accounts (e.g. - match: { ${kind === 'gitlab' ? 'project_id: "42", ref: main' : 'repository_id: "123456", ref: refs/heads/main'} }, account: app_writer)`);
    return { kind, rules: [] };
  }
  const pins = PINS[kind];
  const built = rules.map((r, i): CiRule => {
    const where = `${at}.rules[${i}]`;
    const claims = Object.keys(r.match);
    if (claims.length === 0) problems.push(`${where}.match: name at least one claim (a rule without conditions would admit every job)`);
    if (!Object.hasOwn(accounts, r.account)) problems.push(`${where}.account: "${r.account}" is not a key of accounts`);
    const ids = claims.filter((c) => pins.ids.includes(c));
    const names = claims.filter((c) => pins.names.includes(c));
    if (ids.length === 0 && names.length === 0) {
      problems.push(
        `${where}.match: pins no ${kind === 'gitlab' ? 'project' : 'repository'}; any ${kind === 'gitlab' ? 'project on that GitLab' : 'repository on GitHub'} can request a token with this audience, ` +
          `so add ${pins.ids[0]} (or ${pins.ids[1]}) to the rule`,
      );
    } else if (ids.length === 0) {
      const advice = [...new Set(names.map((n) => ID_FOR[n] ?? pins.ids[0]))].join(' / ');
      warnings.push(
        `${where}: pins only ${names.join(', ')} (names can be renamed, or deleted and re-created by someone else); prefer the immutable ${advice}`,
      );
    }
    for (const c of claims) {
      for (const v of [r.match[c]!].flat()) {
        if (v.includes('*') && (c === 'repository_id' || c === 'repository_owner_id' || c === 'project_id' || c === 'namespace_id')) {
          problems.push(`${where}.match.${c}: an id is matched exactly, not as a glob ("${v}")`);
        }
      }
    }
    let maxSessionMs = 0;
    if (r.max_session !== undefined) {
      try {
        maxSessionMs = parseDuration(r.max_session);
      } catch (e) {
        problems.push(`${where}.max_session: ${(e as Error).message}`);
      }
    }
    return {
      number: i + 1,
      conditions: claims.map((claim) => ({ claim, values: [r.match[claim]!].flat() })),
      account: r.account,
      maxSessionMs,
      allowPullRequests: r.allow_pull_requests,
      allowForks: r.allow_forks,
    };
  });
  return { kind, rules: built };
}
