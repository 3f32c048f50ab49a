/**
 * Who is connected right now: one entry per client connection of this process, from accept to close, with
 * what an operator asks about (who, from where, to which database, doing what, how many bytes) and a way
 * to end it. The admin console (SHOW SESSIONS, KILL), the status page and `gprxy sessions` read it; any
 * feature that needs "the sessions of user X" uses it rather than keeping its own list.
 *
 * Entries are plain mutable records updated at phase changes (never per message): the relay's counters
 * are read through a getter only when someone looks, so the hot path pays nothing.
 */

/** Where a connection is in its life (PgBouncer's client states, in words). */
export type SessionState = 'login' | 'waiting' | 'active' | 'idle' | 'idle in transaction' | 'idle in transaction (aborted)' | 'admin';

/** What the session waits for now: the client (idle), the database (a statement runs), a backend (pool), a pause. */
export type SessionWait = 'client' | 'database' | 'pool' | 'paused' | 'login' | 'none';

/** Live counters a running relay exposes. */
export interface RelayProbe {
  readonly bytesFromClient: number;
  readonly bytesFromBackend: number;
  readonly activity: Exclude<SessionState, 'login' | 'waiting' | 'admin'>;
}

export interface SessionIdentity {
  /** The startup user (one of the token's username claims). */
  readonly user: string;
  /** gprxy.user_id(): the namespaced user id. */
  readonly subject?: string;
  readonly issuer?: string;
  readonly email?: string;
  readonly roles?: readonly string[];
  /** The service account (oauth mode), or none (passthrough, admin). */
  readonly account?: string;
}

/** One connection as the registry holds it; `kill` ends it (at a message boundary when relaying). */
export interface TrackedSession {
  readonly id: number;
  /** `address:port` of the client. */
  readonly client: string;
  readonly clientAddress: string;
  readonly since: number;
  database?: string;
  mode?: 'oauth' | 'passthrough' | 'admin';
  identity?: SessionIdentity;
  application?: string;
  state: SessionState;
  /** Set while the session waits for a backend (pool or pause). */
  waitingSince?: number;
  /** Live byte counts and activity once relaying (the final ones after); undefined before. */
  relay?: () => RelayProbe | undefined;
  /** The client got as far as its session (counted as a session in SHOW STATS, else as a refused login). */
  established?: boolean;
  kill: (reason: KillReason) => void;
}

export type KillReason = 'killed_by_admin';

/** A copy of an entry for readers: every value resolved at the time of the look. */
export interface SessionSnapshot {
  readonly id: number;
  readonly user: string | null;
  readonly subject: string | null;
  readonly issuer: string | null;
  readonly account: string | null;
  readonly database: string | null;
  readonly mode: string | null;
  readonly client: string;
  readonly application: string | null;
  readonly since: number;
  readonly state: SessionState;
  readonly wait: SessionWait;
  readonly waitingSince: number | null;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

function waitOf(s: TrackedSession, probe: RelayProbe | undefined, paused: ((database: string) => boolean) | undefined): SessionWait {
  if (probe) return probe.activity === 'active' ? 'database' : 'client';
  if (s.state === 'login') return 'login';
  // A backend of a PAUSEd database is handed out to nobody: whoever waits for one waits for the RESUME.
  if (s.state === 'waiting') return s.database !== undefined && paused?.(s.database) ? 'paused' : 'pool';
  if (s.state === 'admin') return 'client';
  return 'none';
}

export class SessionRegistry {
  private readonly sessions = new Map<number, TrackedSession>();

  add(session: TrackedSession): void {
    this.sessions.set(session.id, session);
  }

  /** Totals of ended connections per database (SHOW STATS); admin console sessions are not counted. */
  private readonly ended = new Map<string, { sessions: number; refused: number; bytesIn: number; bytesOut: number }>();

  /** The connection is gone: it leaves the list, its counts go to its database's totals. */
  retire(session: TrackedSession): void {
    if (!this.sessions.delete(session.id)) return;
    if (!session.database || session.mode === 'admin') return;
    let t = this.ended.get(session.database);
    if (!t) this.ended.set(session.database, (t = { sessions: 0, refused: 0, bytesIn: 0, bytesOut: 0 }));
    if (session.established) t.sessions++;
    else t.refused++;
    const probe = session.relay?.();
    t.bytesIn += probe?.bytesFromClient ?? 0;
    t.bytesOut += probe?.bytesFromBackend ?? 0;
  }

  totals(): ReadonlyMap<string, { sessions: number; refused: number; bytesIn: number; bytesOut: number }> {
    return this.ended;
  }

  get size(): number {
    return this.sessions.size;
  }

  get(id: number): TrackedSession | undefined {
    return this.sessions.get(id);
  }

  /** Every session, oldest first; `paused` (the admin console's PAUSE) tells a wait for RESUME from one for a backend. */
  list(paused?: (database: string) => boolean): SessionSnapshot[] {
    return [...this.sessions.values()].map((s) => snapshot(s, paused));
  }

  /**
   * The sessions of one person: those whose verified identity has `user` as its login name or its user id
   * (gprxy.user_id()). Passthrough sessions have no verified identity (PostgreSQL's own roles) and never match.
   */
  ofUser(user: string): TrackedSession[] {
    return [...this.sessions.values()].filter((s) => s.mode !== 'passthrough' && s.identity !== undefined && (s.identity.user === user || s.identity.subject === user));
  }
}

export function snapshot(s: TrackedSession, paused?: (database: string) => boolean): SessionSnapshot {
  const probe = s.relay?.();
  const state = probe ? probe.activity : s.state;
  return {
    id: s.id,
    user: s.identity?.user ?? null,
    subject: s.identity?.subject ?? null,
    issuer: s.identity?.issuer ?? null,
    account: s.identity?.account ?? null,
    database: s.database ?? null,
    mode: s.mode ?? null,
    client: s.client,
    application: s.application ?? null,
    since: s.since,
    state,
    wait: waitOf(s, probe, paused),
    waitingSince: s.waitingSince ?? null,
    bytesIn: probe?.bytesFromClient ?? 0,
    bytesOut: probe?.bytesFromBackend ?? 0,
  };
}
