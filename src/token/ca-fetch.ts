/**
 * A minimal GET-only `fetch` for providers with a private CA (ProviderConfig.ca). Node's global fetch
 * cannot take extra CAs without undici's dispatcher (not a dependency), so discovery and JWKS requests to
 * such a provider go through node:https with the system roots plus the configured CA.
 * Redirects are not followed (the caller wants a 200) and the body is capped.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { rootCertificates } from 'node:tls';

const MAX_BODY_BYTES = 1024 * 1024;

export function createCaFetch(caPem: string, maxBodyBytes = MAX_BODY_BYTES): typeof fetch {
  const ca = [...rootCertificates, caPem];
  const caFetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const signal = init?.signal ?? undefined;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const requestFn = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = requestFn(url, { method: 'GET', headers: { accept: 'application/json' }, ca, ...(signal ? { signal } : {}) }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBodyBytes) {
            res.destroy(new Error(`response from ${url.origin} exceeds ${maxBodyBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', reject);
        res.on('end', () => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (typeof value === 'string') headers.set(name, value);
          }
          const status = res.statusCode ?? 502;
          // Null-body statuses (204, 304) cannot carry a body in a Response.
          const body = status === 204 || status === 304 ? null : Buffer.concat(chunks);
          resolve(new Response(body, { status, headers }));
        });
      });
      req.on('error', reject);
      req.end();
    });
  return caFetch as typeof fetch;
}
