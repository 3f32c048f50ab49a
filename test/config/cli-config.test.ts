import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configureProfile, DEFAULT_SCOPES, ProfileStore, parseProxyAddress, requireIssuer, resolveCliSettings } from '../../src/config/cli-config.js';

let dir: string;
let configDir: string;
let caFile: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'gprxy-cfg-'));
  configDir = path.join(dir, 'config');
  caFile = path.join(dir, 'ca.pem');
  await writeFile(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('configureProfile', () => {
  it('writes a profile with default scopes, and updates only the given fields later', async () => {
    const first = configureProfile({ issuer: 'https://tenant.auth0.com/', clientId: 'abc', audience: 'https://gprxy.io', proxy: 'proxy.example.com:6432', ca: 'ca.pem' }, { configDir, cwd: dir });
    expect(first.profile).toBe('default');
    expect(first.stored).toEqual({ issuer: 'https://tenant.auth0.com/', clientId: 'abc', audience: 'https://gprxy.io', scopes: DEFAULT_SCOPES, proxy: 'proxy.example.com:6432', ca: caFile });
    expect(first.path).toBe(path.join(configDir, 'config.json'));
    expect((await stat(first.path)).mode & 0o777).toBe(0o600);

    const second = configureProfile({ proxy: '[::1]:7432' }, { configDir });
    expect(second.stored).toMatchObject({ issuer: 'https://tenant.auth0.com/', clientId: 'abc', proxy: '[::1]:7432' });
    configureProfile({ profile: 'staging', issuer: 'https://staging.example/', clientId: 'st' }, { configDir });
    expect(new ProfileStore({ configDir }).names().sort()).toEqual(['default', 'staging']);
  });

  it('refuses what would not work, saying how to fix it', () => {
    expect(() => configureProfile({ issuer: 'https://x.example/' }, { configDir })).toThrow(/needs --issuer and --client-id/);
    expect(() => configureProfile({ issuer: 'http://x.example/', clientId: 'a' }, { configDir })).toThrow(/must be an https:\/\/ URL/);
    expect(() => configureProfile({ issuer: 'https://x.example/', clientId: 'a', proxy: 'nope' }, { configDir })).toThrow(/is not HOST:PORT/);
    expect(() => configureProfile({ issuer: 'https://x.example/', clientId: 'a', ca: path.join(dir, 'missing.pem') }, { configDir })).toThrow(/cannot read CA file/);
    expect(() => configureProfile({ profile: '../evil', issuer: 'https://x.example/', clientId: 'a' }, { configDir })).toThrow(/profile name/);
  });
});

describe('resolveCliSettings', () => {
  it('reads the profile; environment variables override it', () => {
    configureProfile({ issuer: 'https://tenant.auth0.com/', clientId: 'abc', audience: 'https://gprxy.io', proxy: 'p:1', ca: caFile }, { configDir });
    const plain = resolveCliSettings({ configDir, env: {} });
    expect(plain).toMatchObject({ profile: 'default', profileExists: true, issuer: 'https://tenant.auth0.com/', clientId: 'abc', audience: 'https://gprxy.io', scopes: DEFAULT_SCOPES, proxy: { host: 'p', port: 1 }, caPath: caFile, clientCredentials: undefined, staticToken: undefined, tokensDir: path.join(configDir, 'tokens') });
    expect(plain.caPem).toContain('BEGIN CERTIFICATE');
    expect(Object.isFrozen(plain)).toBe(true);

    const env = { GPRXY_ISSUER: 'https://other.example/', GPRXY_AUDIENCE: 'api://x', GPRXY_PROXY: 'q:2', GPRXY_CLIENT_ID: 'ci', GPRXY_CLIENT_SECRET: 's3cret', GPRXY_TOKEN: 'tok' };
    const over = resolveCliSettings({ configDir, env });
    expect(over).toMatchObject({ issuer: 'https://other.example/', audience: 'api://x', proxy: { address: 'q:2' }, clientId: 'ci', clientCredentials: { clientId: 'ci', clientSecret: 's3cret' }, staticToken: 'tok' });
  });

  it('picks the profile from --profile, then GPRXY_PROFILE', () => {
    configureProfile({ profile: 'a', issuer: 'https://a.example/', clientId: 'a' }, { configDir });
    configureProfile({ profile: 'b', issuer: 'https://b.example/', clientId: 'b' }, { configDir });
    expect(resolveCliSettings({ configDir, env: { GPRXY_PROFILE: 'b' } }).issuer).toBe('https://b.example/');
    expect(resolveCliSettings({ configDir, profile: 'a', env: { GPRXY_PROFILE: 'b' } }).issuer).toBe('https://a.example/');
  });

  it('reading an absent configuration creates nothing', async () => {
    const settings = resolveCliSettings({ configDir, env: {} });
    expect(settings.profileExists).toBe(false);
    expect(await readdir(dir)).toEqual(['ca.pem']);
    expect(() => requireIssuer(settings)).toThrow(/profile "default" is not configured: run gprxy configure --issuer/);
  });

  it('a secret without a client id is a configuration error', () => {
    expect(() => resolveCliSettings({ configDir, env: { GPRXY_CLIENT_SECRET: 'x' } })).toThrow(/GPRXY_CLIENT_SECRET is set without GPRXY_CLIENT_ID/);
  });

  it('a hand-broken profile is reported with its name', async () => {
    await import('node:fs/promises').then((fs) => fs.mkdir(configDir, { recursive: true }));
    await writeFile(path.join(configDir, 'config.json'), JSON.stringify({ profiles: { default: { issuer: 'ftp://x', clientId: 'a' } } }));
    expect(() => resolveCliSettings({ configDir, env: {} })).toThrow(/profile "default" in .* is invalid \(issuer: must be an https:\/\/ URL\): run gprxy configure/);
  });
});

describe('parseProxyAddress', () => {
  it('parses host:port and [v6]:port', () => {
    expect(parseProxyAddress('db.example.com:6432')).toEqual({ host: 'db.example.com', port: 6432, address: 'db.example.com:6432' });
    expect(parseProxyAddress('[::1]:5432')).toMatchObject({ host: '::1', port: 5432 });
    expect(() => parseProxyAddress('host:99999')).toThrow();
  });
});
