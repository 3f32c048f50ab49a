/**
 * Database names are client input: whatever the name (`constructor`, `__proto__`, `toString`, ...), an
 * unknown one is refused with 3D000 before the proxy asks for a password, never as an internal error.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';

let stack: ProxyStack;

beforeAll(async () => {
  stack = await startProxyStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('unknown database names', () => {
  const names = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf', 'nosuchdb'];
  for (const database of names) {
    it(`refuses database=${database} with 3D000 before any password request`, async () => {
      let asked = false;
      const c = new pg.Client({
        host: '127.0.0.1',
        port: stack.port,
        user: 'alice@example.com',
        database,
        ssl: stack.ssl,
        password: () => {
          asked = true;
          return 'not-a-token';
        },
      });
      const error = (await c.connect().then(
        () => undefined,
        (e: unknown) => e,
      )) as { code?: string } | undefined;
      await c.end().catch(() => {});
      expect(error?.code).toBe('3D000');
      expect(asked).toBe(false);
      const line = await stack.logs.waitFor((l) => l.reason === 'unknown_database' && l.database === undefined && typeof l.message === 'string' && l.message.includes(JSON.stringify(database)));
      expect(line.sqlstate).toBe('3D000');
    });
  }

  it('logged no internal error for any of them', () => {
    expect(stack.logs.events('internal_error')).toEqual([]);
  });
});
