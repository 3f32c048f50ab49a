/**
 * The tunnel's answer to a server that authenticates with SASL OAUTHBEARER: PostgreSQL 18 with `oauth` in
 * pg_hba (directly, or behind `gprxy serve` in passthrough mode), or `gprxy serve` with client_auth:
 * oauthbearer. The cached, refreshed access token is sent in the initial response, so no client ever sees a
 * device prompt: the tunnel is the token cache libpq 18 lacks. A refused token gets the RFC 7628 dummy
 * response, after which the server's ErrorResponse is relayed to the local client.
 */
import type { AuthenticationMessage } from '../protocol/backend-messages.js';
import { saslInitialResponse, saslResponse } from '../protocol/client-messages.js';
import { OAUTHBEARER, OAUTHBEARER_DUMMY_RESPONSE, oauthBearerInitialResponse, parseOAuthBearerErrorChallenge } from '../protocol/oauthbearer.js';

export type UpstreamAuthStep =
  /** Send `send` (if any) and read on. */
  | { readonly kind: 'continue'; readonly send?: Buffer }
  /** AuthenticationOk: relay from this message on. */
  | { readonly kind: 'authenticated' }
  /** The server wants something the tunnel cannot give; `message` says what. */
  | { readonly kind: 'unsupported'; readonly message: string };

/** One OAUTHBEARER exchange with an upstream server (after it sent AuthenticationSASL). */
export class UpstreamOAuthBearer {
  private state: 'idle' | 'sent' | 'refused' = 'idle';
  /** What the server's error challenge said (status, discovery URL), for the tunnel's log. */
  challenge: { status?: string; discoveryUrl?: string; scope?: string } | undefined;

  constructor(private readonly token: string) {}

  /** Whether this handler should take the authentication request `auth`. */
  static handles(auth: AuthenticationMessage): boolean {
    return auth.kind === 'sasl' || auth.kind === 'sasl-continue' || auth.kind === 'sasl-final';
  }

  next(auth: AuthenticationMessage): UpstreamAuthStep {
    switch (auth.kind) {
      case 'sasl':
        if (this.state !== 'idle') return { kind: 'unsupported', message: 'the server started a second SASL exchange' };
        if (!auth.mechanisms.includes(OAUTHBEARER)) {
          return {
            kind: 'unsupported',
            message: `the server asked for SASL ${auth.mechanisms.join(', ')}; gprxy connect answers with an access token only (a password request or ${OAUTHBEARER})`,
          };
        }
        this.state = 'sent';
        return { kind: 'continue', send: saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse(this.token)) };
      case 'sasl-continue':
        // The only challenge OAUTHBEARER defines is the error: acknowledge it; the server's FATAL follows.
        if (this.state !== 'sent') return { kind: 'unsupported', message: 'the server sent an unexpected SASL challenge' };
        this.state = 'refused';
        try {
          this.challenge = parseOAuthBearerErrorChallenge(auth.data);
        } catch {
          this.challenge = {};
        }
        return { kind: 'continue', send: saslResponse(OAUTHBEARER_DUMMY_RESPONSE) };
      case 'sasl-final':
        return { kind: 'unsupported', message: 'the server sent SASL final data, which OAUTHBEARER does not use' };
      case 'ok':
        return { kind: 'authenticated' };
      default:
        return { kind: 'unsupported', message: `the server asked for ${auth.kind} authentication` };
    }
  }
}
