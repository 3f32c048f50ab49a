import { describe, expect, it } from 'vitest';
import * as server from '../../src/protocol/server-messages.js';
import { MessageEncodingError } from '../../src/protocol/errors.js';
import { SqlState } from '../../src/protocol/sqlstate.js';
import { parseBackend } from './support.js';

function one(buf: Buffer): Record<string, unknown> {
  const messages = parseBackend(buf);
  expect(messages).toHaveLength(1);
  return messages[0] as unknown as Record<string, unknown>;
}

function expectEncodingError(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(MessageEncodingError);
  expect((caught as MessageEncodingError).code).toBe('message_encoding');
  expect((caught as Error).message).toMatch(message);
}

describe('server messages parse back with pg-protocol', () => {
  it('authentication requests', () => {
    expect(one(server.authenticationOk())).toMatchObject({ name: 'authenticationOk', length: 8 });
    expect(one(server.authenticationCleartextPassword())).toMatchObject({ name: 'authenticationCleartextPassword', length: 8 });
    expect(one(server.authenticationSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256', 'OAUTHBEARER']))).toMatchObject({
      name: 'authenticationSASL',
      mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256', 'OAUTHBEARER'],
    });
    expect(one(server.authenticationSaslContinue(Buffer.from('r=abc,s=c2FsdA==,i=4096')))).toMatchObject({
      name: 'authenticationSASLContinue',
      data: 'r=abc,s=c2FsdA==,i=4096',
    });
    expect(one(server.authenticationSaslFinal(Buffer.from('v=c2ln')))).toMatchObject({ name: 'authenticationSASLFinal', data: 'v=c2ln' });
  });

  it('exact bytes of fixed messages', () => {
    expect(server.authenticationOk()).toEqual(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]));
    expect(server.authenticationCleartextPassword()).toEqual(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
    expect(server.readyForQuery('T')).toEqual(Buffer.from([0x5a, 0, 0, 0, 5, 0x54]));
    expect(server.sslResponse(true)).toEqual(Buffer.from('S'));
    expect(server.sslResponse(false)).toEqual(Buffer.from('N'));
  });

  it('parameterStatus', () => {
    expect(one(server.parameterStatus('application_name', 'psql — alice@example.com'))).toMatchObject({
      name: 'parameterStatus',
      parameterName: 'application_name',
      parameterValue: 'psql — alice@example.com',
    });
    expect(one(server.parameterStatus('x', ''))).toMatchObject({ parameterName: 'x', parameterValue: '' });
  });

  it('backendKeyData with a 4-byte key, and a 3.2 long key', () => {
    expect(one(server.backendKeyData(31337, Buffer.from([0x12, 0x34, 0x56, 0x78])))).toMatchObject({
      name: 'backendKeyData',
      processID: 31337,
      secretKey: 0x12345678,
    });
    const long = server.backendKeyData(5, Buffer.alloc(32, 7));
    expect(long.readUInt32BE(1)).toBe(4 + 4 + 32);
    expect(long.subarray(9)).toEqual(Buffer.alloc(32, 7));
  });

  it('readyForQuery', () => {
    for (const status of ['I', 'T', 'E'] as const) {
      expect(one(server.readyForQuery(status))).toMatchObject({ name: 'readyForQuery', status });
    }
  });

  it('errorResponse with every field', () => {
    const msg = one(
      server.errorResponse({
        severity: 'FATAL',
        code: SqlState.INVALID_AUTHORIZATION,
        message: 'token expired',
        detail: 'expired 3 minutes ago',
        hint: 'run gprxy login',
      }),
    );
    expect(msg).toMatchObject({
      name: 'error',
      severity: 'FATAL',
      code: '28000',
      message: 'token expired',
      detail: 'expired 3 minutes ago',
      hint: 'run gprxy login',
    });
  });

  it('errorResponse writes S, V, C, M in order and omits absent D and H', () => {
    const buf = server.errorResponse({ severity: 'ERROR', code: '08P01', message: 'bad' });
    expect(buf.subarray(5).toString('latin1')).toBe('SERROR\0VERROR\0C08P01\0Mbad\0\0');
    expect(one(buf)).toMatchObject({ name: 'error', severity: 'ERROR', code: '08P01', message: 'bad', detail: undefined, hint: undefined });
  });

  it('noticeResponse', () => {
    expect(one(server.noticeResponse({ severity: 'WARNING', code: '01000', message: 'token expires in 1 minute', hint: 'h' }))).toMatchObject({
      name: 'notice',
      severity: 'WARNING',
      code: '01000',
      message: 'token expires in 1 minute',
      hint: 'h',
    });
  });

  it('negotiateProtocolVersion (pg-protocol cannot parse it: checked byte by byte)', () => {
    expect(server.negotiateProtocolVersion(0, ['_pq_.a', '_pq_.bc'])).toEqual(
      Buffer.concat([Buffer.from([0x76, 0, 0, 0, 4 + 8 + 7 + 8, 0, 0, 0, 0, 0, 0, 0, 2]), Buffer.from('_pq_.a\0_pq_.bc\0')]),
    );
    expect(server.negotiateProtocolVersion(0, [])).toEqual(Buffer.from([0x76, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]));
  });

  it('several messages in one buffer parse as a stream', () => {
    const names = parseBackend(
      Buffer.concat([server.authenticationOk(), server.parameterStatus('a', 'b'), server.backendKeyData(1, Buffer.alloc(4)), server.readyForQuery('I')]),
    ).map((m) => m.name);
    expect(names).toEqual(['authenticationOk', 'parameterStatus', 'backendKeyData', 'readyForQuery']);
  });
});

describe('server message writers refuse what the protocol cannot carry', () => {
  it('NUL inside strings', () => {
    expectEncodingError(() => server.parameterStatus('a\0b', 'v'), /parameter name contains a NUL/);
    expectEncodingError(() => server.parameterStatus('a', 'v\0'), /value of parameter "a" contains a NUL/);
    expectEncodingError(() => server.errorResponse({ severity: 'FATAL', code: '28000', message: 'user "x\0y"' }), /message contains a NUL/);
    expectEncodingError(() => server.errorResponse({ severity: 'FATAL', code: '28000', message: 'm', detail: '\0' }), /detail/);
    expectEncodingError(() => server.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'm', hint: '\0' }), /hint/);
    expectEncodingError(() => server.authenticationSasl(['SCRAM\0']), /SASL mechanism name contains a NUL/);
    expectEncodingError(() => server.negotiateProtocolVersion(0, ['_pq_.\0']), /protocol option name/);
  });

  it('bad SQLSTATE, status, ids and keys', () => {
    expectEncodingError(() => server.errorResponse({ severity: 'ERROR', code: '2800', message: 'm' }), /SQLSTATE "2800"/);
    expectEncodingError(() => server.errorResponse({ severity: 'ERROR', code: '28p01', message: 'm' }), /SQLSTATE/);
    expectEncodingError(() => server.readyForQuery('X' as 'I'), /transaction status "X"/);
    expectEncodingError(() => server.backendKeyData(-1, Buffer.alloc(4)), /process id -1/);
    expectEncodingError(() => server.backendKeyData(2 ** 32, Buffer.alloc(4)), /process id/);
    expectEncodingError(() => server.backendKeyData(1, Buffer.alloc(3)), /secret key of 3 bytes/);
    expectEncodingError(() => server.backendKeyData(1, Buffer.alloc(257)), /secret key of 257 bytes/);
    expectEncodingError(() => server.authenticationSasl([]), /at least one mechanism/);
    expectEncodingError(() => server.authenticationSasl(['']), /empty/);
    expectEncodingError(() => server.negotiateProtocolVersion(-1, []), /out of range/);
  });
});
