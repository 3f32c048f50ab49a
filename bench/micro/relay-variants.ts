/**
 * Relay variants side by side, without PostgreSQL or pgbench in the way: a fake server answering each
 * Query with a pgbench -S sized result, a ping-pong client, and the relay under test in its own process.
 * Reports the relay process's CPU per round trip (user + system), the figure that decides throughput when
 * the cores are shared. Used for bench/RESULTS.md ("Relay variants").
 *
 *   node --import tsx bench/micro/relay-variants.ts [relay,pipe,data,onread,cork] [connections=10] [seconds=3] [rounds=4]
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type NetConnectOpts, type Socket } from 'node:net';
import { Relay } from '../../src/proxy/relay.js';

const argv = process.argv.slice(2);
const role = ['server', 'relay', 'client'].includes(argv[0] ?? '') ? argv[0] : 'driver';
const args = role === 'driver' ? argv : argv.slice(1);
const send = (m: unknown) => process.send!(m);

function message(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type.charCodeAt(0);
  b.writeUInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

function server(): void {
  const row = Buffer.alloc(24);
  row.writeUInt16BE(1, 0);
  row.write('aid\0', 2);
  const data = Buffer.alloc(11);
  data.writeUInt16BE(1, 0);
  data.writeInt32BE(5, 2);
  data.write('12345', 6);
  const answer = Buffer.concat([message('T', row), message('D', data), message('C', Buffer.from('SELECT 1\0')), message('Z', Buffer.from('I'))]);
  const srv = createServer({ noDelay: true }, (s) => {
    s.on('error', () => {});
    s.on('data', (chunk: Buffer) => {
      for (let i = 0; i < chunk.length; i += 1 + chunk.readUInt32BE(i + 1)) s.write(answer);
    });
  });
  srv.listen(0, '127.0.0.1', () => send({ port: (srv.address() as AddressInfo).port }));
}

function relay(variant: string, serverPort: number): void {
  const srv = createServer({ noDelay: true }, (client) => {
    client.on('error', () => {});
    if (variant === 'onread') {
      // Reads into one static buffer, no Readable stream; the chunk must be copied before the next read.
      const buffer = Buffer.allocUnsafe(65536);
      const opts: NetConnectOpts = {
        port: serverPort,
        host: '127.0.0.1',
        noDelay: true,
        onread: { buffer, callback: (n: number, b: Uint8Array) => (client.write(Buffer.from(b.subarray(0, n))), true) },
      };
      const backend = connect(opts);
      backend.on('error', () => {});
      client.on('data', (d: Buffer) => backend.write(d));
      return;
    }
    const backend: Socket = connect({ port: serverPort, host: '127.0.0.1', noDelay: true });
    backend.on('error', () => {});
    backend.on('connect', () => {
      if (variant === 'pipe') {
        client.pipe(backend);
        backend.pipe(client);
      } else if (variant === 'data') {
        client.on('data', (d: Buffer) => backend.write(d));
        backend.on('data', (d: Buffer) => client.write(d));
      } else if (variant === 'cork') {
        const uncorkBackend = () => backend.uncork();
        const uncorkClient = () => client.uncork();
        client.on('data', (d: Buffer) => (backend.cork(), backend.write(d), process.nextTick(uncorkBackend)));
        backend.on('data', (d: Buffer) => (client.cork(), client.write(d), process.nextTick(uncorkClient)));
      } else {
        new Relay(client, backend).start();
      }
    });
  });
  srv.listen(0, '127.0.0.1', () => send({ port: (srv.address() as AddressInfo).port }));
  let mark = process.cpuUsage();
  process.on('message', (m: string) => {
    if (m === 'mark') mark = process.cpuUsage();
    if (m === 'read') send({ cpu: process.cpuUsage(mark) });
  });
}

function client(port: number, connections: number, seconds: number): void {
  const query = message('Q', Buffer.from('SELECT abalance FROM pgbench_accounts WHERE aid = 1\0'));
  let count = 0;
  let stop = false;
  for (let i = 0; i < connections; i++) {
    const s = connect({ port, host: '127.0.0.1', noDelay: true });
    s.on('error', () => {});
    s.on('connect', () => s.write(query));
    s.on('data', (d: Buffer) => {
      if (d[d.length - 6] !== 0x5a) return; // a whole answer ends with ReadyForQuery
      count++;
      if (!stop) s.write(query);
    });
  }
  setTimeout(() => {
    stop = true;
    send({ count });
  }, seconds * 1000);
}

async function driver(): Promise<void> {
  const variants = (args[0] ?? 'relay,pipe,data,onread,cork').split(',');
  const [connections, seconds, rounds] = [Number(args[1] ?? 10), Number(args[2] ?? 3), Number(args[3] ?? 4)];
  const self = import.meta.filename;
  const child = (...a: string[]) => fork(self, a, { execArgv: ['--import', 'tsx'] });
  const srv = child('server');
  const [{ port }] = (await once(srv, 'message')) as [{ port: number }];
  const samples = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) {
      const rel = child('relay', v, String(port));
      const [{ port: relayPort }] = (await once(rel, 'message')) as [{ port: number }];
      rel.send('mark');
      const cl = child('client', String(relayPort), String(connections), String(seconds));
      const [{ count }] = (await once(cl, 'message')) as [{ count: number }];
      rel.send('read');
      const [{ cpu }] = (await once(rel, 'message')) as [{ cpu: { user: number; system: number } }];
      samples.set(v, [...(samples.get(v) ?? []), (cpu.user + cpu.system) / count]);
      cl.kill();
      rel.kill();
    }
  }
  srv.kill();
  const median = (a: number[]) => {
    const s = [...a].sort((x, y) => x - y);
    return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  for (const [v, s] of samples) console.log(`${v.padEnd(7)} ${median(s).toFixed(1)} µs CPU per round trip (rounds: ${s.map((x) => x.toFixed(1)).join(' ')})`);
}

if (role === 'server') server();
else if (role === 'relay') relay(args[0]!, Number(args[1]));
else if (role === 'client') client(Number(args[0]), Number(args[1]), Number(args[2]));
else await driver();
