/**
 * The library entry point of the engineer's half (cloud-sql-proxy's `NewClient(ctx, dialer, logger, conf)`):
 * a token keeper over the caller's token source, a first token (so "not logged in" fails before anything
 * listens), and a started Tunnel. `gprxy connect` (src/commands/connect.ts) and the demo (src/demo/demo.ts)
 * both open their tunnels here; what is theirs stays with them (exec mode, signals, the login-generation
 * watch, exit codes for connect; the native tunnel and psql hints for the demo).
 */
import { TokenKeeper, type KeeperTokenSource } from './token-keeper.js';
import { Tunnel, usernameFromClaims, type Listener } from './tunnel.js';
import type { ProxyAddress, TunnelDialer } from './upstream.js';

export interface OpenTunnelSettings {
  readonly databases: readonly string[];
  readonly proxy: ProxyAddress;
  /** First local port (0 = any); with findFreePort, probe upward when it is taken. */
  readonly port: number;
  readonly findFreePort: boolean;
  readonly unixSocketDir?: string;
  /** One-time password local clients must give (exec mode, --local-password). */
  readonly localPassword?: string;
}

export interface OpenTunnelDeps {
  /** Where tokens come from (oauth/cli-session.ts createTokenSource for a CLI profile). */
  readonly source: KeeperTokenSource;
  /** One line for the engineer (stderr for the CLI). */
  readonly warn: (message: string) => void;
  readonly dialer?: TunnelDialer;
}

export interface OpenedTunnel {
  readonly keeper: TokenKeeper;
  readonly tunnel: Tunnel;
  readonly listeners: readonly Listener[];
  /** The claims of the first token and the user name the tunnel connects as. */
  readonly claims: Record<string, unknown>;
  readonly user: string;
  /** Stops refreshing (letting a refresh in flight save its rotated token, bounded) and closes the listeners. */
  close(): Promise<void>;
}

/** How long close() lets a refresh in flight finish, so a rotated refresh token is not lost. */
const KEEPER_CLOSE_BOUND_MS = 15_000;

export async function openTunnel(settings: OpenTunnelSettings, deps: OpenTunnelDeps): Promise<OpenedTunnel> {
  const { warn } = deps;
  // Until the first token is in hand, a failure is the caller's one error (openTunnel rejects with it):
  // "retrying" or a second "run gprxy login" line would be wrong or repeated there.
  let started = false;
  let refreshFailing = false;
  const keeper = new TokenKeeper({
    source: deps.source,
    onLoginRequired: (e) => started && warn(`${e.message} (new connections are refused until then; open sessions stay up)`),
    // Said once per outage, and once when it is over: a retry every few seconds must not print a line each.
    onRefreshFailed: (e, retry) => {
      if (started && !refreshFailing) warn(`token refresh failed (${e.message}); retrying with backoff (first retry in ${Math.round(retry / 1000)} s), open sessions stay up`);
      refreshFailing = true;
    },
    onRefreshed: () => {
      if (started && refreshFailing) warn('token refresh works again');
      refreshFailing = false;
    },
  });
  let tunnel: Tunnel | undefined;
  const close = async () => {
    await Promise.race([keeper.close(), new Promise((r) => setTimeout(r, KEEPER_CLOSE_BOUND_MS).unref())]);
    await tunnel?.close();
  };
  try {
    // Fail fast when there is no usable login at all (the CLI exits 4).
    const { claims } = await keeper.getAccessToken();
    started = true;
    tunnel = new Tunnel({
      databases: settings.databases,
      proxy: settings.proxy,
      tokens: keeper,
      port: settings.port,
      findFreePort: settings.findFreePort,
      ...(settings.unixSocketDir ? { unixSocketDir: settings.unixSocketDir } : {}),
      ...(settings.localPassword ? { localPassword: settings.localPassword } : {}),
      ...(deps.dialer ? { dialer: deps.dialer } : {}),
      events: { onConnectionError: (e, db) => warn(`${db}: ${e.message}`) },
    });
    const listeners = await tunnel.start();
    return { keeper, tunnel, listeners, claims, user: usernameFromClaims(claims) ?? '', close };
  } catch (e) {
    await close();
    throw e;
  }
}
