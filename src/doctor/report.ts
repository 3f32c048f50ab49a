/**
 * `gprxy doctor`'s report (issue 19): one check per line with ✓/✗ and, for a failure, the fix. Checks are
 * data (for --json) and the exit code is 1 when any check failed. `warn` is a finding that does not fail the
 * run (a CI rule that pins only mutable names); `skip` is a check that could not run because an earlier one
 * failed, or that needs something not given (a database name).
 */
export type CheckStatus = 'ok' | 'fail' | 'warn' | 'skip';

export interface DoctorCheck {
  /** Stable id for scripts and tests (e.g. issuer_discovery, proxy_tls, database_login). */
  readonly check: string;
  readonly status: CheckStatus;
  /** What was checked ("issuer discovery https://…", "mydb as app_writer"). */
  readonly subject: string;
  /** What was found. */
  readonly detail: string;
  /** The next step when it failed or warned. */
  readonly fix?: string;
}

const MARK: Record<CheckStatus, string> = { ok: '✓', fail: '✗', warn: '!', skip: '-' };

export function formatCheck(c: DoctorCheck): string {
  return `${MARK[c.status]} ${c.subject}: ${c.detail}${c.fix && c.status !== 'ok' ? ` — fix: ${c.fix}` : ''}`;
}

export function failed(checks: readonly DoctorCheck[]): number {
  return checks.filter((c) => c.status === 'fail').length;
}

export function check(check: string, status: CheckStatus, subject: string, detail: string, fix?: string): DoctorCheck {
  return { check, status, subject, detail, ...(fix !== undefined ? { fix } : {}) };
}
