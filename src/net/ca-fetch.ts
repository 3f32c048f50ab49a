/**
 * A fetch that trusts one extra certificate authority (a test/demo CA, a corporate CA given with --ca, or a
 * provider's private CA in the proxy config). Shared by the proxy's JWKS fetches and the CLI's OIDC flows.
 * Node 20's global fetch cannot take a CA without the undici package, so this speaks HTTP(S) through
 * node:https / node:http and returns a WHATWG Response. Redirects are never followed (openid-client,
 * jose and the scripted browser all ask for redirect: 'manual' and handle Location themselves).
 * Lives in src/net (imports nothing of ours) so that oauth/ and token/ can both use it without one
 * importing the other.
 */
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';

/** Bodies larger than this are refused: token, discovery and JWKS responses are a few KiB. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

type FetchInput = Parameters<typeof fetch>[0];
type FetchInit = NonNullable<Parameters<typeof fetch>[1]>;

async function bodyBytes(body: FetchInit['body']): Promise<Buffer | undefined> {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof URLSearchParams) return Buffer.from(body.toString());
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  // Blob, FormData, ReadableStream: let the platform serialize it.
  return Buffer.from(await new Response(body as ConstructorParameters<typeof Response>[0]).arrayBuffer());
}

function requestParts(input: FetchInput, init: FetchInit | undefined): { url: URL; method: string; headers: Headers; body: FetchInit['body']; signal: AbortSignal | undefined } {
  if (input instanceof Request) {
    return {
      url: new URL(input.url),
      method: init?.method ?? input.method,
      headers: new Headers(init?.headers ?? input.headers),
      body: init?.body ?? (input.body as FetchInit['body']),
      signal: init?.signal ?? input.signal,
    };
  }
  return {
    url: new URL(String(input)),
    method: init?.method ?? 'GET',
    headers: new Headers(init?.headers),
    body: init?.body,
    signal: init?.signal ?? undefined,
  };
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/**
 * Returns a fetch that trusts `ca` (PEM) in addition to Node's public roots for https URLs, so one
 * profile CA can cover a private proxy without breaking a public issuer. Without `ca` it is the global fetch.
 */
export function fetchWithCa(ca?: string, maxResponseBytes = MAX_RESPONSE_BYTES): typeof fetch {
  if (!ca) return globalThis.fetch.bind(globalThis);
  // No keep-alive: an idle pooled socket would hold a short-lived CLI process open.
  const agent = new https.Agent({ ca: [...tls.rootCertificates, ca], keepAlive: false });

  const caFetch = async (input: FetchInput, init?: FetchInit): Promise<Response> => {
    const { url, method, headers, body, signal } = requestParts(input, init);
    signal?.throwIfAborted();
    const payload = await bodyBytes(body);
    const outgoing: Record<string, string> = {};
    headers.forEach((value, name) => { outgoing[name] = value; });
    if (payload) outgoing['content-length'] = String(payload.length);
    outgoing['accept-encoding'] = 'identity';

    return await new Promise<Response>((resolve, reject) => {
      const transport = url.protocol === 'https:' ? https : http;
      const req = transport.request(url, { method, headers: outgoing, agent: url.protocol === 'https:' ? agent : undefined, signal }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxResponseBytes) {
            const tooLarge = new Error(`response from ${url.origin} exceeds ${maxResponseBytes} bytes`);
            reject(tooLarge);
            res.destroy(tooLarge);
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', reject);
        res.on('end', () => {
          const responseHeaders = new Headers();
          for (let i = 0; i < res.rawHeaders.length; i += 2) {
            responseHeaders.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
          }
          const status = res.statusCode ?? 500;
          const responseBody = NULL_BODY_STATUS.has(status) || method === 'HEAD' ? null : Buffer.concat(chunks);
          const response = new Response(responseBody, { status, statusText: res.statusMessage ?? '', headers: responseHeaders });
          // Response.url is read-only and empty for constructed responses; some callers log it.
          Object.defineProperty(response, 'url', { value: url.href });
          resolve(response);
        });
      });
      req.on('error', (err) => reject(signal?.aborted ? (signal.reason ?? err) : new TypeError('fetch failed', { cause: err })));
      req.end(payload);
    });
  };
  return caFetch as typeof fetch;
}
