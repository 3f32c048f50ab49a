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

/** Decodes the setup: every statement's SQL, and the SELECT's SQL text and bound values. */
function decode(bytes: Buffer): { sql: string; values: string[]; statements: string[] } {
  const reader = new FrameReader({ maxMessageLength: 1 << 20 });
  reader.push(bytes);
  const statements: string[] = [];
  let sql = '';
  let values: string[] = [];
  let msg;
  while ((msg = reader.nextMessage())) {
    if (msg.type === 0x50 /* P */) statements.push(msg.body.toString('utf8', 1, msg.body.indexOf(0, 1)));
    if (msg.type !== 0x42 /* B */) continue;
    const bind = msg.body;
    let at = 2; // portal "" and statement "" (two NULs)
    at += 2; // no parameter formats
    const n = bind.readInt16BE(at);
    at += 2;
    if (n === 0) continue;
    values = [];
    for (let i = 0; i < n; i++) {
      const len = bind.readInt32BE(at);
      at += 4;
      values.push(bind.toString('utf8', at, at + len));
      at += len;
    }
    sql = statements.at(-1)!;
  }
  return { sql, values, statements };
}

describe('session setup', () => {
  it('sends every value as a bind parameter, never in the SQL text', () => {
    const { sql, values } = decode(buildSetup({ identity, clientParameters: { client_encoding: 'UTF8' }, settings: { 'app.user_id': 'https://gprxy.io/user_id' }, context: 'SIGNED.CONTEXT' }));
    expect(sql).toMatch(/^SELECT pg_catalog\.set_config\(\$1, \$2, false\)(, pg_catalog\.set_config\(\$\d+, \$\d+, false\))*$/);
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
    expect(sql).toBe('SELECT pg_catalog.set_config($1, $2, false), pg_catalog.set_config($3, $4, false), gprxy.begin_session($5::pg_catalog.int8)');
    expect(values).toEqual(['application_name', 'alice@example.com', 'gprxy.context', 'SIGNED.CONTEXT', '1730000000000123']);
  });

  it('joins array claims with commas', () => {
    const { values } = decode(buildSetup({ identity, clientParameters: {}, settings: { 'app.roles': 'https://gprxy.io/roles' } }));
    expect(values.slice(-2)).toEqual(['app.roles', 'pg_writer,extra']);
  });

  it('resolves names only in pg_catalog and gprxy: a safe search_path first, the account default restored last', () => {
    const { statements } = decode(buildSetup({ identity, clientParameters: {}, settings: {}, context: 'C', epoch: 1 }));
    expect(statements).toEqual(['SET search_path = pg_catalog, pg_temp', expect.stringMatching(/^SELECT /), 'RESET search_path']);
    // Only qualified calls: every function name carries its schema.
    expect(statements[1]!.replace(/(pg_catalog|gprxy)\.[a-z_]+\(/g, '')).not.toMatch(/[a-z_]+\(/);
  });

  it("keeps the client's own search_path when it asked for one in the startup packet", () => {
    const { statements, values } = decode(buildSetup({ identity, clientParameters: { search_path: 'app, public' }, settings: {} }));
    expect(statements.at(-1)).toMatch(/^SELECT /);
    expect(values.slice(0, 2)).toEqual(['search_path', 'app, public']);
  });
});
