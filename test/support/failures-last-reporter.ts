/**
 * Repeats the names of failed tests as the run's last lines. Scripts that keep only the tail of `npm test`
 * (fresh-clone-check keeps 15 lines) would otherwise show the counts but not which test failed.
 */
import type { Reporter, TestModule } from 'vitest/node';
import { relative } from 'node:path';

export default class FailuresLastReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const failed: string[] = [];
    for (const m of testModules) {
      const file = relative(process.cwd(), m.moduleId);
      const tests = [...m.children.allTests()].filter((t) => t.result().state === 'failed');
      if (tests.length === 0 && m.state() === 'failed') failed.push(`${file} (the file failed outside its tests)`);
      for (const t of tests) failed.push(`${file} > ${t.fullName}`);
    }
    if (failed.length === 0) return;
    process.stdout.write(`\nfailed (${failed.length}):\n${failed.map((f) => `  ${f}`).join('\n')}\n`);
  }
}
