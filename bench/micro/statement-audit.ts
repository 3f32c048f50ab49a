/**
 * The statement audit's own cost, without sockets: a pgbench -S transaction's bytes (simple or extended
 * protocol, as pgbench sends them) fed through StatementAudit in a loop, per audit.statements mode.
 * Reports the process's CPU time (user + system, all threads) per transaction, which other load on the
 * machine barely moves. Events go where the proxy sends them by default: the main log's stream (here a
 * logger as `gprxy serve` creates it, writing to /dev/null).
 *
 *   node --import tsx bench/micro/statement-audit.ts [iterations=300000]
 */
import { serialize } from 'pg-protocol';
import type { AuditStatements } from '../../src/config/proxy-config.js';
import { createLogger } from '../../src/proxy/logger.js';
import { statementAuditFor } from '../../src/proxy/statement-audit/index.js';

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
const logger = createLogger({ level: 'info', file: '/dev/null' });

for (const [name, s] of Object.entries(streams)) {
  for (const mode of ['none', 'ddl', 'write', 'all', 'none', 'ddl', 'write', 'all'] as AuditStatements[]) {
    const database = { audit: { statements: mode, redactLiterals: false, bindValues: false, maxStatementLength: 4096 } } as Parameters<typeof statementAuditFor>[0];
    const audit = statementAuditFor(
      database,
      { session: 1, client: '127.0.0.1:5000', issuer: 'https://idp.example/', user: 'alice@example.com', email: 'alice@example.com', tenant: 't', account: 'app_writer', database: 'mydb', backendPid: 42 },
      new Map([['application_name', 'alice@example.com via pgbench']]),
      logger,
    ) ?? { fromClient: () => {}, fromBackend: () => {}, events: 0 };
    // Fresh buffers per chunk, as sockets deliver them (their copy is in the 'none' baseline too).
    const client = s.client;
    const backend = s.backend;
    const cpu = () => {
      const u = process.cpuUsage();
      return u.user + u.system;
    };
    const t0 = cpu();
    for (let i = 0; i < iterations; i++) {
      audit.fromClient(Buffer.from(client));
      audit.fromBackend(Buffer.from(backend));
    }
    const us = (cpu() - t0) / iterations;
    console.log(`${name.padEnd(8)} ${mode.padEnd(5)} ${us.toFixed(2).padStart(6)} µs CPU per transaction (${audit.events} events)`);
  }
}
logger.flush();
