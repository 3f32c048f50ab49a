import { describe, expect, it } from 'vitest';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { buildSetup } from '../../src/proxy/session-setup.js';
import type { Identity } from '../../src/token/identity.js';

const identity: Identity = {
  user: 'alice@example.com',
  subject: 'auth0|alice0001',
  email: 'alice@example.com',
  roles: ['pg_writer'],
  account: 'app_writer',
  tenantId: 'tenant-a',
  claims: { 'https://gprxy.io/user_id': 'auth0|alice0001', 'https://gprxy.io/roles': ['pg_writer', 'extra'] },
};

/** Decodes the Parse and Bind messages of the setup: the SQL text and the bound values. */
function decode(bytes: Buffer): { sql: string; values: string[] } {
  const reader = new FrameReader({ maxMessageLength: 1 << 20 });
  reader.push(bytes);
  const parse = reader.nextMessage()!;
  const sql = parse.body.toString('utf8', 1, parse.body.indexOf(0, 1));
  const bind = reader.nextMessage()!.body;
  let at = 2; // portal "" and statement "" (two NULs)
  at += 2; // no parameter formats
  const n = bind.readInt16BE(at);
  at += 2;
  const values: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = bind.readInt32BE(at);
    at += 4;
    values.push(bind.toString('utf8', at, at + len));
    at += len;
  }
  return { sql, values };
}

describe('session setup', () => {
  it('sends every value as a bind parameter, never in the SQL text', () => {
    const { sql, values } = decode(buildSetup({ identity, clientParameters: { client_encoding: 'UTF8' }, settings: { 'app.user_id': 'https://gprxy.io/user_id' }, context: 'SIGNED.CONTEXT' }));
    expect(sql).toMatch(/^select set_config\(\$1, \$2, false\)(, set_config\(\$\d+, \$\d+, false\))*$/);
    expect(sql).not.toContain('SIGNED');
    expect(values).toEqual(['client_encoding', 'UTF8', 'application_name', 'alice@example.com', 'app.user_id', 'auth0|alice0001', 'gprxy.context', 'SIGNED.CONTEXT']);
  });

  it('never lets a client startup parameter set its identity, role or context', () => {
    const { values } = decode(
      buildSetup({
        identity,
        clientParameters: { role: 'app_admin', session_authorization: 'postgres', 'gprxy.context': 'forged', 'GPRXY.CONTEXT': 'forged', 'app.user_id': 'someone-else', application_name: 'psql', DateStyle: 'ISO' },
        settings: { 'app.user_id': 'https://gprxy.io/user_id' },
      }),
    );
    const names = values.filter((_, i) => i % 2 === 0);
    expect(names).toEqual(['DateStyle', 'application_name', 'app.user_id']);
    expect(values).toContain('alice@example.com via psql');
    expect(values).not.toContain('forged');
    expect(values).not.toContain('someone-else');
  });

  it('starts the checkout with gprxy.begin_session in the same statement, the epoch as the last bind parameter', () => {
    const { sql, values } = decode(buildSetup({ identity, clientParameters: {}, settings: {}, context: 'SIGNED.CONTEXT', epoch: 1730000000000123 }));
    expect(sql).toBe('select set_config($1, $2, false), set_config($3, $4, false), gprxy.begin_session($5::bigint)');
    expect(values).toEqual(['application_name', 'alice@example.com', 'gprxy.context', 'SIGNED.CONTEXT', '1730000000000123']);
  });

  it('joins array claims with commas', () => {
    const { values } = decode(buildSetup({ identity, clientParameters: {}, settings: { 'app.roles': 'https://gprxy.io/roles' } }));
    expect(values.slice(-2)).toEqual(['app.roles', 'pg_writer,extra']);
  });
});
