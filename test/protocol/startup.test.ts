import { describe, expect, it } from 'vitest';
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  needsNegotiation,
  parseStartupPacket,
  PROTOCOL_3_0,
  SSL_REQUEST_CODE,
} from '../../src/protocol/startup.js';
import { cancelRequest, sslRequest, startupMessage } from '../../src/protocol/client-messages.js';
import { serialize } from 'pg-protocol';
import { expectProtocolError, startupFrame } from './support.js';

const V3 = PROTOCOL_3_0;

describe('parseStartupPacket', () => {
  it('uses the codes PostgreSQL defines', () => {
    expect(SSL_REQUEST_CODE).toBe((1234 << 16) | 5679);
    expect(GSSENC_REQUEST_CODE).toBe((1234 << 16) | 5680);
    expect(CANCEL_REQUEST_CODE).toBe((1234 << 16) | 5678);
    expect(PROTOCOL_3_0).toBe(3 << 16);
  });

  it('parses SSLRequest and GSSENCRequest', () => {
    expect(parseStartupPacket(sslRequest())).toEqual({ kind: 'ssl' });
    expect(parseStartupPacket(serialize.requestSsl())).toEqual({ kind: 'ssl' });
    expect(parseStartupPacket(startupFrame(GSSENC_REQUEST_CODE, ''))).toEqual({ kind: 'gssenc' });
  });

  it('parses a 3.0 CancelRequest (as node-postgres sends it) and a 3.2 one with a long key', () => {
    const p = parseStartupPacket(serialize.cancel(1234, 0x01020304));
    expect(p).toEqual({ kind: 'cancel', processId: 1234, secretKey: Buffer.from([1, 2, 3, 4]) });
    const key = Buffer.alloc(256, 0xab);
    const long = parseStartupPacket(cancelRequest(99, key));
    expect(long).toEqual({ kind: 'cancel', processId: 99, secretKey: key });
  });

  it('parses a startup message written by node-postgres', () => {
    const p = parseStartupPacket(serialize.startup({ user: 'alice@example.com', database: 'mydb', application_name: 'psql' }));
    expect(p.kind).toBe('startup');
    if (p.kind !== 'startup') return;
    expect(p.majorVersion).toBe(3);
    expect(p.minorVersion).toBe(0);
    expect({ ...p.parameters }).toEqual({ user: 'alice@example.com', database: 'mydb', application_name: 'psql', client_encoding: 'UTF8' });
    expect(Object.getPrototypeOf(p.parameters)).toBeNull();
    expect(p.unsupportedOptions).toEqual([]);
    expect(needsNegotiation(p)).toBe(false);
  });

  it('keeps names like __proto__ as plain keys, empty values and UTF-8 intact', () => {
    const p = parseStartupPacket(startupMessage({ user: 'zoë', constructor: 'c', options: '' }));
    if (p.kind !== 'startup') throw new Error('expected startup');
    expect(p.parameters.user).toBe('zoë');
    expect(p.parameters.options).toBe('');
    expect(p.parameters.constructor).toBe('c');
    const proto = parseStartupPacket(startupFrame(V3, 'user\0u\0__proto__\0polluted\0\0'));
    if (proto.kind !== 'startup') throw new Error('expected startup');
    expect(Object.keys(proto.parameters)).toEqual(['user', '__proto__']);
    expect(proto.parameters['__proto__']).toBe('polluted');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('keeps a byte-order mark instead of silently dropping it', () => {
    const p = parseStartupPacket(startupMessage({ user: '\uFEFFadmin' }));
    if (p.kind !== 'startup') throw new Error('expected startup');
    expect(p.parameters.user).toBe('\uFEFFadmin');
  });

  it('collects _pq_ options of a 3.2 client and asks for negotiation', () => {
    const p = parseStartupPacket(startupMessage({ user: 'u', '_pq_.compression': 'on', database: 'd' }, 2));
    if (p.kind !== 'startup') throw new Error('expected startup');
    expect(p.minorVersion).toBe(2);
    expect(p.unsupportedOptions).toEqual(['_pq_.compression']);
    expect({ ...p.parameters }).toEqual({ user: 'u', database: 'd' });
    expect(needsNegotiation(p)).toBe(true);
    const minorOnly = parseStartupPacket(startupMessage({ user: 'u' }, 2));
    expect(needsNegotiation(minorOnly)).toBe(true);
    expect(needsNegotiation({ kind: 'ssl' })).toBe(false);
  });

  describe('rejects hostile packets with ProtocolError', () => {
    const cases: Array<[string, Buffer, RegExp]> = [
      ['major version 2', startupFrame(2 << 16, 'user\0u\0\0'), /unsupported frontend protocol 2\.0: server supports 3\.0/],
      ['major version 4', startupFrame((4 << 16) | 1, 'user\0u\0\0'), /unsupported frontend protocol 4\.1: server supports 3\.0/],
      ['an unknown request code', startupFrame((1234 << 16) | 5681, ''), /unsupported frontend protocol 1234\.5681/],
      ['garbage after the SSLRequest code', startupFrame(SSL_REQUEST_CODE, 'junk'), /SSLRequest length 12, expected 8/],
      ['garbage after the GSSENCRequest code', startupFrame(GSSENC_REQUEST_CODE, 'x'), /GSSENCRequest length 9, expected 8/],
      ['a CancelRequest without a key', startupFrame(CANCEL_REQUEST_CODE, '\0\0\0\x01'), /CancelRequest length 12, expected 16 to 268/],
      ['a CancelRequest with a short key', startupFrame(CANCEL_REQUEST_CODE, '\0\0\0\x01abc'), /CancelRequest length 15/],
      ['a CancelRequest with a 257-byte key', startupFrame(CANCEL_REQUEST_CODE, Buffer.alloc(4 + 257)), /CancelRequest length 269/],
      ['a missing NUL in a parameter value', startupFrame(V3, 'user\0alice'), /value of startup parameter "user" is missing its NUL terminator/],
      ['a missing NUL in a parameter name', startupFrame(V3, 'user\0alice\0database'), /startup parameter name is missing its NUL terminator/],
      ['a missing final terminator', startupFrame(V3, 'user\0alice\0'), /missing its final terminator/],
      ['no parameters and no terminator', startupFrame(V3, ''), /missing its final terminator/],
      ['an odd parameter count', startupFrame(V3, 'user\0alice\0database\0\0'), /missing its final terminator/],
      ['an odd parameter count (name at the end)', startupFrame(V3, 'user\0alice\0database\0'), /value of startup parameter "database" is missing/],
      ['data after the terminator', startupFrame(V3, 'user\0alice\0\0x'), /expected terminator as last byte/],
      ['a duplicate parameter', startupFrame(V3, 'user\0a\0database\0d\0user\0b\0\0'), /duplicate startup parameter "user"/],
      ['a duplicate _pq_ option', startupFrame((3 << 16) | 2, 'user\0a\0_pq_.x\0\0_pq_.x\0\0\0'), /duplicate startup parameter "_pq_.x"/],
      ['no user', startupFrame(V3, 'database\0d\0\0'), /no PostgreSQL user name/],
      ['an empty user', startupFrame(V3, 'user\0\0\0'), /no PostgreSQL user name/],
      ['only a terminator', startupFrame(V3, '\0'), /no PostgreSQL user name/],
      ['invalid UTF-8', startupFrame(V3, 'user\0\xff\xfe\0\0'), /value of startup parameter "user" is not valid UTF-8/],
      ['a frame shorter than 8 bytes', Buffer.from([0, 0, 0, 7, 0, 3, 0]), /below the minimum of 8/],
      ['a length field that disagrees with the frame', Buffer.from([0, 0, 0, 9, 0, 3, 0, 0]), /declares length 9 but has 8 bytes/],
      ['length -1', Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0]), /declares length 4294967295/],
    ];
    for (const [name, frame, message] of cases) {
      it(name, { timeout: 1000 }, () => {
        expectProtocolError(() => parseStartupPacket(frame), message);
      });
    }
  });

  it('never reads past the frame it is given', () => {
    // The frame is a view into a larger buffer whose next bytes would complete the string.
    const backing = Buffer.concat([startupFrame(V3, 'user\0alice'), Buffer.from('\0\0')]);
    const frame = backing.subarray(0, backing.length - 2);
    expectProtocolError(() => parseStartupPacket(frame), /missing its NUL terminator/);
  });
});
