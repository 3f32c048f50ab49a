/**
 * The session half of a client of a transaction-pooling database (pool.mode: transaction; README
 * "Transaction pooling"): the greeting, then the TxRelay, which attaches a backend per transaction, and the
 * end. What is per client here, and set again on every backend the client lands on (one pipelined setup
 * statement, answers swallowed, before the client's first message of the transaction):
 * - the signed identity context, bound to that backend (pid, start time) and marked `txn` (no epoch:
 *   nothing is written per transaction; gprxy.claims() accepts it on that backend only);
 * - the client's startup parameters, application_name naming the real user, the plain context.settings;
 * - the settings the client changed with session-level SET / set_config (read back at the end of the
 *   transaction that changed them).
 * The release (tx-reset.ts) resets all of it, so nothing of this client survives on the backend.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { extendedQuery } from '../../protocol/extended-query.js';
import { query } from '../../protocol/client-messages.js';
import { authenticationOk, backendKeyData, errorResponse, parameterStatus, readyForQuery } from '../../protocol/server-messages.js';
import { SqlState } from '../../protocol/sqlstate.js';
import { setLongTimeout, type LongTimer } from '../../shared/long-timer.js';
import type { Backend } from '../backend.js';
import { BackendError } from '../backend.js';
import { disconnect, Refusal, type Connection } from '../disconnect.js';
import { buildContextPayload, signContext } from '../identity-context.js';
import { PoolTimeoutError, type BackendPool } from '../pool.js';
import { BACKEND_START, BINDS_CHECKOUT, TX_CONTEXTS } from '../pools.js';
import type { RelayProbe } from '../session-registry.js';
import type { LoginResult } from '../login.js';
import type { SessionClient, SessionDeps, StopReason } from '../session.js';
import { ciLogFields, sessionEnd } from '../session-end.js';
import { applicationNameFor, buildSetup } from '../session-setup.js';
import { knownGreeting, rememberGreeting } from './greeting-cache.js';
import { TxRelay, type TxRelayResult } from './tx-relay.js';
import { DIRTY_MARKER } from './tx-reset.js';
import { BoundaryStop } from '../boundary-stop.js';

export type TransactionLogin = Extract<LoginResult, { kind: 'transaction' }>;

const SESSION_WITHOUT_END_MS = 365 * 86_400_000;
/** Settings one client may keep (session-level SET) in transaction mode. */
const MAX_KEPT_SETTINGS = 200;

export class TxSession {
  private relay: TxRelay | undefined;
  private readonly stopper = new BoundaryStop<StopReason>(() => this.deps.now());
  /** Session-level settings the client changed (name → value), set again on every attach. */
  private readonly kept = new Map<string, string>();
  /** The setup bytes per backend while `kept` does not change (the context is signed per backend). */
  private setups = new WeakMap<Backend, Buffer>();

  constructor(
    private readonly deps: SessionDeps,
    private log: Logger,
    private readonly startedAt: number,
  ) {}

  get relaying(): boolean {
    return this.relay !== undefined;
  }

  /** Bytes and activity of the relay (SHOW SESSIONS); the final counts once it ended. */
  probe(): RelayProbe | undefined {
    return this.relay?.probe() ?? this.lastProbe;
  }

  private lastProbe: RelayProbe | undefined;

  /** What a client is greeted with: from the cache, or read on the backend the login checked out. */
  private async greeting(login: TransactionLogin): Promise<Map<string, string>> {
    const { config } = this.deps;
    const { identity, pool, database, startup } = login;
    const first = login.backend;
    const cached = knownGreeting(pool, startup.parameters);
    if (!first) {
      if (cached) return new Map(cached);
      throw new Refusal('backend_setup_failed', 'no database connection to read the session parameters from');
    }
    // The pool re-attaches its reader on release: take ours off first, as a relay would.
    const giveBack = (reusable: boolean) => {
      try {
        first.detach();
      } catch {
        reusable = false;
      }
      return pool.release(first, reusable);
    };
    if (config.context.secret && first.attributes.get(BINDS_CHECKOUT) === true && first.attributes.get(TX_CONTEXTS) !== true) {
      await giveBack(true);
      throw new Refusal(
        'session_setup_rejected',
        `database ${database.name} uses transaction pooling, but its gprxy schema predates it (gprxy.claims() would not accept per-transaction identity contexts): re-run gprxy db init`,
        SqlState.CANNOT_CONNECT_NOW,
      );
    }
    let parameters: Map<string, string>;
    try {
      const setup = await first.run(buildSetup({ identity, clientParameters: startup.parameters, settings: config.context.settings }));
      if (setup.error) {
        await giveBack(true);
        throw new Refusal('session_setup_rejected', setup.error.message, setup.error.code);
      }
      parameters = new Map(first.parameters);
    } catch (e) {
      if (e instanceof Refusal) throw e;
      await giveBack(false);
      throw new Refusal('backend_setup_failed', `backend failed during session setup: ${(e as Error).message}`, undefined, { cause: e });
    }
    await giveBack(true);
    rememberGreeting(pool, startup.parameters, parameters);
    return parameters;
  }

  async run(client: SessionClient, login: TransactionLogin, loginTimer: LongTimer): Promise<void> {
    const { config, now } = this.deps;
    const { identity, expiresAt, pool, database, startup } = login;
    const tenant = identity.tenantId ?? null;
    const limits = config.limits;
    const end = sessionEnd(limits, identity, expiresAt, now());
    const endsAt = end.at;
    const contextExpiry = Number.isFinite(endsAt) ? endsAt : now() + SESSION_WITHOUT_END_MS;

    // The greeting's ParameterStatus values: the client's startup parameters applied on a backend (the
    // one the login checked out, which goes straight back to the pool), or the pool's cache of them.
    const parameters = await this.greeting(login);
    if (client.closed) throw new Refusal(client.goneReason(), 'client closed the connection');
    parameters.set('application_name', applicationNameFor(identity, startup.parameters.application_name));

    const key = this.deps.cancels.register({
      cancel: () => {
        // Only the backend running this client's statements now; none when it is between transactions.
        const backend = this.relay?.current;
        if (backend) this.deps.pools.cancel(backend);
      },
    });
    loginTimer.clear();
    const { socket, pending } = client.detach();
    const greeting: Buffer[] = [authenticationOk()];
    for (const [name, value] of parameters) greeting.push(parameterStatus(name, value));
    greeting.push(backendKeyData(key.processId, key.secretKey), readyForQuery('I'));
    socket.write(Buffer.concat(greeting));
    this.deps.metrics?.authSucceeded();
    this.log = this.log.child({ user: identity.user, account: identity.account, database: database.name, ...ciLogFields(identity) });
    this.log.info(
      {
        event: 'auth_success',
        auth_method: client.authMethod ?? 'password',
        email: identity.email,
        sub: identity.subject,
        issuer: identity.issuer,
        roles: identity.roles,
        tenant,
        token: login.tokenId,
        pool_mode: 'transaction',
        duration_ms: now() - this.startedAt,
      },
      `${identity.user} connected to ${database.name} as ${identity.account} (transaction pooling)`,
    );

    const secret = config.context.secret;
    const relay = new TxRelay(socket, {
      acquire: () => pool.acquire({ pipelineReset: true }),
      pendingReset: (backend) => pool.takePendingReset(backend),
      now,
      setup: (backend) => {
        let bytes = this.setups.get(backend);
        if (!bytes) {
          const context = secret
            ? signContext(
                secret,
                buildContextPayload(identity, tenant, contextExpiry, { pid: backend.processId, startMicros: String(backend.attributes.get(BACKEND_START) ?? ''), txn: true }, now()),
              )
            : undefined;
          const clientParameters = { ...startup.parameters, ...Object.fromEntries(this.kept) };
          bytes = buildSetup({ identity, clientParameters, settings: config.context.settings, ...(context ? { context } : {}) });
          this.setups.set(backend, bytes);
        }
        return bytes;
      },
      setupFailed: (backend, message, reset) => {
        if (reset) {
          // The pipelined reset runs with exit_on_error: the backend has ended, and this client's session with it.
          if (message.includes(DIRTY_MARKER)) this.log.warn({ event: 'backend_dirty', pool: pool.name, pid: backend.processId, reason: 'temporary objects, SQL-level prepared statements, or prepared statements the proxy did not expect' }, 'backend left dirty by its previous client; it ended before running anything of this one');
          else this.log.warn({ event: 'backend_reset_failed', pool: pool.name, pid: backend.processId, reason: message }, 'the release reset sent ahead of this transaction failed; the backend ended before running anything of this client');
          return;
        }
        this.log.warn({ event: 'transaction_setup_failed', backend_pid: backend.processId, message }, 'could not set the identity context on a backend; its transaction runs without one and the backend is closed after it');
      },
      acquireFailed: (e) => {
        const code = e instanceof PoolTimeoutError ? e.sqlstate : e instanceof BackendError ? e.sqlstate : SqlState.CANNOT_CONNECT_NOW;
        this.log.warn({ event: 'transaction_wait_failed', reason: e instanceof Error ? e.message : String(e) }, 'no backend for a transaction');
        return errorResponse({ severity: 'ERROR', code, message: e instanceof Error ? e.message : 'no database connection available' });
      },
      release: (backend, how) => this.release(pool, backend, how),
      preparedStatements: { stats: pool.preparedStatements, capacity: database.pool.preparedStatements },
    });
    this.relay = relay;
    let lifetimeTimer: LongTimer | undefined;
    if (Number.isFinite(endsAt)) {
      const reason = end.reason;
      lifetimeTimer = setLongTimeout(() => this.stop(reason), endsAt - now());
    }
    relay.start(pending);
    if (this.stopper.requested) this.stop(this.stopper.reason ?? 'server_shutdown');
    const result = await relay.done;
    this.lastProbe = relay.probe();
    lifetimeTimer?.clear();
    this.stopper.clear();
    this.deps.cancels.unregister(key.processId);
    await this.end(socket, result, relay, pool, identity.user, expiresAt);
    this.relay = undefined;
  }

  /**
   * After a transaction: reads back the settings the client may have changed (kept for its next
   * transactions), then gives the backend to the pool, whose reset (tx-reset.ts) runs without the client waiting.
   */
  private async release(pool: BackendPool, backend: Backend, how: { touched: readonly string[]; resetAll: boolean; reusable: boolean; ms: number }): Promise<void> {
    pool.recordTransaction(how.ms);
    let changed = how.resetAll && this.kept.size > 0;
    if (how.resetAll) this.kept.clear();
    if (how.touched.length && how.reusable) {
      try {
        backend.attach();
        const names = how.touched.slice(0, MAX_KEPT_SETTINGS);
        const result = await backend.run(extendedQuery(`SELECT ${names.map((_, i) => `pg_catalog.current_setting($${i + 1}, true)`).join(', ')}`, names));
        backend.detach();
        const row = result.rows[0];
        if (row) {
          names.forEach((name, i) => {
            const value = row[i];
            if (value === null || value === undefined) this.kept.delete(name);
            else if (this.kept.size < MAX_KEPT_SETTINGS || this.kept.has(name)) this.kept.set(name, value);
          });
          changed = true;
        }
      } catch (e) {
        this.log.warn({ event: 'transaction_settings_unread', backend_pid: backend.processId, reason: (e as Error).message }, 'could not read back the settings a transaction changed');
        void pool.release(backend, false);
        this.setups = new WeakMap();
        return;
      }
    }
    if (changed) this.setups = new WeakMap();
    void pool.release(backend, how.reusable);
  }

  stop(reason: StopReason): void {
    this.stopper.request(reason, this.relay);
  }

  private async end(socket: Socket, result: TxRelayResult, relay: TxRelay, pool: BackendPool, user: string, tokenExpiresAt: number): Promise<void> {
    const reason = this.stopper.reason ?? (result.reason === 'stopped' ? 'server_shutdown' : result.reason);
    const say = result.reason === 'stopped' ? reason : result.reason;
    const conn: Connection = { socket, log: this.log, metrics: this.deps.metrics, startedAt: this.startedAt, now: this.deps.now };
    let backendState: string = 'none';
    await disconnect(conn, {
      phase: 'session',
      reason,
      say,
      detail: { ...(result.error ? { text: result.error } : {}), tokenExpiresAt },
      forced: this.stopper.forced,
      user,
      release: async () => {
        const at = relay.detachAtEnd();
        if (!at) return;
        backendState = at.state;
        const usable = result.reason !== 'protocol_error' && !this.stopper.forced;
        if (at.state === 'idle') return pool.release(at.backend, usable);
        if (at.state === 'busy' || !usable) return pool.release(at.backend, false, at.state === 'busy');
        // The client left inside a transaction, with nothing running: roll it back and reuse the backend.
        let ok = false;
        try {
          at.backend.attach();
          const r = await at.backend.run(query('ROLLBACK'), 10_000);
          at.backend.detach();
          ok = !r.error && r.status === 'I';
        } catch {
          ok = false;
        }
        return pool.release(at.backend, ok);
      },
      fields: {
        pool_mode: 'transaction',
        transactions: result.transactions,
        bytes_in: result.bytesFromClient,
        bytes_out: result.bytesFromBackend,
        ...(result.error ? { error: result.error } : {}),
      },
    });
    if (backendState !== 'none') this.log.debug({ event: 'transaction_backend_at_end', state: backendState }, 'client left while a backend was attached');
  }
}
