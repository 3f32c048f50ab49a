/**
 * CI job tokens as the CLI's token source (issue 19): no stored secret at all. `gprxy connect` and
 * `gprxy token` use it when they find a job token in the environment (src/config/cli-config.ts
 * detectCiJob), or when `--ci` forces it:
 * - GitHub Actions: a GET to ACTIONS_ID_TOKEN_REQUEST_URL with `audience=` the proxy's audience and
 *   `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered {"value": JWT}. Job tokens live
 *   minutes; the source fetches a new one when the CLI's refresh policy says (the tunnel's keeper asks
 *   then), so a long `gprxy connect` always has a fresh one for new connections.
 * - GitLab CI: the job's `id_tokens` variable (GPRXY_ID_TOKEN, or the name in GPRXY_CI_TOKEN_VAR). GitLab
 *   issues it once per job, with the audience the job's YAML chose: nothing can renew it.
 * Nothing is written anywhere and nothing goes into argv; errors never contain the request token or a job token.
 */
import type { CiJobEnvironment } from '../config/cli-config.js';
import { refreshAt as policyRefreshAt, needsRefresh } from '../shared/refresh-policy.js';
import { GprxyError } from '../shared/errors.js';
import { decodeClaims } from './identity.js';
import type { AccessToken } from './token-source.js';

export class CiTokenError extends GprxyError<'ci_token_unavailable'> {
  readonly code = 'ci_token_unavailable' as const;
}

export interface CiTokenSourceOptions {
  readonly job: Exclude<CiJobEnvironment, { kind: 'none' }>;
  /** The proxy's audience (providers[].audience): GitHub mints the token for it, a GitLab token must carry it. */
  readonly audience: string | undefined;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  readonly timeoutMs?: number;
}

const PERMISSION_HINT = 'the job needs `permissions: id-token: write`';

export class CiTokenSource {
  readonly mode = 'ci_job' as const;
  readonly #opts: CiTokenSourceOptions;
  readonly #now: () => number;
  #current: AccessToken | undefined;
  #issuedAt = 0;
  #inflight: Promise<AccessToken> | undefined;

  constructor(opts: CiTokenSourceOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** The job token, fetched again (GitHub) when the refresh policy says. Concurrent callers share one fetch. */
  getAccessToken(): Promise<AccessToken> {
    this.#inflight ??= this.#get().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #get(): Promise<AccessToken> {
    const { job } = this.#opts;
    if (job.kind === 'gitlab') return this.#gitlab(job);
    if (this.#current && !needsRefresh({ issuedAt: this.#issuedAt, expiresAt: this.#current.expiresAt }, this.#now())) return this.#current;
    const fresh = await this.#github(job);
    this.#current = fresh;
    return fresh;
  }

  #gitlab(job: Extract<CiJobEnvironment, { kind: 'gitlab' }>): AccessToken {
    const claims = decodeClaims(job.token);
    if (Object.keys(claims).length === 0) throw new CiTokenError(`$${job.variable} does not hold a JWT; it must be the job's id_tokens variable (GitLab sets it from \`id_tokens: ${job.variable}: aud: ...\`)`);
    const audience = this.#opts.audience;
    const aud = Array.isArray(claims.aud) ? claims.aud : typeof claims.aud === 'string' ? [claims.aud] : [];
    if (audience && !aud.includes(audience)) {
      throw new CiTokenError(`the ID token in $${job.variable} is for audience ${aud.map((a) => JSON.stringify(a)).join(', ') || '(none)'}, but the proxy expects ${JSON.stringify(audience)}: set \`id_tokens: ${job.variable}: aud: ${audience}\` in .gitlab-ci.yml`);
    }
    const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : Number.POSITIVE_INFINITY;
    if (expiresAt <= this.#now()) {
      throw new CiTokenError(`the ID token in $${job.variable} expired at ${new Date(expiresAt).toISOString()}; GitLab issues it once per job: run the job again (or raise its timeout, which bounds the token's lifetime)`);
    }
    // Nothing can renew it: the keeper must not ask again before it runs out.
    return { accessToken: job.token, expiresAt, refreshAt: Number.POSITIVE_INFINITY, claims };
  }

  async #github(job: Extract<CiJobEnvironment, { kind: 'github_actions' }>): Promise<AccessToken> {
    const audience = this.#opts.audience;
    if (!audience) {
      throw new CiTokenError("GitHub Actions mints the job token for an audience: set GPRXY_AUDIENCE to the proxy's (its providers[].audience for token.actions.githubusercontent.com)");
    }
    let url: URL;
    try {
      url = new URL(job.requestUrl);
    } catch {
      throw new CiTokenError('ACTIONS_ID_TOKEN_REQUEST_URL is not a URL; it is set by GitHub Actions when the job has `permissions: id-token: write`');
    }
    url.searchParams.set('audience', audience);
    const fetchImpl = this.#opts.fetch ?? fetch;
    let response: Response;
    try {
      response = await fetchImpl(url, {
        headers: { authorization: `bearer ${job.requestToken}`, accept: 'application/json; api-version=2.0' },
        signal: AbortSignal.timeout(this.#opts.timeoutMs ?? 15_000),
      });
    } catch (e) {
      throw new CiTokenError(`could not reach GitHub's job token endpoint ${url.origin} (${(e as Error).message}); retry the job`, { cause: e });
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      const hint = response.status === 401 || response.status === 403 ? `: ${PERMISSION_HINT}, and the token must be requested while the job runs` : '';
      throw new CiTokenError(`GitHub's job token endpoint answered HTTP ${response.status}${hint}`);
    }
    let value: unknown;
    try {
      value = ((await response.json()) as { value?: unknown }).value;
    } catch (e) {
      throw new CiTokenError("GitHub's job token endpoint did not answer JSON with a token", { cause: e });
    }
    if (typeof value !== 'string' || value.split('.').length !== 3) throw new CiTokenError("GitHub's job token endpoint answered without a token (no \"value\")");
    const claims = decodeClaims(value);
    const issuedAt = this.#now();
    const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : issuedAt + 300_000;
    // Times on this machine's clock from the token's own lifetime, so a skewed clock does not refetch in a loop.
    const lifetime = typeof claims.exp === 'number' && typeof claims.iat === 'number' ? (claims.exp - claims.iat) * 1000 : expiresAt - issuedAt;
    this.#issuedAt = issuedAt;
    const localExpiry = issuedAt + lifetime;
    return { accessToken: value, expiresAt: localExpiry, refreshAt: policyRefreshAt({ issuedAt, expiresAt: localExpiry }), claims };
  }
}

/** The error of `--ci` where no job token is to be had, naming what the job lacks. */
export function noCiJob(job: Extract<CiJobEnvironment, { kind: 'none' }>): CiTokenError {
  return new CiTokenError(
    job.missing ??
      '--ci: no CI job token in this environment. In GitHub Actions give the job `permissions: id-token: write` (then ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are set); ' +
        'in GitLab CI add `id_tokens: { GPRXY_ID_TOKEN: { aud: <the proxy\'s audience> } }` to the job (or set GPRXY_CI_TOKEN_VAR to your variable\'s name)',
  );
}
