import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bench/out/', '.tmp/', 'oclif.manifest.json'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', fetch: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', structuredClone: 'readonly', crypto: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'process.env is read only in src/config and src/commands (DESIGN.md 3).' }],
    },
  },
  {
    files: ['src/config/**', 'src/commands/**', 'src/cli/**', 'bin/**', 'test/**', 'bench/**', 'chaos/**', 'vitest.config.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
  // Promises the proxy forgets are crashes waiting to happen: Node ends the process on an unhandled rejection,
  // and one connection's failure must never end the process. These two rules need type information, so they
  // run on src/ only (the full type-checked rule set tripled lint time for findings of little value here).
  {
    files: ['src/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: dirname(fileURLToPath(import.meta.url)) } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  // Errors are classes with a literal code: they extend GprxyError (src/shared/errors.ts), never Error directly.
  {
    files: ['src/**'],
    ignores: ['src/shared/errors.ts'],
    rules: {
      'no-restricted-syntax': ['error', { selector: "ClassDeclaration[superClass.name='Error']", message: 'extend GprxyError (src/shared/errors.ts): errors carry a literal code' }],
    },
  },
  // Import direction (DESIGN.md section 3): commands → (proxy | tunnel | oauth) → (token | protocol | config | net);
  // protocol and shared import nothing of ours but shared; nothing imports upward.
  ...layers({
    shared: ['protocol', 'net', 'token', 'config', 'sql', 'proxy', 'tunnel', 'oauth', 'cli', 'commands', 'demo', 'doctor'],
    protocol: ['net', 'token', 'config', 'sql', 'proxy', 'tunnel', 'oauth', 'cli', 'commands', 'demo', 'doctor'],
    net: ['protocol', 'token', 'config', 'sql', 'proxy', 'tunnel', 'oauth', 'cli', 'commands', 'demo', 'doctor'],
    config: ['token', 'sql', 'proxy', 'tunnel', 'oauth', 'cli', 'commands', 'demo', 'doctor'],
    token: ['sql', 'proxy', 'tunnel', 'oauth', 'cli', 'commands', 'demo', 'doctor'],
    sql: ['token', 'proxy', 'tunnel', 'oauth', 'cli', 'commands', 'demo', 'doctor'],
    proxy: ['tunnel', 'oauth', 'cli', 'commands', 'demo', 'doctor'],
    tunnel: ['proxy', 'oauth', 'cli', 'commands', 'demo', 'doctor'],
    oauth: ['token', 'proxy', 'tunnel', 'cli', 'commands', 'demo', 'doctor'],
    cli: ['proxy', 'tunnel', 'commands', 'demo', 'doctor'],
    demo: ['commands', 'doctor'],
    // gprxy doctor (src/doctor/) checks both halves: it may use proxy, tunnel and oauth; only commands use it.
    doctor: ['cli', 'commands', 'demo'],
  }),
);

/** One no-restricted-imports block per folder of src/: the folders it must not import from. */
function layers(forbidden) {
  return Object.entries(forbidden).map(([layer, banned]) => ({
    files: [`src/${layer}/**`],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: banned.map((b) => `**/${b}/*`), message: `src/${layer} must not import from ${banned.join(', ')} (DESIGN.md section 3, docs/ARCHITECTURE.md)` }] },
      ],
    },
  }));
}
