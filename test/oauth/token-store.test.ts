import { chmod, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStore, KeychainStore, MemoryTokenStore, type KeychainEntry, type StoredTokens } from '../../src/oauth/token-store.js';

const record: StoredTokens = { issuer: 'https://issuer.example/', clientId: 'cli', refreshToken: 'rt-secret', accessToken: 'at', accessTokenExpiresAt: 1 };

describe('FileStore (--insecure-storage)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gprxy-store-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a 0600 file in a 0700 directory, tightening an existing directory, and warns once per store (once per process in the CLI)', async () => {
    const tokens = path.join(dir, 'tokens');
    await mkdir(tokens, { mode: 0o755 });
    const warnings: string[] = [];
    const store = new FileStore({ dir: tokens, warn: (m) => warnings.push(m) });
    await store.save('default', record);
    expect((await stat(store.fileFor('default'))).mode & 0o777).toBe(0o600);
    expect((await stat(tokens)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(await readFile(store.fileFor('default'), 'utf8'))).toEqual(record);
    expect(await store.load('default')).toEqual(record);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('stored unencrypted');
    expect(warnings[0]).not.toContain('rt-secret');
    expect(await store.delete('default')).toBe(true);
    expect(await store.delete('default')).toBe(false);
    expect(await store.load('default')).toBeUndefined();
  });

  it('refuses a file others can read, and an unreadable record', async () => {
    const store = new FileStore({ dir, warn: () => {} });
    await store.save('p', record);
    await chmod(store.fileFor('p'), 0o640);
    await expect(store.load('p')).rejects.toMatchObject({ code: 'token_store_failed', message: expect.stringContaining('chmod 600') });
    await chmod(store.fileFor('p'), 0o600);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(store.fileFor('p'), 'not json', { mode: 0o600 });
    await expect(store.load('p')).rejects.toMatchObject({ code: 'token_store_failed', message: expect.stringContaining('gprxy logout') });
  });
});

describe('KeychainStore', () => {
  function fakeKeychain(fail?: Error): { entry: (s: string, a: string) => KeychainEntry; data: Map<string, string> } {
    const data = new Map<string, string>();
    return {
      data,
      entry: (service, account) => ({
        getPassword: async () => {
          if (fail) throw fail;
          return data.get(`${service}/${account}`) ?? null;
        },
        setPassword: async (v) => {
          if (fail) throw fail;
          data.set(`${service}/${account}`, v);
        },
        deleteCredential: async () => {
          if (fail) throw fail;
          return data.delete(`${service}/${account}`);
        },
      }),
    };
  }

  it('keeps one JSON record per profile under service gprxy, account = profile', async () => {
    const kc = fakeKeychain();
    const store = new KeychainStore({ entry: kc.entry });
    await store.assertAvailable();
    await store.save('work', record);
    expect([...kc.data.keys()]).toEqual(['gprxy/work']);
    expect(await store.load('work')).toEqual(record);
    expect(await store.delete('work')).toBe(true);
    expect(await store.load('work')).toBeUndefined();
  });

  it('an unusable keychain names --insecure-storage and the CI variables', async () => {
    const store = new KeychainStore({ entry: fakeKeychain(new Error("Couldn't access platform storage: no Secret Service")).entry });
    for (const attempt of [store.assertAvailable(), store.save('p', record), store.load('p'), store.delete('p')]) {
      await expect(attempt).rejects.toMatchObject({
        code: 'keychain_unavailable',
        message: expect.stringMatching(/no usable OS keychain \(Couldn't access platform storage: no Secret Service\): run gprxy login --insecure-storage.*GPRXY_CLIENT_ID and GPRXY_CLIENT_SECRET.*GPRXY_TOKEN/),
      });
    }
  });
});

describe('MemoryTokenStore', () => {
  it('round-trips copies', async () => {
    const store = new MemoryTokenStore();
    await store.save('p', record);
    expect(await store.load('p')).toEqual(record);
    expect(await store.load('p')).not.toBe(record);
    expect(await store.delete('p')).toBe(true);
  });
});
