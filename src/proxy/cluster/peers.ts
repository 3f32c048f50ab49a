/**
 * Cancel forwarding between replicas. A CancelRequest may reach any replica (a load balancer spreads new
 * connections, and libpq opens a new one for a cancel); the key's process id names the replica that issued
 * it (src/proxy/cancel-key.ts). This replica sends it to its peers over TLS (the proxy's own certificate),
 * each request authenticated with HMAC-SHA256 under `cluster.secret` and fresh (timestamp within 30 s,
 * nonce never seen before), so only a replica can ask another to cancel; the peer whose replica id the key
 * names delivers it to its own registry (or its workers), every other peer drops it. `hops` bounds the path:
 * a request that came from a peer is never forwarded again.
 *
 * Peers: `cluster.peers` (static) and every address `cluster.peers_dns` resolves to at the time of the cancel
 * (a Kubernetes headless Service lists the ready pods). Sending to itself is harmless: its own replica id is
 * never the owner of a request it forwards.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { ProxyConfig } from '../../config/proxy-config.js';
import type { KeyOwner } from '../cancel-key.js';

/** Client → worker (1), worker → primary → peer (2): a request that arrives from a peer is never sent on. */
export const MAX_CANCEL_HOPS = 2;
const FRESH_MS = 30_000;
const MAX_LINE = 2048;
const TIMEOUT_MS = 2000;

type ClusterConfig = NonNullable<ProxyConfig['cluster']>;

interface PeerRequest {
  v: 1;
  ts: number;
  nonce: string;
  hops: number;
  replica: number;
  from: number;
  pid: number;
  key: string;
  mac: string;
}

function mac(secret: string, r: Omit<PeerRequest, 'mac'>): string {
  return createHmac('sha256', secret).update(`gprxy-cancel|${r.v}|${r.ts}|${r.nonce}|${r.hops}|${r.replica}|${r.from}|${r.pid}|${r.key}`).digest('base64');
}

export class CancelPeers {
  private server: Server | undefined;
  private readonly seen = new Map<string, number>();
  address: { host: string; port: number } | undefined;

  constructor(
    private readonly config: ClusterConfig,
    private readonly tls: { readonly cert: string; readonly key: string },
    private readonly replica: number,
    private readonly log: Logger,
    /** Delivers a verified request to this replica's sessions; true when one matched. */
    private readonly deliver: (processId: number, secretKey: Buffer, via: string) => boolean | Promise<boolean>,
    private readonly now: () => number = Date.now,
  ) {}

  async listen(): Promise<void> {
    const server = createServer({ cert: this.tls.cert, key: this.tls.key, minVersion: 'TLSv1.2' }, (socket) => this.accept(socket));
    server.on('tlsClientError', () => undefined);
    server.on('error', (e) => this.log.error({ event: 'cluster_listener_error', err: e.message }, 'cancel peer listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.listen.port, this.config.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const a = server.address() as { address: string; port: number };
    this.address = { host: a.address, port: a.port };
    this.log.info({ event: 'cluster_listening', host: a.address, port: a.port, replica: this.replica }, `cancel peer channel on ${a.address}:${a.port} (replica ${this.replica})`);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /** Sends a cancel to every peer (the owner acts, the others drop it); resolves when all answered or timed out. */
  async forward(owner: KeyOwner, processId: number, secretKey: Buffer, hops: number): Promise<boolean> {
    if (hops >= MAX_CANCEL_HOPS) return false;
    const peers = await this.peerAddresses();
    const body: Omit<PeerRequest, 'mac'> = { v: 1, ts: this.now(), nonce: randomBytes(16).toString('base64'), hops: hops + 1, replica: owner.replica, from: this.replica, pid: processId, key: secretKey.toString('base64') };
    const line = `${JSON.stringify({ ...body, mac: mac(this.config.secret, body) })}\n`;
    const answers = await Promise.all(peers.map((p) => this.ask(p, line)));
    const matched = answers.some((a) => a === true);
    this.log.info(
      { event: 'cancel_forwarded', owner_replica: owner.replica, peers: peers.length, matched, failed: answers.filter((a) => a instanceof Error).length },
      matched ? `cancel passed to replica ${owner.replica}` : `no peer matched a cancel for replica ${owner.replica} (${peers.length} asked)`,
    );
    return matched;
  }

  private async peerAddresses(): Promise<{ host: string; port: number }[]> {
    const peers = [...this.config.peers];
    const dns = this.config.peersDns;
    if (dns) {
      try {
        for (const a of await lookup(dns.host, { all: true })) peers.push({ host: a.address, port: dns.port });
      } catch (e) {
        this.log.warn({ event: 'cluster_dns_failed', host: dns.host, reason: (e as Error).message }, `cannot resolve cluster.peers_dns ${dns.host}`);
      }
    }
    const unique = new Map(peers.map((p) => [`${p.host}:${p.port}`, p]));
    return [...unique.values()];
  }

  /** true/false: the peer's answer; an Error: it could not be asked. */
  private ask(peer: { host: string; port: number }, line: string): Promise<boolean | Error> {
    return new Promise((resolve) => {
      const ca = this.config.ca;
      // With cluster.ca the chain is verified; names are not (peers are dialled by pod IP): the HMAC is the authentication.
      const socket = connect({ host: peer.host, port: peer.port, ...(ca ? { ca, checkServerIdentity: () => undefined } : { rejectUnauthorized: false }) });
      let answer = '';
      const done = (v: boolean | Error) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(v);
      };
      const timer = setTimeout(() => done(new Error('timeout')), TIMEOUT_MS);
      socket.once('secureConnect', () => socket.write(line));
      socket.on('data', (d: Buffer) => {
        answer += d.toString();
        if (answer.includes('\n')) {
          try {
            done((JSON.parse(answer) as { matched?: boolean }).matched === true);
          } catch {
            done(new Error('bad answer'));
          }
        }
      });
      socket.on('error', (e) => done(e));
      socket.on('close', () => done(new Error('closed')));
    });
  }

  private accept(socket: TLSSocket): void {
    let buffered = '';
    const timer = setTimeout(() => socket.destroy(), TIMEOUT_MS);
    const reply = (matched: boolean) => {
      clearTimeout(timer);
      socket.end(`${JSON.stringify({ matched })}\n`);
    };
    socket.on('error', () => socket.destroy());
    socket.on('data', (d: Buffer) => {
      buffered += d.toString();
      if (buffered.length > MAX_LINE) return void socket.destroy();
      const end = buffered.indexOf('\n');
      if (end < 0) return;
      socket.removeAllListeners('data');
      const request = this.verify(buffered.slice(0, end), socket.remoteAddress);
      if (!request) return reply(false);
      if (request.replica !== this.replica) return reply(false);
      void Promise.resolve(this.deliver(request.pid, Buffer.from(request.key, 'base64'), `replica ${request.from}`)).then(reply, () => reply(false));
    });
  }

  /** The request if it is authentic, fresh and unseen; undefined (and a log line) otherwise. */
  private verify(text: string, from: string | undefined): PeerRequest | undefined {
    let r: PeerRequest;
    try {
      r = JSON.parse(text) as PeerRequest;
    } catch {
      return this.refuse('malformed', from);
    }
    if (r?.v !== 1 || typeof r.mac !== 'string' || !Number.isInteger(r.pid) || typeof r.key !== 'string' || typeof r.nonce !== 'string' || !Number.isInteger(r.hops) || !Number.isFinite(r.ts)) return this.refuse('malformed', from);
    const { mac: given, ...body } = r;
    const expected = Buffer.from(mac(this.config.secret, body));
    const actual = Buffer.from(given);
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return this.refuse('bad_mac', from);
    const now = this.now();
    if (Math.abs(now - r.ts) > FRESH_MS) return this.refuse('stale', from);
    if (this.seen.has(r.nonce)) return this.refuse('replayed', from);
    if (r.hops > MAX_CANCEL_HOPS) return this.refuse('hop_limit', from);
    this.seen.set(r.nonce, now);
    if (this.seen.size > 10_000) for (const [n, t] of this.seen) if (now - t > FRESH_MS) this.seen.delete(n);
    return r;
  }

  private refuse(reason: string, from: string | undefined): undefined {
    this.log.warn({ event: 'cluster_cancel_refused', reason, peer: from }, `cancel from peer ${from ?? '?'} refused (${reason})`);
    return undefined;
  }
}
