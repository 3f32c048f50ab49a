/**
 * Exit codes scripts can rely on (src/cli/exit-codes.ts, DESIGN.md 2.6), through the real CLI: 0 ok,
 * 1 error, 2 usage, 4 login required, 130/143 signals; and every --help lists them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

let home: string;
let env: Record<string, string>;

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'gprxy-exit-'));
  env = { HOME: home, XDG_CONFIG_HOME: path.join(home, '.config') };
});
afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('exit codes', () => {
  it('2 for a wrong command line, whatever the command', async () => {
    for (const args of [['token', '--no-such-flag'], ['connect'], ['connect', 'mydb', '--port', 'abc'], ['login', '--device', '--browser'], ['no-such-command'], ['status', 'extra-arg']]) {
      const r = await runCli(args, { env });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
    }
  });

  it('4 when only gprxy login helps (token, status is not an error, connect)', async () => {
    const token = await runCli(['token'], { env });
    expect(token.code).toBe(4);
    expect(token.stderr).toBe('gprxy: not logged in: run gprxy login\n');
    const connect = await runCli(['connect', 'mydb'], { env: { ...env, GPRXY_PROXY: '127.0.0.1:1' } });
    expect(connect.code, connect.stderr).toBe(4);
    const status = await runCli(['status'], { env });
    expect(status.code).toBe(0);
  });

  it('1 for any other error, including what oclif would report with 2 (this.error)', async () => {
    const unreachable = await runCli(['login'], { env: { ...env, GPRXY_ISSUER: 'https://localhost:1/', GPRXY_CLIENT_ID: 'x' } });
    expect(unreachable.code).toBe(1);
    const noProxy = await runCli(['connect', 'mydb'], { env });
    expect(noProxy.code).toBe(1);
    expect(noProxy.stderr).toContain('run gprxy configure --proxy');
    const badConfig = await runCli(['serve', '--config', path.join(home, 'missing.yaml')], { env });
    expect(badConfig.code).toBe(1);
  });

  it('every --help and the root help list the codes', async () => {
    for (const args of [['--help'], ['token', '--help'], ['connect', '--help'], ['login', '--help'], ['logout', '--help'], ['status', '--help']]) {
      const r = await runCli(args, { env });
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/EXIT CODES\n\s+0\s+success\n\s+1\s+error.*\n\s+2\s+usage error.*\n\s+4\s+login required.*\n\s+130\s+interrupted.*\n\s+143\s+terminated/);
    }
  });
});
