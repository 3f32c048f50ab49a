/**
 * Which account a CI job token (GitHub Actions, GitLab CI) gets, and why (issue 19). Rules are tried in
 * order and the first that admits the token wins, like role_mapping. A rule admits a token when every
 * claim it names has one of the allowed values and the job's trigger is not one denied by default:
 *
 * - GitHub `pull_request`: the code under test is the PR's (same-repository PRs only get an ID token);
 *   admitted only by a rule with `allow_pull_requests: true`.
 * - GitHub `pull_request_target`: runs in the base repository's context with the base branch's `ref`
 *   (so a rule on `ref: refs/heads/main` would match) while workflows often check out fork code;
 *   admitted only by a rule with `allow_forks: true`.
 * - GitLab `merge_request_event` (and `external_pull_request_event`): `allow_pull_requests: true`; when the
 *   merge request comes from a fork (its project claims name the fork, while ci_config_ref_uri names the
 *   project whose pipeline runs), also `allow_forks: true`.
 *
 * Every decision carries its explanation: per rule, the first claim that differs ("rule 2 requires ref
 * refs/heads/main, token has refs/pull/7/merge") or the default denial. `gprxy policy test` prints it and
 * the proxy writes it to the audit log of a refusal; the client gets a shorter reason (see clientReason).
 * Pure: no I/O.
 */
import type { CiKind, CiProviderSettings, CiRule } from '../config/ci-provider-config.js';
import { quote } from './errors.js';

export interface RuleVerdict {
  readonly rule: number;
  readonly account: string;
  readonly admitted: boolean;
  /** The conditions that held ("ref is refs/heads/main"). */
  readonly matched: readonly string[];
  /** Why the rule does not admit the token; absent when it does. */
  readonly reason?: string;
  /** The claims that differ (names only, for the client's message). */
  readonly differs: readonly string[];
}

export interface CiDecision {
  readonly admitted: boolean;
  readonly rule?: CiRule;
  readonly verdicts: readonly RuleVerdict[];
  /** The job's trigger when it is one denied by default (for messages). */
  readonly untrusted?: UntrustedTrigger;
  /** One paragraph: why admitted (the rule and its conditions) or refused (each rule's reason). */
  readonly explanation: string;
  /** For the client: the refusal without the rules' required values. */
  readonly clientReason: string;
}

export interface UntrustedTrigger {
  readonly kind: 'pull_request' | 'fork';
  readonly description: string;
}

/** Claims the audit log keeps of a job: which run it was, to find it in the CI system. */
const RUN_CLAIMS: Record<CiKind, readonly string[]> = {
  github_actions: ['repository', 'repository_id', 'run_id', 'run_attempt', 'run_number', 'workflow', 'job_workflow_ref', 'event_name', 'ref', 'sha', 'actor', 'environment'],
  gitlab: ['project_path', 'project_id', 'pipeline_id', 'job_id', 'pipeline_source', 'ref', 'ref_type', 'sha', 'user_login', 'environment'],
};

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

/** The claim's values as text (an array claim, such as GitLab's groups_direct, gives each element). */
function claimValues(claims: Record<string, unknown>, name: string): string[] | undefined {
  if (!Object.hasOwn(claims, name)) return undefined;
  const v = claims[name];
  if (Array.isArray(v)) return v.map(text).filter((x): x is string => x !== undefined);
  const t = text(v);
  return t === undefined ? undefined : [t];
}

/** `*` matches within one path segment (not "/"), `**` across segments; everything else literally. */
export function globMatches(pattern: string, value: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else re += ch.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's').test(value);
}

function valueMatches(allowed: string, value: string): boolean {
  return allowed.includes('*') ? globMatches(allowed, value) : allowed === value;
}

/** "refs/heads/main", "one of push, workflow_dispatch", "matching refs/heads/release/*". */
function describeAllowed(values: readonly string[]): string {
  if (values.length === 1) return values[0]!.includes('*') ? `matching ${values[0]}` : values[0]!;
  return `one of ${values.join(', ')}`;
}

/** The project path in GitLab's ci_config_ref_uri: "gitlab.com/org/repo//.gitlab-ci.yml@refs/heads/main" → "org/repo". */
function configProject(uri: string): string | undefined {
  const m = /^[^/]+\/(.+?)\/\/.*$/.exec(uri);
  return m?.[1];
}

/** The job's trigger when it is one the rules deny unless they say otherwise. */
export function untrustedTrigger(kind: CiKind, claims: Record<string, unknown>): UntrustedTrigger | undefined {
  if (kind === 'github_actions') {
    const event = text(claims.event_name);
    const ref = text(claims.ref) ?? '(none)';
    if (event === 'pull_request_target') {
      return { kind: 'fork', description: `event pull_request_target runs with the base branch's ref ${ref} while building pull-request (possibly fork) code` };
    }
    if (event === 'pull_request') return { kind: 'pull_request', description: `event pull_request runs the pull request's code (ref ${ref})` };
    return undefined;
  }
  const source = text(claims.pipeline_source);
  if (source !== 'merge_request_event' && source !== 'external_pull_request_event') return undefined;
  const project = text(claims.project_path);
  const runsIn = typeof claims.ci_config_ref_uri === 'string' ? configProject(claims.ci_config_ref_uri) : undefined;
  if (project !== undefined && runsIn !== undefined && project !== runsIn) {
    return { kind: 'fork', description: `a merge request from the fork ${project} (pipeline of ${runsIn}) runs the fork's code` };
  }
  return { kind: 'pull_request', description: `pipeline_source ${source} runs the merge request's code` };
}

function judge(rule: CiRule, claims: Record<string, unknown>, untrusted: UntrustedTrigger | undefined): RuleVerdict {
  const matched: string[] = [];
  const failures: string[] = [];
  const differs: string[] = [];
  for (const c of rule.conditions) {
    const values = claimValues(claims, c.claim);
    if (values === undefined || values.length === 0) {
      failures.push(`requires ${c.claim} ${describeAllowed(c.values)}, token has no ${c.claim} claim`);
      differs.push(c.claim);
      continue;
    }
    const hit = values.find((v) => c.values.some((allowed) => valueMatches(allowed, v)));
    if (hit === undefined) {
      failures.push(`requires ${c.claim} ${describeAllowed(c.values)}, token has ${values.map((v) => quote(v, 80).slice(1, -1)).join(', ')}`);
      differs.push(c.claim);
    } else matched.push(`${c.claim} is ${hit}`);
  }
  const base = { rule: rule.number, account: rule.account, matched, differs };
  if (failures.length > 0) return { ...base, admitted: false, reason: `rule ${rule.number} ${failures.join('; ')}` };
  if (untrusted?.kind === 'pull_request' && !rule.allowPullRequests) {
    return { ...base, admitted: false, reason: `rule ${rule.number} matches, but ${untrusted.description}: denied unless the rule sets allow_pull_requests: true` };
  }
  if (untrusted?.kind === 'fork' && !rule.allowForks) {
    return { ...base, admitted: false, reason: `rule ${rule.number} matches, but ${untrusted.description}: denied unless the rule sets allow_forks: true` };
  }
  return { ...base, admitted: true };
}

/** First-match over the provider's rules, with the explanation of every rule tried. */
export function decideCi(settings: CiProviderSettings, claims: Record<string, unknown>): CiDecision {
  const untrusted = untrustedTrigger(settings.kind, claims);
  const verdicts: RuleVerdict[] = [];
  for (const rule of settings.rules) {
    const verdict = judge(rule, claims, untrusted);
    verdicts.push(verdict);
    if (verdict.admitted) {
      const why = verdict.matched.join(', ');
      const gate = untrusted ? ` (${untrusted.kind === 'fork' ? 'allow_forks' : 'allow_pull_requests'}: true admits ${untrusted.description})` : '';
      return {
        admitted: true,
        rule,
        verdicts,
        ...(untrusted ? { untrusted } : {}),
        explanation: `rule ${rule.number} admits the job as ${rule.account}: ${why}${gate}`,
        clientReason: '',
      };
    }
  }
  const gated = verdicts.find((v) => v.differs.length === 0);
  // A trigger denied by default is worth saying even when no rule got as far as the gate.
  const flag = untrusted?.kind === 'fork' ? 'allow_forks' : 'allow_pull_requests';
  const note = untrusted && !gated ? `; besides, ${untrusted.description}: denied unless a rule sets ${flag}: true` : '';
  const explanation = (verdicts.length ? verdicts.map((v) => v.reason).join('; ') : 'the provider has no rules') + note;
  // The client learns what about its own job is refused, not the values the rules require.
  const closest = [...verdicts].sort((a, b) => a.differs.length - b.differs.length)[0];
  const clientReason = gated
    ? `the job token is refused: ${untrusted?.description ?? 'its trigger is denied by default'}, which rule ${gated.rule} does not allow`
    : `no rule admits this job token (${verdicts.length} rule${verdicts.length === 1 ? '' : 's'} checked${closest ? `; the closest, rule ${closest.rule}, differs on ${closest.differs.join(', ')}` : ''}` +
      `${untrusted ? `; ${untrusted.kind === 'fork' ? 'a fork-originated' : 'a pull-request'} job (${untrusted.kind === 'fork' ? 'pull_request_target or fork merge request' : 'pull_request or merge request'}) is denied by default` : ''}); ` +
      'gprxy policy test explains it, and the proxy audit log has the full reason';
  return { admitted: false, verdicts, ...(untrusted ? { untrusted } : {}), explanation, clientReason };
}

/** The claims of the job's run for the audit log (GitHub run_id/run_attempt, GitLab pipeline_id/job_id, ...). */
export function ciRunFields(kind: CiKind, claims: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of RUN_CLAIMS[kind]) {
    const v = Object.hasOwn(claims, name) ? text(claims[name]) : undefined;
    if (v !== undefined) out[name] = v.length > 200 ? `${v.slice(0, 200)}…` : v;
  }
  return out;
}
