/** The demo names the copy of PostgreSQL's binaries it made for the postgres user (kept and reused), and only that. */
import { describe, expect, it } from 'vitest';
import { binaryCopyOf, embeddedBinDir } from '../../src/demo/postgres-cluster.js';

describe('binaryCopyOf', () => {
  it('recognises the reusable copy under /var/tmp', () => {
    expect(binaryCopyOf('/var/tmp/gprxy-postgres-0123456789ab/bin')).toBe('/var/tmp/gprxy-postgres-0123456789ab');
  });
  it('says nothing for binaries used in place', async () => {
    expect(binaryCopyOf(await embeddedBinDir())).toBeUndefined();
    expect(binaryCopyOf('/usr/lib/postgresql/15/bin')).toBeUndefined();
    expect(binaryCopyOf('/var/tmp/gprxy-postgres-copy-AbC123/bin')).toBeUndefined(); // a copy still in progress
  });
});
