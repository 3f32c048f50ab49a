/**
 * `${VAR}` expansion for config files. Expansion happens on parsed string values (never on raw text),
 * so a secret containing quotes or YAML syntax cannot change the document's structure.
 * `$${` escapes a literal `${`. Missing variables are one error naming every one of them and where each
 * was used, so a user fixes them in one pass instead of one per run.
 */
import { GprxyError } from '../shared/errors.js';

export interface MissingVariable {
  readonly variable: string;
  readonly path: string;
}

export class MissingEnvError extends GprxyError<'missing_env'> {
  readonly code = 'missing_env' as const;
  constructor(readonly missing: readonly MissingVariable[]) {
    const list = missing.map((m) => `${m.variable} (used at ${m.path})`).join(', ');
    super(
      missing.length === 1
        ? `environment variable ${list} is not set; export it or remove the reference`
        : `environment variables ${list} are not set; export them or remove the references`,
    );
  }
  /** The first missing variable (kept for callers that name one). */
  get variable(): string {
    return this.missing[0]?.variable ?? '';
  }
}

function walk(value: unknown, env: Readonly<Record<string, string | undefined>>, path: string, missing: MissingVariable[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, escaped: string, name: string) => {
      if (escaped) return '${' + name + '}';
      const v = env[name];
      if (v === undefined) {
        missing.push({ variable: name, path: path || '(root)' });
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => walk(v, env, `${path}[${i}]`, missing));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, env, path ? `${path}.${k}` : k, missing)]));
  }
  return value;
}

export function expandEnv(value: unknown, env: Readonly<Record<string, string | undefined>>, path = ''): unknown {
  const missing: MissingVariable[] = [];
  const out = walk(value, env, path, missing);
  if (missing.length > 0) throw new MissingEnvError(missing);
  return out;
}
