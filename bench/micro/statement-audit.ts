/**
 * The statement audit's own cost, without sockets: a pgbench -S transaction's bytes (simple or extended
 * protocol, as pgbench sends them) fed through StatementAudit in a loop, per audit.statements mode.
 * Reports ns per transaction. Events go to a pino logger writing to /dev/null (as fast as pino gets).
 *
 *   node --import tsx bench/micro/statement-audit.ts [iterations=300000]
 */
import { serialize } from 'pg-protocol';
import pino from 'pino';
import type { AuditStatements } from '../../src/config/proxy-config.js';
import { StatementAudit } from '../../src/proxy/statement-audit/statement-audit.js';

function message(type: string, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body + '\0') : body;
  const out = Buffer.alloc(5 + b.length);
  out.write(type, 0, 'latin1');
  out.writeUInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

const text = 'SELECT abalance FROM pgbench_accounts WHERE aid = 52346;';
const row = Buffer.concat([message('T', Buffer.alloc(27)), message('D', Buffer.alloc(12))]);
const ready = message('Z', Buffer.from('I'));
const streams = {
  simple: { client: serialize.query(text), backend: Buffer.concat([row, message('C', 'SELECT 1'), ready]) },
  extended: {
    client: Buffer.concat([serialize.parse({ text: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;' }), serialize.bind({ values: ['52346'] }), serialize.describe({ type: 'P' }), serialize.execute(), serialize.sync()]),
    backend: Buffer.concat([message('1', Buffer.alloc(0)), message('2', Buffer.alloc(0)), row, message('C', 'SELECT 1'), ready]),
  },
};

const iterations = Number(process.argv[2] ?? 300_000);
const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));

for (const [name, s] of Object.entries(streams)) {
  for (const mode of ['ddl', 'write', 'all', 'ddl', 'write', 'all'] as AuditStatements[]) {
    const audit = new StatementAudit({
      config: { statements: mode, redactLiterals: false, bindValues: false, maxStatementLength: 4096 },
      identity: { session: 1, client: '127.0.0.1:5000', issuer: 'https://idp.example/', user: 'alice@example.com', email: 'alice@example.com', tenant: 't', account: 'app_writer', database: 'mydb', backendPid: 42 },
      parameters: new Map([['application_name', 'alice@example.com via pgbench']]),
      logger,
    });
    // Fresh buffers per chunk, as sockets deliver them.
    const client = Buffer.from(s.client);
    const backend = Buffer.from(s.backend);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) {
      audit.fromClient(client);
      audit.fromBackend(backend);
    }
    const ns = Number(process.hrtime.bigint() - t0) / iterations;
    console.log(`${name.padEnd(8)} ${mode.padEnd(5)} ${ns.toFixed(0).padStart(6)} ns per transaction (${audit.events} events)`);
  }
}
logger.flush();
