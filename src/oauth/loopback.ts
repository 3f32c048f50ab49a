/**
 * The loopback redirect receiver for authorization code + PKCE (RFC 8252 section 7.3): an HTTP server on
 * 127.0.0.1 with a random port that waits for the one browser redirect carrying our `state`, answers it
 * with a short page, and hands the URL back. Requests without our state are refused and ignored.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LoopbackReceiver {
  /** http://127.0.0.1:PORT/callback */
  readonly redirectUri: string;
  /** Resolves with the full callback URL (it may carry `error=`; the token exchange reports that). */
  readonly callback: Promise<URL>;
  close(): Promise<void>;
}

const page = (title: string, text: string): string => `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title><style>
body{font:16px system-ui,sans-serif;display:flex;align-items:center;justify-content:center;min-height:90vh;background:#f3f4f6;color:#111827}
main{background:#fff;padding:28px 32px;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);max-width:420px}
</style></head><body><main><h1 style="font-size:20px;margin:0 0 8px">${title}</h1><p style="margin:0">${text}</p></main></body></html>`;

const escape = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export async function startLoopbackReceiver(opts: { expectedState: string; path?: string }): Promise<LoopbackReceiver> {
  const callbackPath = opts.path ?? '/callback';
  let resolveCallback!: (url: URL) => void;
  const callback = new Promise<URL>((resolve) => {
    resolveCallback = resolve;
  });
  let done = false;

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const send = (status: number, html: string) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', connection: 'close' });
      res.end(html);
    };
    if (req.method !== 'GET' || url.pathname !== callbackPath) return send(404, page('Not found', 'This address only receives the gprxy sign-in.'));
    if (url.searchParams.get('state') !== opts.expectedState || done) {
      return send(400, page('Unexpected sign-in response', 'This response does not belong to the sign-in gprxy is waiting for.'));
    }
    done = true;
    const error = url.searchParams.get('error');
    if (error) {
      send(200, page('Sign-in failed', `The provider answered <code>${escape(error)}</code>. Return to the terminal.`));
    } else {
      send(200, page('Signed in to gprxy', 'You can close this tab and return to the terminal.'));
    }
    resolveCallback(new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}${req.url ?? '/'}`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    redirectUri: `http://127.0.0.1:${port}${callbackPath}`,
    callback,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
