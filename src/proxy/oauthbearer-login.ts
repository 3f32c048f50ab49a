/**
 * Client authentication by SASL OAUTHBEARER (databases with `client_auth: oauthbearer`, DESIGN.md 2.6): the
 * I/O around src/protocol/oauthbearer.ts's exchange. The proxy offers OAUTHBEARER, answers a discovery
 * request with PostgreSQL 18's JSON challenge (status invalid_token, openid-configuration, scope), and hands
 * a Bearer token to `verify` — the same verifier, identity and role mapping as a token sent as a password.
 * A refused token gets the same challenge, then (after the client's dummy response) the verifier's error.
 */
import type { TaggedMessage } from '../protocol/frame-reader.js';
import { MessageTooLargeError, ProtocolError } from '../protocol/errors.js';
import { parseSaslInitialResponse } from '../protocol/client-messages.js';
import { OAUTHBEARER, OAuthBearerServerExchange, type OAuthBearerStep } from '../protocol/oauthbearer.js';
import { authenticationSasl, authenticationSaslContinue } from '../protocol/server-messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import { TokenError } from '../token/errors.js';
import { FrontendCode } from '../protocol/codes.js';
import { GprxyError } from '../shared/errors.js';

const SASL_RESPONSE = FrontendCode.PASSWORD; // SASLInitialResponse and SASLResponse

export interface SaslTransport {
  send(message: Buffer): void;
  /** The client's next tagged message; rejects when the client leaves or sends something unframeable. */
  receive(): Promise<TaggedMessage>;
}

/**
 * The client asked for discovery (empty auth value) and acknowledged the challenge, or left after reading it
 * (libpq 18 then reconnects with a token). Not an authentication failure: a normal first step.
 */
export class OAuthBearerDiscoveryEnd extends GprxyError<'oauth_discovery'> {
  readonly code = 'oauth_discovery' as const;
  readonly sqlstate = SqlState.INVALID_AUTHORIZATION;

  constructor(readonly clientLeft: boolean) {
    super('this database authenticates with OAuth (SASL OAUTHBEARER): connect again with a Bearer access token (libpq 18: oauth_issuer and oauth_client_id; or use gprxy connect)');
    this.name = 'OAuthBearerDiscoveryEnd';
  }
}

export interface OAuthBearerLoginOptions<T> {
  readonly discoveryUrl: string;
  readonly scope: string;
  /** Verifies the token and resolves the identity; throws TokenError to refuse it. */
  readonly verify: (token: string) => Promise<T>;
  /** Bytes above which a SASL message is refused as not a token (28P01), like an oversized password. */
  readonly maxMessageBytes: number;
}

export async function oauthBearerLogin<T>(io: SaslTransport, options: OAuthBearerLoginOptions<T>): Promise<T> {
  const exchange = new OAuthBearerServerExchange({ discoveryUrl: options.discoveryUrl, scope: options.scope });
  io.send(authenticationSasl([OAUTHBEARER]));
  const first = await receiveSasl(io, options.maxMessageBytes);
  const initial = parseSaslInitialResponse(first.body);
  let step: OAuthBearerStep = exchange.initial(initial.mechanism, initial.data);
  let refusedWith: TokenError | undefined;
  for (;;) {
    switch (step.kind) {
      case 'continue': {
        io.send(authenticationSaslContinue(step.reply));
        let next: TaggedMessage;
        try {
          next = await receiveSasl(io, options.maxMessageBytes);
        } catch (e) {
          // libpq 18 reads the discovery challenge and reconnects with a token: leaving here is normal.
          if (exchange.awaitingDummyAfterDiscovery) throw new OAuthBearerDiscoveryEnd(true);
          // A client that leaves instead of acknowledging a refused token: the refusal is what to log.
          throw refusedWith ?? e;
        }
        step = exchange.response(next.body);
        break;
      }
      case 'verify': {
        try {
          const result = await options.verify(step.token);
          exchange.accepted();
          return result;
        } catch (e) {
          if (!(e instanceof TokenError)) throw e;
          refusedWith = e;
          step = { kind: 'continue', reply: exchange.rejected() };
        }
        break;
      }
      case 'failed': {
        if (refusedWith) throw refusedWith;
        if (step.discovery) throw new OAuthBearerDiscoveryEnd(false);
        throw new TokenError('token_malformed', `the OAUTHBEARER auth value is not a usable Bearer token: ${step.notBearer ?? 'unknown format'}`);
      }
    }
  }
}

async function receiveSasl(io: SaslTransport, maxBytes: number): Promise<TaggedMessage> {
  let message: TaggedMessage;
  try {
    message = await io.receive();
  } catch (e) {
    // An oversized SASL message is not a token (28P01), not a protocol attack; say what to do.
    if (e instanceof MessageTooLargeError && e.messageType === FrontendCode.PASSWORD) {
      throw new TokenError('token_too_large', `the OAUTHBEARER message is larger than ${maxBytes} bytes, too large to carry an access token`);
    }
    throw e;
  }
  if (message.type !== SASL_RESPONSE) {
    throw new ProtocolError(`expected a SASL response, got message type ${describe(message.type)}`);
  }
  return message;
}

function describe(type: number): string {
  return type >= 0x20 && type < 0x7f ? `"${String.fromCharCode(type)}"` : `0x${type.toString(16).padStart(2, '0')}`;
}
