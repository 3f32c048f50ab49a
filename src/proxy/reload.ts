/**
 * Config reload without a restart (SIGHUP, an opt-in file watch, the admin console's RELOAD): re-read the
 * config file, validate it, and hand it to `ProxyServer.reload`, which applies it to new logins only (open
 * sessions keep the config, verifier and backends they started with). An invalid file is refused and the
 * running config stays; either outcome is one log line (`config_reloaded` / `config_reload_refused`).
 * Settings bound to a socket the process holds (listen, metrics.listen, validator, log) need a restart:
 * a reload keeps them and says so.
 */
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import type { Logger } from 'pino';
import { loadProxyConfig, type ProxyConfig } from '../config/proxy-config.js';
import { errorCode, GprxyError } from '../shared/errors.js';

/** A config the running proxy cannot switch to (e.g. a certificate that does not match its key). */
export class ReloadRefusedError extends GprxyError<'reload_refused'> {
  readonly code = 'reload_refused' as const;
}

/** What a reload changed, for the log line and the admin console. */
export interface ReloadChanges {
  readonly providersAdded: readonly string[];
  readonly providersRemoved: readonly string[];
  readonly databasesAdded: readonly string[];
  readonly databasesRemoved: readonly string[];
  readonly databasesChanged: readonly string[];
  readonly accountsChanged: readonly string[];
  readonly roleMappingChanged: boolean;
  readonly limitsChanged: boolean;
  readonly tlsChanged: boolean;
  /** Keys whose new value needs a restart; the running value stays. */
  readonly restartNeeded: readonly string[];
}

export type ReloadTrigger = 'sighup' | 'file_watch' | 'admin' | 'api';

export type ReloadOutcome =
  | { readonly ok: true; readonly changes: ReloadChanges }
  | { readonly ok: false; readonly code: string; readonly error: string };

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

function keyDiff<T>(before: Readonly<Record<string, T>>, after: Readonly<Record<string, T>>) {
  const old = Object.keys(before);
  const now = Object.keys(after);
  return {
    added: now.filter((k) => !Object.hasOwn(before, k)),
    removed: old.filter((k) => !Object.hasOwn(after, k)),
    changed: now.filter((k) => Object.hasOwn(before, k) && !same(before[k], after[k])),
  };
}

/** Compares two validated configs (no secrets in the result: names only). */
export function describeChanges(before: ProxyConfig, after: ProxyConfig): ReloadChanges {
  const oldIssuers = before.providers.map((p) => p.issuer);
  const newIssuers = after.providers.map((p) => p.issuer);
  const dbs = keyDiff(before.databases, after.databases);
  const accounts = keyDiff(before.accounts, after.accounts);
  const restartNeeded: string[] = [];
  if (!same(before.listen, after.listen)) restartNeeded.push('listen');
  if (!same(before.metrics, after.metrics)) restartNeeded.push('metrics');
  if (!same(before.validator, after.validator)) restartNeeded.push('validator');
  if (!same(before.log, after.log)) restartNeeded.push('log');
  if (!same(before.cluster, after.cluster)) restartNeeded.push('cluster');
  if (!same(before.admin, after.admin)) restartNeeded.push('admin');
  return {
    providersAdded: newIssuers.filter((i) => !oldIssuers.includes(i)),
    providersRemoved: oldIssuers.filter((i) => !newIssuers.includes(i)),
    databasesAdded: dbs.added,
    databasesRemoved: dbs.removed,
    databasesChanged: dbs.changed,
    accountsChanged: [...accounts.added, ...accounts.removed, ...accounts.changed],
    roleMappingChanged: !same(before.roleMapping, after.roleMapping),
    limitsChanged: !same(before.limits, after.limits),
    tlsChanged: !same(before.tls, after.tls) || before.allowPlaintextLoopback !== after.allowPlaintextLoopback,
    restartNeeded,
  };
}

/** One line for people (the admin console's RELOAD notice). */
export function summarizeChanges(c: ReloadChanges): string {
  const parts: string[] = [];
  const list = (what: string, names: readonly string[]) => names.length && parts.push(`${what}: ${names.join(', ')}`);
  list('providers added', c.providersAdded);
  list('providers removed', c.providersRemoved);
  list('databases added', c.databasesAdded);
  list('databases removed', c.databasesRemoved);
  list('databases changed', c.databasesChanged);
  list('accounts changed', c.accountsChanged);
  if (c.roleMappingChanged) parts.push('role mapping changed');
  if (c.limitsChanged) parts.push('limits changed');
  if (c.tlsChanged) parts.push('TLS certificate changed');
  const head = parts.length ? `configuration reloaded (${parts.join('; ')})` : 'configuration reloaded (no change)';
  return `${head}: applies to new logins, open sessions continue${c.restartNeeded.length ? `; needs a restart to change: ${c.restartNeeded.join(', ')}` : ''}`;
}

/** The part of the proxy a reloader drives (ProxyServer, or the cluster primary forwarding to workers). */
export interface Reloadable {
  reload(next: ProxyConfig): Promise<ReloadChanges>;
}

export interface ConfigReloaderOptions {
  readonly file: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly target: Reloadable;
  readonly logger: Logger;
  /** Seam for tests; default loadProxyConfig. */
  readonly load?: (file: string, env: Readonly<Record<string, string | undefined>>) => ProxyConfig;
}

export class ConfigReloader {
  private queue: Promise<unknown> = Promise.resolve();
  private watched: string[] = [];
  private debounce: NodeJS.Timeout | undefined;

  constructor(private readonly options: ConfigReloaderOptions) {}

  /**
   * Re-reads and applies the config file. Never throws: the outcome is returned and logged. Reloads run
   * one at a time, in the order asked.
   */
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const run = this.queue.then(() => this.reloadNow(trigger));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const { logger, file } = this.options;
    let next: ProxyConfig;
    let changes: ReloadChanges;
    try {
      next = (this.options.load ?? loadProxyConfig)(file, this.options.env);
      changes = await this.options.target.reload(next);
    } catch (e) {
      const code = errorCode(e) ?? 'internal_error';
      const error = e instanceof Error ? e.message : String(e);
      logger.error({ event: 'config_reload_refused', trigger, file, code, error }, `config reload refused, the running config stays: ${error}`);
      return { ok: false, code, error };
    }
    for (const warning of next.warnings ?? []) logger.warn({ event: 'config_warning', trigger }, warning);
    const restart = changes.restartNeeded;
    logger.info(
      { event: 'config_reloaded', trigger, file, ...changes },
      `config reloaded from ${file}: applies to new logins; open sessions continue unchanged${restart.length ? ` (needs a restart to change: ${restart.join(', ')})` : ''}`,
    );
    if (this.watched.length) this.watchFiles(next);
    return { ok: true, changes };
  }

  /**
   * Opt-in: reload when the config file or a file it names (certificates, CA files) changes. Polls stat
   * (fs.watchFile), which also sees Kubernetes' atomic symlink swaps of mounted ConfigMaps and Secrets.
   */
  watch(config: ProxyConfig, intervalMs = 2000): void {
    this.intervalMs = intervalMs;
    this.watchFiles(config);
  }

  private intervalMs = 2000;

  private watchFiles(config: ProxyConfig): void {
    const files = [this.options.file, ...(config.files ?? [])];
    for (const f of this.watched) if (!files.includes(f)) unwatchFile(f, this.changed);
    for (const f of files) if (!this.watched.includes(f)) watchFile(f, { interval: this.intervalMs, persistent: false }, this.changed);
    this.watched = files;
  }

  private readonly changed = (now: Stats, before: Stats): void => {
    if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return;
    // A certificate and its key are usually replaced together: one reload after the writes settle.
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload('file_watch'), Math.min(500, this.intervalMs));
  };

  close(): void {
    clearTimeout(this.debounce);
    for (const f of this.watched) unwatchFile(f, this.changed);
    this.watched = [];
  }
}
