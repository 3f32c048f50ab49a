import { describe, expect, it } from 'vitest';
import { saslInitialResponse, saslResponse } from '../../src/protocol/client-messages.js';
import { parseSaslInitialResponse } from '../../src/protocol/client-messages.js';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import {
  discoveryUrlForIssuer,
  OAUTHBEARER,
  OAUTHBEARER_DUMMY_RESPONSE,
  OAuthBearerProtocolError,
  OAuthBearerServerExchange,
  oauthBearerErrorChallenge,
  oauthBearerInitialResponse,
  parseOAuthBearerClientResponse,
  parseOAuthBearerErrorChallenge,
} from '../../src/protocol/oauthbearer.js';
import { expectProtocolError, prng } from './support.js';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl-_~+/==';
const bytes = (s: string) => Buffer.from(s, 'latin1');
const challenge = { discoveryUrl: 'https://idp.example/.well-known/openid-configuration', scope: 'openid email' };

describe('OAUTHBEARER client response parsing (RFC 7628 3.1, as PostgreSQL 18 checks it)', () => {
  it('reads a Bearer token, case-insensitive scheme, extra spaces, unknown keys ignored', () => {
    expect(parseOAuthBearerClientResponse(bytes(`n,,\x01auth=Bearer ${TOKEN}\x01\x01`))).toEqual({ kind: 'bearer', token: TOKEN });
    expect(parseOAuthBearerClientResponse(bytes(`y,,\x01host=db\x01auth=bEaReR   ${TOKEN}\x01port=5432\x01\x01`))).toEqual({ kind: 'bearer', token: TOKEN });
  });

  it('an empty auth value is a discovery request', () => {
    expect(parseOAuthBearerClientResponse(bytes('n,,\x01auth=\x01\x01'))).toEqual({ kind: 'discovery' });
  });

  it('another scheme or a token with impossible characters is not a bearer token (refused after the challenge, not a protocol error)', () => {
    expect(parseOAuthBearerClientResponse(bytes('n,,\x01auth=Basic dXNlcjpwYXNz\x01\x01')).kind).toBe('not_bearer');
    expect(parseOAuthBearerClientResponse(bytes('n,,\x01auth=Bearer \x01\x01')).kind).toBe('not_bearer');
    expect(parseOAuthBearerClientResponse(bytes('n,,\x01auth=Bearer a b\x01\x01')).kind).toBe('not_bearer');
    expect(parseOAuthBearerClientResponse(bytes('n,,\x01auth=Bearer abc=def\x01\x01')).kind).toBe('not_bearer');
  });

  const malformed: [string, Buffer][] = [
    ['an empty message', bytes('')],
    ['channel binding (p=)', bytes('p=tls-unique,,\x01auth=\x01\x01')],
    ['an unknown channel-binding flag', bytes('x,,\x01auth=\x01\x01')],
    ['no comma after the flag', bytes('n\x01auth=\x01\x01')],
    ['an authzid', bytes('n,a=alice,\x01auth=\x01\x01')],
    ['another gs2 attribute', bytes('n,b,\x01auth=\x01\x01')],
    ['no kvsep after the gs2 header', bytes('n,,auth=\x01\x01')],
    ['no auth key', bytes('n,,\x01host=x\x01\x01')],
    ['two auth keys', bytes(`n,,\x01auth=\x01auth=Bearer ${TOKEN}\x01\x01`)],
    ['a key without a value', bytes('n,,\x01auth\x01\x01')],
    ['an empty key', bytes('n,,\x01=x\x01auth=\x01\x01')],
    ['a non-alphabetic key', bytes('n,,\x01au-th=x\x01auth=\x01\x01')],
    ['a value with a control byte', bytes('n,,\x01auth=Bearer a\x02b\x01\x01')],
    ['a value with a non-ASCII byte', bytes('n,,\x01auth=Bearer \xe9\x01\x01')],
    ['an unterminated pair', bytes(`n,,\x01auth=Bearer ${TOKEN}`)],
    ['no final terminator', bytes(`n,,\x01auth=Bearer ${TOKEN}\x01`)],
    ['bytes after the final terminator', bytes(`n,,\x01auth=Bearer ${TOKEN}\x01\x01extra`)],
    ['an embedded NUL', bytes(`n,,\x01auth=Bearer ${TOKEN}\x00\x01\x01`)],
    ['the dummy response as an initial response', bytes('\x01')],
  ];
  for (const [name, data] of malformed) {
    it(`refuses ${name} with 08P01`, () => {
      const err = expectProtocolError(() => parseOAuthBearerClientResponse(data));
      expect(err).toBeInstanceOf(OAuthBearerProtocolError);
      // The detail never echoes token bytes back.
      expect(err.message).not.toContain(TOKEN);
    });
  }

  it('refuses a response over the bound without scanning it', () => {
    expectProtocolError(() => parseOAuthBearerClientResponse(Buffer.alloc(70_000, 0x61)), /more than 65535/);
    expectProtocolError(() => parseOAuthBearerClientResponse(bytes(`n,,\x01auth=Bearer ${TOKEN}\x01\x01`), 20), /more than 20/);
  });

  it('never throws anything but a protocol error on random bytes (seeded)', () => {
    const rnd = prng(7);
    const alphabet = bytes(`ny,pa=\x01\x00 Bearer auth${TOKEN}`);
    for (let i = 0; i < 5000; i++) {
      const len = Math.floor(rnd() * 60);
      const data = Buffer.alloc(len);
      for (let j = 0; j < len; j++) data[j] = alphabet[Math.floor(rnd() * alphabet.length)]!;
      try {
        parseOAuthBearerClientResponse(data);
      } catch (e) {
        expect(e).toBeInstanceOf(OAuthBearerProtocolError);
      }
    }
  });

  it('the client writer round-trips through the parser, discovery included', () => {
    expect(parseOAuthBearerClientResponse(oauthBearerInitialResponse(TOKEN))).toEqual({ kind: 'bearer', token: TOKEN });
    expect(parseOAuthBearerClientResponse(oauthBearerInitialResponse(''))).toEqual({ kind: 'discovery' });
    expect(() => oauthBearerInitialResponse('a b')).toThrow();
  });
});

describe('discovery challenge', () => {
  it('builds the discovery URL as PostgreSQL 18 does from pg_hba issuer', () => {
    expect(discoveryUrlForIssuer('https://idp.example')).toBe('https://idp.example/.well-known/openid-configuration');
    // A trailing-slash issuer (Auth0) keeps its slash, so libpq derives back exactly the same issuer string.
    expect(discoveryUrlForIssuer('https://t.auth0.com/')).toBe('https://t.auth0.com//.well-known/openid-configuration');
    expect(discoveryUrlForIssuer('https://idp.example/.well-known/oauth-authorization-server')).toBe('https://idp.example/.well-known/oauth-authorization-server');
  });

  it('is the JSON error libpq 18 parses', () => {
    const json = JSON.parse(oauthBearerErrorChallenge(challenge.discoveryUrl, challenge.scope).toString()) as Record<string, string>;
    expect(json).toEqual({ status: 'invalid_token', 'openid-configuration': challenge.discoveryUrl, scope: 'openid email' });
    expect(parseOAuthBearerErrorChallenge(oauthBearerErrorChallenge('https://x/.well-known/openid-configuration', 's'))).toEqual({
      status: 'invalid_token',
      discoveryUrl: 'https://x/.well-known/openid-configuration',
      scope: 's',
    });
    expectProtocolError(() => parseOAuthBearerErrorChallenge(bytes('[1]')));
    expectProtocolError(() => parseOAuthBearerErrorChallenge(bytes('{')));
  });
});

describe('server exchange state machine', () => {
  it('discovery: challenge, dummy response, then failed(discovery)', () => {
    const x = new OAuthBearerServerExchange(challenge);
    const s1 = x.initial(OAUTHBEARER, oauthBearerInitialResponse(''));
    expect(s1.kind).toBe('continue');
    expect(x.awaitingDummyAfterDiscovery).toBe(true);
    expect(x.response(OAUTHBEARER_DUMMY_RESPONSE)).toEqual({ kind: 'failed', discovery: true });
    // Nothing is accepted after the exchange ended (repeated exchange).
    expectProtocolError(() => x.response(oauthBearerInitialResponse(TOKEN)));
    expectProtocolError(() => x.initial(OAUTHBEARER, oauthBearerInitialResponse(TOKEN)));
  });

  it('no initial response: an empty challenge, then the initial response as a SASLResponse', () => {
    const x = new OAuthBearerServerExchange(challenge);
    expect(x.initial(OAUTHBEARER, null)).toEqual({ kind: 'continue', reply: Buffer.alloc(0) });
    expect(x.response(oauthBearerInitialResponse(TOKEN))).toEqual({ kind: 'verify', token: TOKEN });
    x.accepted();
    expectProtocolError(() => x.response(OAUTHBEARER_DUMMY_RESPONSE));
  });

  it('a refused token: the same challenge, the dummy, then failed (not discovery)', () => {
    const x = new OAuthBearerServerExchange(challenge);
    expect(x.initial(OAUTHBEARER, oauthBearerInitialResponse(TOKEN))).toEqual({ kind: 'verify', token: TOKEN });
    expect(JSON.parse(x.rejected().toString()).status).toBe('invalid_token');
    expect(x.response(OAUTHBEARER_DUMMY_RESPONSE)).toEqual({ kind: 'failed', discovery: false });
  });

  it('refuses a wrong mechanism, a bearer token where the dummy belongs, an empty SASLResponse', () => {
    expectProtocolError(() => new OAuthBearerServerExchange(challenge).initial('SCRAM-SHA-256', bytes('n,,n=,r=abc')), /OAUTHBEARER only/);
    const x = new OAuthBearerServerExchange(challenge);
    x.initial(OAUTHBEARER, oauthBearerInitialResponse(''));
    expectProtocolError(() => x.response(oauthBearerInitialResponse(TOKEN)), /kvsep dummy/);
    const y = new OAuthBearerServerExchange(challenge);
    y.initial(OAUTHBEARER, null);
    expectProtocolError(() => y.response(Buffer.alloc(0)), /empty/);
    const z = new OAuthBearerServerExchange(challenge);
    z.initial(OAUTHBEARER, oauthBearerInitialResponse(TOKEN));
    expectProtocolError(() => z.response(OAUTHBEARER_DUMMY_RESPONSE), /not waiting/);
  });
});

describe('OAUTHBEARER messages split at every byte', () => {
  it('frame and parse the same whatever the chunking', () => {
    const stream = Buffer.concat([saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse('')), saslResponse(OAUTHBEARER_DUMMY_RESPONSE)]);
    for (let cut = 1; cut < stream.length; cut++) {
      const reader = new FrameReader();
      const got: Buffer[] = [];
      for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
        reader.push(part);
        for (let m = reader.nextMessage(); m; m = reader.nextMessage()) got.push(Buffer.from(m.body));
      }
      expect(got).toHaveLength(2);
      const x = new OAuthBearerServerExchange(challenge);
      const init = parseSaslInitialResponse(got[0]!);
      expect(x.initial(init.mechanism, init.data).kind).toBe('continue');
      expect(x.response(got[1]!)).toEqual({ kind: 'failed', discovery: true });
    }
  });

  it('one byte at a time', () => {
    const stream = saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse(TOKEN));
    const reader = new FrameReader();
    let body: Buffer | undefined;
    for (const b of stream) {
      reader.push(Buffer.from([b]));
      const m = reader.nextMessage();
      if (m) body = m.body;
    }
    const init = parseSaslInitialResponse(body!);
    expect(new OAuthBearerServerExchange(challenge).initial(init.mechanism, init.data)).toEqual({ kind: 'verify', token: TOKEN });
  });
});
