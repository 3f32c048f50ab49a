/**
 * A non-secret, per-profile marker that `gprxy login` and `gprxy logout` rewrite, so that running
 * tunnels learn within a moment that the login changed (logged out, or logged in as someone else)
 * without ever polling the keychain: they watch this file (inotify through fs.watch, with a slow stat
 * poll as a fallback for file systems without notifications). Also here: the registry of running
 * tunnels, so logout can say what it did to them.
 *
 * Layout, under the CLI's state directory (0700): `<profile>.generation` = {"generation","event","at"};
 * `tunnels/<pid>.json` = {"pid","profile","databases","listeners","generation"} (generation: the last
 * one the tunnel acted on).
 */
import { randomUUID } from 'node:crypto';
import { watch, watchFile, unwatchFile, type FSWatcher } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export type LoginEvent = 'login' | 'logout';

export interface GenerationMark {
  readonly generation: string;
  readonly event: LoginEvent;
  readonly at: string;
}

export interface TunnelRecord {
  readonly pid: number;
  readonly profile: string;
  readonly listeners: readonly string[];
  /** The last generation this tunnel has acted on. */
  readonly generation: string | null;
}

function checkProfile(profile: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(profile)) throw new Error(`invalid profile name "${profile}"`);
  return profile;
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, file);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class LoginGenerations {
  constructor(readonly dir: string) {}

  markerPath(profile: string): string {
    return path.join(this.dir, `${checkProfile(profile)}.generation`);
  }

  async #ensureDir(sub?: string): Promise<string> {
    const dir = sub ? path.join(this.dir, sub) : this.dir;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  async read(profile: string): Promise<GenerationMark | undefined> {
    try {
      return JSON.parse(await readFile(this.markerPath(profile), 'utf8')) as GenerationMark;
    } catch {
      return undefined;
    }
  }

  /** Called by login and logout (under the profile's lock): every watcher of the profile wakes up. */
  async bump(profile: string, event: LoginEvent): Promise<GenerationMark> {
    await this.#ensureDir();
    const mark: GenerationMark = { generation: randomUUID(), event, at: new Date().toISOString() };
    await writeAtomic(this.markerPath(profile), JSON.stringify(mark));
    return mark;
  }

  /**
   * Calls `onChange` whenever the profile's marker changes to a generation other than the last seen.
   * Returns a function that stops watching.
   */
  async watch(profile: string, onChange: (mark: GenerationMark | undefined) => void): Promise<() => void> {
    await this.#ensureDir();
    const file = this.markerPath(profile);
    const name = path.basename(file);
    let last = (await this.read(profile))?.generation;
    let checking = false;
    let again = false;
    const check = async (): Promise<void> => {
      if (checking) {
        again = true;
        return;
      }
      checking = true;
      try {
        do {
          again = false;
          const mark = await this.read(profile);
          if (mark?.generation !== last) {
            last = mark?.generation;
            onChange(mark);
          }
        } while (again);
      } finally {
        checking = false;
      }
    };
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(this.dir, { persistent: false }, (_event, filename) => {
        if (filename === null || filename === name) void check();
      });
      watcher.on('error', () => undefined);
    } catch {
      watcher = undefined;
    }
    // A slow stat poll of this one small file, for file systems without notifications.
    const poll = () => void check();
    watchFile(file, { persistent: false, interval: 2000 }, poll);
    return () => {
      watcher?.close();
      unwatchFile(file, poll);
    };
  }

  async registerTunnel(record: TunnelRecord): Promise<() => Promise<void>> {
    const dir = await this.#ensureDir('tunnels');
    const file = path.join(dir, `${record.pid}.json`);
    await writeAtomic(file, JSON.stringify(record));
    return () => rm(file, { force: true });
  }

  async updateTunnel(record: TunnelRecord): Promise<void> {
    const dir = await this.#ensureDir('tunnels');
    await writeAtomic(path.join(dir, `${record.pid}.json`), JSON.stringify(record));
  }

  /** Running tunnels of `profile` (records of dead processes are removed). */
  async tunnels(profile: string): Promise<TunnelRecord[]> {
    const dir = path.join(this.dir, 'tunnels');
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return [];
    }
    const out: TunnelRecord[] = [];
    for (const n of names.filter((x) => /^\d+\.json$/.test(x))) {
      let rec: TunnelRecord;
      try {
        rec = JSON.parse(await readFile(path.join(dir, n), 'utf8')) as TunnelRecord;
      } catch {
        continue;
      }
      if (!alive(rec.pid)) {
        await rm(path.join(dir, n), { force: true });
        continue;
      }
      if (rec.profile === profile) out.push(rec);
    }
    return out;
  }

  /** Waits (up to `timeoutMs`) until every tunnel in `pids` has acted on `generation`; returns those that did. */
  async waitForTunnels(profile: string, generation: string, pids: readonly number[], timeoutMs: number): Promise<number[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const acked = (await this.tunnels(profile)).filter((t) => t.generation === generation).map((t) => t.pid);
      const still = pids.filter((p) => !acked.includes(p));
      if (still.length === 0 || Date.now() > deadline) return pids.filter((p) => acked.includes(p));
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
