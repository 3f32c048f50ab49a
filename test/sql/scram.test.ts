import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isScramVerifier, saslprep, scramVerifier, scramVerifierMatches } from '../../src/sql/scram.js';

describe('SCRAM-SHA-256 verifiers', () => {
  it('has PostgreSQL’s format and a fresh salt each time', () => {
    const a = scramVerifier('pw');
    const b = scramVerifier('pw');
    expect(a).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    expect(a).not.toBe(b);
    expect(isScramVerifier(a)).toBe(true);
    expect(isScramVerifier('md5abc')).toBe(false);
  });

  it('derives StoredKey and ServerKey as RFC 5802 says (independent computation)', () => {
    const salt = Buffer.from('0123456789abcdef');
    const salted = pbkdf2Sync('pencil', salt, 4096, 32, 'sha256');
    const stored = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest('base64');
    const server = createHmac('sha256', salted).update('Server Key').digest('base64');
    expect(scramVerifier('pencil', { salt, iterations: 4096 })).toBe(`SCRAM-SHA-256$4096:${salt.toString('base64')}$${stored}:${server}`);
  });

  it('tells whether a stored verifier belongs to a password', () => {
    const v = scramVerifier('right password', { iterations: 1000 });
    expect(scramVerifierMatches(v, 'right password')).toBe(true);
    expect(scramVerifierMatches(v, 'wrong password')).toBe(false);
    expect(scramVerifierMatches(null, 'x')).toBe(false);
    expect(scramVerifierMatches('md5' + 'a'.repeat(32), 'x')).toBe(false);
    expect(scramVerifierMatches(v.replace('$1000:', '$0:'), 'right password')).toBe(false);
  });

  it("applies SASLprep's mapping and NFKC to non-ASCII passwords only", () => {
    expect(saslprep('plain\tascii ')).toBe('plain\tascii ');
    expect(saslprep('a\u00a0b\u00adc\ufb01')).toBe('a bcfi');
  });
});
