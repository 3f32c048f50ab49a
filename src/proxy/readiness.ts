/**
 * What /readyz answers (orchestrators route clients only to a ready replica): not draining, every provider
 * has signing keys (else its tokens cannot be verified), and every database's server accepts TCP
 * connections. The reachability probe is a bare connect and close (PostgreSQL logs nothing for a connection
 * that sends no bytes); probes within `cacheMs` share one result, so frequent probes cost one connect per
 * database at most every `cacheMs`.
 */
import type { Socket } from 'node:net';
import type { DatabaseConfig } from '../config/proxy-config.js';
import type { JwksStats } from '../token/jwks-cache.js';
import { defaultDialer, type Dialer } from './backend.js';

export interface ReadinessReport {
  readonly ready: boolean;
  /** One line per reason the replica is not ready (empty when ready). */
  readonly problems: readonly string[];
}

export interface ReadinessSources {
  readonly draining: () => boolean;
  readonly jwks: () => Record<string, JwksStats>;
  readonly databases: () => Readonly<Record<string, DatabaseConfig>>;
  readonly dialer?: Dialer;
  readonly now?: () => number;
  /** How long one probe's result of a database server is reused (default 2 s). */
  readonly cacheMs?: number;
  /** A connect slower than this counts as unreachable (default 2 s). */
  readonly timeoutMs?: number;
}

interface Probe {
  readonly at: number;
  readonly result: Promise<string | undefined>;
}

export class Readiness {
  private readonly probes = new Map<string, Probe>();
  private readonly now: () => number;

  constructor(private readonly sources: ReadinessSources) {
    this.now = sources.now ?? Date.now;
  }

  async check(): Promise<ReadinessReport> {
    const problems: string[] = [];
    if (this.sources.draining()) problems.push('draining: the proxy is shutting down and accepts no new connections');
    for (const [issuer, s] of Object.entries(this.sources.jwks())) {
      if (s.keys === 0) problems.push(`jwks: no signing keys loaded for ${issuer} (tokens from it cannot be verified yet; the proxy log says why)`);
    }
    const databases = Object.values(this.sources.databases());
    const results = await Promise.all(databases.map((d) => this.reachable(d.host, d.port)));
    databases.forEach((d, i) => {
      if (results[i]) problems.push(`database ${d.name}: ${d.host}:${d.port} unreachable (${results[i]})`);
    });
    return { ready: problems.length === 0, problems };
  }

  /** undefined when a TCP connection to host:port succeeds, else why not. */
  private reachable(host: string, port: number): Promise<string | undefined> {
    const key = `${host}\n${port}`;
    const cached = this.probes.get(key);
    if (cached && this.now() - cached.at < (this.sources.cacheMs ?? 2000)) return cached.result;
    const result = this.connect(host, port);
    this.probes.set(key, { at: this.now(), result });
    return result;
  }

  private connect(host: string, port: number): Promise<string | undefined> {
    const timeoutMs = this.sources.timeoutMs ?? 2000;
    return new Promise((resolve) => {
      let socket: Socket;
      try {
        socket = (this.sources.dialer ?? defaultDialer)(host, port);
      } catch (e) {
        resolve((e as Error).message);
        return;
      }
      const done = (why: string | undefined) => {
        clearTimeout(timer);
        socket.removeAllListeners('connect');
        socket.on('error', () => undefined);
        socket.destroy();
        resolve(why);
      };
      const timer = setTimeout(() => done(`no answer within ${timeoutMs} ms`), timeoutMs);
      socket.once('connect', () => done(undefined));
      socket.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    });
  }
}
