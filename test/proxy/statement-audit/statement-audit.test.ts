import { Writable } from 'node:stream';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { StatementAudit } from '../../../src/proxy/statement-audit/statement-audit.js';

function msg(type: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body + '\0') : body;
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeUInt32BE(b.length + 4, 1);
  return Buffer.concat([header, b]);
}
const error = (code: string) => msg('E', Buffer.from(`SERROR\0C${code}\0Mboom\0\0`));
const ready = msg('Z', Buffer.from('I'));

// One session's two streams: a two-statement Query, a named statement run twice in one pipeline, a Parse
// that fails (the rest up to Sync is skipped), then COPY FROM STDIN.
const client = Buffer.concat([
  serialize.query('select 1; select 2'),
  serialize.parse({ name: 's1', text: 'insert into t values ($1)' }),
  serialize.bind({ statement: 's1', values: ['v1'] }),
  serialize.execute(),
  serialize.bind({ statement: 's1', values: ['v2'] }),
  serialize.execute(),
  serialize.sync(),
  serialize.parse({ text: 'selec oops' }),
  serialize.bind(),
  serialize.execute(),
  serialize.sync(),
  serialize.query('copy t from stdin'),
  serialize.copyData(Buffer.from('1\n2\n')),
  serialize.copyDone(),
  // A portal fetched in two Executes (one event), then s1 closed and parsed again with another text.
  serialize.parse({ name: 's2', text: 'select x from t' }),
  serialize.bind({ portal: 'p1', statement: 's2' }),
  serialize.execute({ portal: 'p1', rows: 1 }),
  serialize.execute({ portal: 'p1', rows: 1 }),
  serialize.close({ type: 'S', name: 's1' }),
  serialize.parse({ name: 's1', text: 'delete from t' }),
  serialize.bind({ statement: 's1' }),
  serialize.execute(),
  serialize.sync(),
]);
const backend = Buffer.concat([
  msg('T', Buffer.alloc(2)), msg('D', Buffer.alloc(6)), msg('C', 'SELECT 1'), msg('T', Buffer.alloc(2)), msg('D', Buffer.alloc(6)), msg('C', 'SELECT 1'), ready,
  msg('1'), msg('2'), msg('C', 'INSERT 0 1'), msg('2'), msg('C', 'INSERT 0 1'), ready,
  error('42601'), ready,
  msg('G', Buffer.alloc(3)), msg('C', 'COPY 2'), ready,
  msg('1'), msg('2'), msg('D', Buffer.alloc(6)), msg('s'), msg('D', Buffer.alloc(6)), msg('C', 'SELECT 1'), msg('3'), msg('1'), msg('2'), msg('C', 'DELETE 2'), msg('Z', Buffer.from('T')),
]);

function run(clientChunks: Buffer[], backendChunks: Buffer[]): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  const logger = pino({ base: null, timestamp: false }, pino.multistream([{ stream: sink }], { dedupe: false }));
  const audit = new StatementAudit({
    config: { statements: 'all', redactLiterals: false, bindValues: true, maxStatementLength: 4096 },
    identity: { session: 1, client: '127.0.0.1:1', user: 'u', account: 'a', database: 'd', backendPid: 9 },
    parameters: new Map([['standard_conforming_strings', 'on']]),
    logger,
    clock: () => 0,
  });
  for (const c of clientChunks) audit.fromClient(c);
  for (const c of backendChunks) audit.fromBackend(c);
  return lines.map(({ statement, statement_index, statement_name, tag, sqlstate, copy, params }) => ({ statement, statement_index, statement_name, tag, sqlstate, copy, params }));
}

function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(buf.subarray(from, p));
    from = p;
  }
  out.push(buf.subarray(from));
  return out;
}

const expected = [
  { statement: 'select 1', statement_index: 0, tag: 'SELECT 1' },
  { statement: 'select 2', statement_index: 1, tag: 'SELECT 1' },
  { statement: 'insert into t values ($1)', statement_name: 's1', tag: 'INSERT 0 1', params: ['v1'] },
  { statement: 'insert into t values ($1)', statement_name: 's1', tag: 'INSERT 0 1', params: ['v2'] },
  { statement: 'selec oops', statement_name: '', sqlstate: '42601' },
  { statement: 'copy t from stdin', statement_index: 0, tag: 'COPY 2', copy: 'in' },
  { statement: 'select x from t', statement_name: 's2', tag: 'SELECT 1', params: [] },
  { statement: 'delete from t', statement_name: 's1', tag: 'DELETE 2', params: [] },
].map((e) => ({ statement_index: undefined, statement_name: undefined, tag: undefined, sqlstate: undefined, copy: undefined, params: undefined, ...e }));

describe('StatementAudit follows the protocol whatever the chunking', () => {
  it('whole streams', () => {
    expect(run([client], [backend])).toEqual(expected);
  });

  it('byte by byte', () => {
    const bytes = (b: Buffer) => [...b].map((x) => Buffer.from([x]));
    expect(run(bytes(client), bytes(backend))).toEqual(expected);
  });

  it('any split points', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 30 }), (a, b) => {
        expect(run(split(client, a), split(backend, b))).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses to follow a client that pipelines without limit (the session ends: fail closed)', () => {
    const audit = new StatementAudit({
      config: { statements: 'all', redactLiterals: false, bindValues: false, maxStatementLength: 4096 },
      identity: { session: 1, client: 'c', user: 'u', account: 'a', database: 'd', backendPid: 9 },
      parameters: new Map(),
      logger: pino({ level: 'silent' }),
    });
    const many = Buffer.concat(Array.from({ length: 100_001 }, () => serialize.sync()));
    expect(() => audit.fromClient(many)).toThrow(expect.objectContaining({ code: 'statement_audit_failed' }));
  });
});
