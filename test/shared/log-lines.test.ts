/**
 * The run-wide check of the proxy's log lines (test/support/log-lines.ts): repeated keys at any depth, and lines
 * of gprxy serve without an event.
 */
import { describe, expect, it } from 'vitest';
import { duplicateKeys, logLineProblems } from '../support/log-lines.js';

describe('duplicateKeys', () => {
  it('finds a key written twice, at the top or nested, and nothing in clean lines', () => {
    expect(duplicateKeys('{"level":"info","client":"1.2.3.4:5","event":"admin_action","client":"1.2.3.4:5"}')).toEqual(['client']);
    expect(duplicateKeys('{"a":{"b":1,"b":2},"c":[{"d":1},{"d":2}]}')).toEqual(['b']);
    expect(duplicateKeys('{"msg":"say \\"a\\":1, \\"a\\":2","a":[1,"a"],"k":"{\\"x\\":1,\\"x\\":1}"}')).toEqual([]);
    expect(duplicateKeys('{"a":1,"b":{"a":1}}')).toEqual([]);
  });
});

describe('logLineProblems', () => {
  it("names the proxy's lines without an event or with a repeated key, and leaves other lines alone", () => {
    const text = [
      '{"level":"info","service":"gprxy","event":"listening","port":1}',
      '{"level":"warn","service":"gprxy","msg":"JWKS fetch failed"}',
      '{"level":"warn","service":"gprxy","event":"worker_crash","worker":1,"worker":1}',
      '{"not":"ours"}',
      'psql: error: plain text',
      '{"broken',
    ].join('\n');
    const problems = logLineProblems(text);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/no "event".*JWKS fetch failed/);
    expect(problems[1]).toMatch(/repeats "worker"/);
  });
});
