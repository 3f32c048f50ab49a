/**
 * Every log line any test produces is also appended to one file per `vitest run`; the global teardown
 * greps it for anything shaped like a token, so a leak anywhere in the suite fails the run.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export function runLogPath(): string | undefined {
  return process.env.GPRXY_TEST_RUN_LOG;
}

export function appendRunLog(text: string): void {
  const path = runLogPath();
  if (!path) return;
  mkdirSync(dirname(path), { recursive: true });
  appendFileSync(path, text);
}

/** JWTs (access or ID tokens) and oidc-provider's opaque refresh tokens / codes as they appear in JSON. */
export const SECRET_PATTERNS: readonly RegExp[] = [/eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}/];
