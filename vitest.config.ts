import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration suites each start real servers; two cores cannot run many at once.
    maxWorkers: 2,
    reporters: ['default', './test/support/failures-last-reporter.ts'],
  },
});
