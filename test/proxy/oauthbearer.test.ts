/**
 * SASL OAUTHBEARER at `gprxy serve` (client_auth: oauthbearer), step by step on a raw socket: the discovery
 * round of PostgreSQL 18's flow, a Bearer token logging in to the pool exactly like a password token, and
 * hostile SASL input. The real libpq 18 client is exercised in oauthbearer-libpq.test.ts.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAuthentication, parseErrorFields } from '../../src/protocol/backend-messages.js';
import { query, saslInitialResponse, saslResponse, startupMessage, passwordMessage } from '../../src/protocol/client-messages.js';
import { FrameReader, type TaggedMessage } from '../../src/protocol/frame-reader.js';
import { OAUTHBEARER, OAUTHBEARER_DUMMY_RESPONSE, oauthBearerInitialResponse } from '../../src/protocol/oauthbearer.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;
let alice: string;
const USER = 'alice@example.com';

/** A client speaking the protocol by hand, reading whole messages. */
class RawClient {
  private readonly reader = new FrameReader({ maxMessageLength: 1 << 20 });
  private readonly queue: TaggedMessage[] = [];
  private wake: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.reader.push(d);
      for (let m = this.reader.nextMessage(); m; m = this.reader.nextMessage()) this.queue.push({ type: m.type, body: Buffer.from(m.body) });
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => {});
  }

  static async open(port: number, database = 'mydb', user = USER): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const c = new RawClient(socket);
    socket.write(startupMessage({ user, database }));
    return c;
  }

  send(b: Buffer): void {
    this.socket.write(b);
  }

  async next(): Promise<TaggedMessage | undefined> {
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.closed) return undefined;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Skips to the next message of `type`. */
  async nextOf(type: string): Promise<TaggedMessage> {
    for (;;) {
      const m = await this.next();
      if (!m) throw new Error(`connection closed before a '${type}' message`);
      if (m.type === type.charCodeAt(0)) return m;
      if (m.type === 0x45 && type !== 'E') throw new Error(`server error: ${JSON.stringify(parseErrorFields(m.body))}`);
    }
  }

  /** The SQLSTATE of the ErrorResponse that ends the connection. */
  async finalError(): Promise<string> {
    const e = await this.nextOf('E');
    await this.closedPromise();
    return parseErrorFields(e.body).code;
  }

  private async closedPromise(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => (this.wake = r));
  }

  end(): void {
    this.socket.destroy();
  }
}

function auth(m: TaggedMessage) {
  expect(String.fromCharCode(m.type)).toBe('R');
  return parseAuthentication(m.body);
}

async function saslStart(port: number, database = 'mydb', user = USER): Promise<RawClient> {
  const c = await RawClient.open(port, database, user);
  expect(auth(await c.nextOf('R'))).toEqual({ kind: 'sasl', mechanisms: [OAUTHBEARER] });
  return c;
}

async function challengeOf(c: RawClient): Promise<Record<string, string>> {
  const a = auth(await c.nextOf('R'));
  if (a.kind !== 'sasl-continue') throw new Error(`expected SASLContinue, got ${a.kind}`);
  return JSON.parse(a.data.toString('utf8')) as Record<string, string>;
}

const OVERRIDES = {
  tls: { cert: 'inline-cert', key: 'inline-key', allow_plaintext_loopback: true },
  limits: { login_timeout: '3s', pool_wait_timeout: '5s' },
};

function databases(extra: Record<string, unknown> = {}) {
  return {
    mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', client_auth: 'oauthbearer', oauth_scope: 'openid email', pool: { size: 3 }, ...extra },
    classic: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 2 } },
  };
}

beforeAll(async () => {
  stack = await startProxyStack({ overrides: OVERRIDES });
  await stack.startProxy({ databases: databases() });
  alice = (await loginAs(stack.idp.provider, 'alice')).accessToken;
});
afterAll(async () => {
  await stack?.stop();
});

describe('OAUTHBEARER at gprxy serve', () => {
  it("answers discovery with PostgreSQL 18's JSON challenge, then the dummy response with 28000; not an auth failure", async () => {
    const before = stack.logs.events('auth_failure').length;
    const c = await saslStart(stack.port);
    c.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse('')));
    expect(await challengeOf(c)).toEqual({
      status: 'invalid_token',
      'openid-configuration': `${stack.idp.provider.issuer}/.well-known/openid-configuration`,
      scope: 'openid email',
    });
    c.send(saslResponse(OAUTHBEARER_DUMMY_RESPONSE));
    expect(await c.finalError()).toBe('28000');
    const line = await stack.logs.waitFor((l) => l.reason === 'oauth_discovery');
    expect(line).toMatchObject({ event: 'connection_refused', auth_method: 'oauthbearer', user: USER, database: 'mydb' });
    expect(stack.logs.events('auth_failure').length).toBe(before);
  });

  it('a client that leaves after the discovery challenge (libpq 18 reconnects with a token) is logged as discovery', async () => {
    const c = await saslStart(stack.port);
    c.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse('')));
    await challengeOf(c);
    const mark = stack.logs.lines.length;
    c.end();
    await stack.logs.waitFor((l) => stack.logs.lines.indexOf(l) >= mark && l.reason === 'oauth_discovery');
  });

  it('a Bearer token logs in to the pool as the mapped account, with the signed context and auth_method in the audit line', async () => {
    const c = await saslStart(stack.port);
    c.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse(alice)));
    expect(auth(await c.nextOf('R'))).toEqual({ kind: 'ok' });
    await c.nextOf('Z');
    c.send(query("select current_user as u, current_setting('app.user_id', true) as uid, length(current_setting('gprxy.context', true)) > 20 as ctx"));
    const row = await c.nextOf('D');
    const text = row.body.subarray(2).toString('latin1');
    expect(text).toContain('app_writer');
    expect(text).toContain('auth0|alice0001');
    c.end();
    const ok = await stack.logs.waitFor((l) => l.event === 'auth_success' && l.auth_method === 'oauthbearer');
    expect(ok).toMatchObject({ user: USER, account: 'app_writer', database: 'mydb' });
  });

  it('no initial response (-1): an empty challenge, then the token as a SASLResponse', async () => {
    const c = await saslStart(stack.port);
    const m = Buffer.from(`p\0\0\0\0${OAUTHBEARER}\0\xff\xff\xff\xff`, 'latin1');
    m.writeInt32BE(m.length - 1, 1);
    c.send(m);
    const a = auth(await c.nextOf('R'));
    expect(a).toEqual({ kind: 'sasl-continue', data: Buffer.alloc(0) });
    c.send(saslResponse(oauthBearerInitialResponse(alice)));
    expect(auth(await c.nextOf('R'))).toEqual({ kind: 'ok' });
    c.end();
  });

  it('a token for another user gets the challenge, then 28000 after the dummy, logged as an oauthbearer auth failure', async () => {
    const c = await saslStart(stack.port, 'mydb', 'bob@example.com');
    c.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse(alice)));
    expect((await challengeOf(c)).status).toBe('invalid_token');
    c.send(saslResponse(OAUTHBEARER_DUMMY_RESPONSE));
    expect(await c.finalError()).toBe('28000');
    const line = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'token_user_mismatch');
    expect(line.auth_method).toBe('oauthbearer');
  });

  it('a wrong audience is refused with 28000 (token_audience)', async () => {
    await stack.startProxy({ databases: databases(), providers: [{ issuer: stack.idp.provider.issuer, audience: 'https://not-gprxy.example', ca: 'inline-ca' }] });
    try {
      const c = await saslStart(stack.port);
      c.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse(alice)));
      await challengeOf(c);
      c.send(saslResponse(OAUTHBEARER_DUMMY_RESPONSE));
      expect(await c.finalError()).toBe('28000');
      await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'token_audience');
    } finally {
      await stack.startProxy({ databases: databases() });
    }
  });

  it('a non-Bearer auth value is not a token: 28P01 after the challenge', async () => {
    const c = await saslStart(stack.port);
    c.send(saslInitialResponse(OAUTHBEARER, Buffer.from('n,,\x01auth=Basic dXNlcjpwdw==\x01\x01', 'latin1')));
    await challengeOf(c);
    c.send(saslResponse(OAUTHBEARER_DUMMY_RESPONSE));
    expect(await c.finalError()).toBe('28P01');
  });

  it('the password databases of the same proxy still ask for a cleartext password', async () => {
    const c = await RawClient.open(stack.port, 'classic');
    expect(auth(await c.nextOf('R'))).toEqual({ kind: 'cleartext' });
    c.send(passwordMessage(alice));
    expect(auth(await c.nextOf('R'))).toEqual({ kind: 'ok' });
    c.end();
    const ok = await stack.logs.waitFor((l) => l.event === 'auth_success' && l.database === 'classic');
    expect(ok.auth_method).toBe('password');
  });
});

describe('hostile SASL input at an OAUTHBEARER database', () => {
  const cases: [string, (c: RawClient) => Promise<void> | void, string][] = [
    ['a wrong mechanism', (c) => c.send(saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=abcdef'))), '08P01'],
    ['a password instead of SASL', (c) => c.send(passwordMessage(alice)), '08P01'],
    ['a query instead of SASL', (c) => c.send(query('select 1')), '08P01'],
    ['a malformed gs2 header (authzid)', (c) => c.send(saslInitialResponse(OAUTHBEARER, Buffer.from(`n,a=${USER},\x01auth=\x01\x01`))), '08P01'],
    ['malformed kvpairs', (c) => c.send(saslInitialResponse(OAUTHBEARER, Buffer.from('n,,\x01auth\x01\x01'))), '08P01'],
    ['a lying SASL data length', (c) => {
      const m = saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse(''));
      m.writeInt32BE(500, 5 + OAUTHBEARER.length + 1);
      c.send(m);
    }, '08P01'],
    [
      'a bearer token where the dummy response belongs (after discovery)',
      async (c) => {
        c.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse('')));
        await challengeOf(c);
        c.send(saslResponse(oauthBearerInitialResponse(alice)));
      },
      '08P01',
    ],
    [
      'a second exchange after a refused token',
      async (c) => {
        c.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse('abc.def.ghi')));
        await challengeOf(c);
        c.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse(alice)));
      },
      '08P01',
    ],
    ['an oversize (70 KB) SASL response', (c) => c.send(saslInitialResponse(OAUTHBEARER, Buffer.alloc(70_000, 0x61))), '28P01'],
    ['a 2^31 message length', (c) => c.send(Buffer.from([0x70, 0x80, 0, 0, 0])), '28P01'],
  ];
  for (const [name, act, sqlstate] of cases) {
    it(`closes the connection on ${name} with ${sqlstate}, and keeps serving`, async () => {
      const c = await saslStart(stack.port);
      await act(c);
      expect(await c.finalError()).toBe(sqlstate);
      const ok = await saslStart(stack.port);
      ok.send(saslInitialResponse(OAUTHBEARER, oauthBearerInitialResponse(alice)));
      expect(auth(await ok.nextOf('R'))).toEqual({ kind: 'ok' });
      ok.end();
    });
  }

  it('config: client_auth oauthbearer is refused on a passthrough database, and oauth_issuer must be a provider', async () => {
    await expect(stack.startProxy({ databases: { mydb: { ...databases().mydb, mode: 'passthrough' } } })).rejects.toMatchObject({ code: 'invalid_config' });
    await expect(stack.startProxy({ databases: databases({ oauth_issuer: 'https://elsewhere.example/' }) })).rejects.toMatchObject({ code: 'invalid_config' });
    await stack.startProxy({ databases: databases() });
  });
});
