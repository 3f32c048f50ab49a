/**
 * `${VAR}` expansion for config files. Expansion happens on parsed string values (never on raw text),
 * so a secret containing quotes or YAML syntax cannot change the document's structure.
 * `$${` escapes a literal `${`. A missing variable is an error naming it and where it was used.
 */
import { GprxyError } from '../shared/errors.js';
export class MissingEnvError extends GprxyError<'missing_env'> {
  readonly code = 'missing_env' as const;
  constructor(readonly variable: string, readonly path: string) {
    super(`environment variable ${variable} is not set (used at ${path}); export it or remove the reference`);
  }
}

export function expandEnv(value: unknown, env: Readonly<Record<string, string | undefined>>, path = ''): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, escaped: string, name: string) => {
      if (escaped) return '${' + name + '}';
      const v = env[name];
      if (v === undefined) throw new MissingEnvError(name, path || '(root)');
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, `${path}[${i}]`));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, path ? `${path}.${k}` : k)]),
    );
  }
  return value;
}
