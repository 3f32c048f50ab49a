/** Cancel routing: only the exact (pid, secret) a session was given cancels it, and only while it lives. */
import { describe, expect, it } from 'vitest';
import { ownerOf, RandomPool, SECRET_BYTES_3_2 } from '../../src/proxy/cancel-key.js';
import { CancelRegistry } from '../../src/proxy/cancel-registry.js';

function target(): { cancel: () => void; count: () => number } {
  let n = 0;
  return { cancel: () => void n++, count: () => n };
}

describe('CancelRegistry', () => {
  it('forwards a matching cancel to its session and to no other', () => {
    const registry = new CancelRegistry();
    const a = target();
    const b = target();
    const keyA = registry.register(a);
    const keyB = registry.register(b);
    expect(keyA.processId).not.toBe(keyB.processId);
    expect(keyA.secretKey).toHaveLength(4);
    expect(registry.cancel(keyA.processId, keyA.secretKey)).toBe(true);
    expect([a.count(), b.count()]).toEqual([1, 0]);
    expect(registry.size).toBe(2);
  });

  it('ignores a wrong secret, a secret of another length, an unknown pid, and a session that ended', () => {
    const registry = new CancelRegistry();
    const a = target();
    const key = registry.register(a);
    const wrong = Buffer.from(key.secretKey);
    wrong[0] = wrong[0]! ^ 0xff;
    expect(registry.cancel(key.processId, wrong)).toBe(false);
    expect(registry.cancel(key.processId, Buffer.concat([key.secretKey, Buffer.from([0])]))).toBe(false);
    expect(registry.cancel(key.processId + 1, key.secretKey)).toBe(false);
    registry.unregister(key.processId);
    expect(registry.cancel(key.processId, key.secretKey)).toBe(false);
    expect(a.count()).toBe(0);
    expect(registry.size).toBe(0);
  });

  it("passthrough keys: the backend's own key is matched, a pid already in use is refused", () => {
    const registry = new CancelRegistry();
    const a = target();
    const b = target();
    const secret = Buffer.from('0123456789abcdef0123456789abcdef'); // protocol 3.2 allows up to 256 bytes
    expect(registry.registerKey(4242, secret, a)).toBe(true);
    expect(registry.registerKey(4242, Buffer.from('other'), b)).toBe(false);
    secret[0] = 0; // the registry keeps its own copy
    expect(registry.cancel(4242, Buffer.from('0123456789abcdef0123456789abcdef'))).toBe(true);
    expect([a.count(), b.count()]).toEqual([1, 0]);
  });
});

describe('cancel keys name their owner', () => {
  it('carries the replica and worker in the process id, keeps a full random secret (32 bytes for protocol 3.2)', () => {
    const registry = new CancelRegistry({ owner: { replica: 201, worker: 37 } });
    const keys = Array.from({ length: 200 }, () => registry.register(target()));
    for (const k of keys) {
      expect(ownerOf(k.processId)).toEqual({ replica: 201, worker: 37 });
      expect(k.processId).toBeGreaterThan(0);
      expect(k.processId).toBeLessThan(2 ** 31);
      expect(k.secretKey).toHaveLength(4);
    }
    expect(new Set(keys.map((k) => k.secretKey.toString('hex'))).size).toBeGreaterThan(190);
    const long = registry.register(target(), SECRET_BYTES_3_2);
    expect(long.secretKey).toHaveLength(32);
    expect(registry.cancel(long.processId, long.secretKey)).toBe(true);
  });

  it('routes: cancels a match here, hands a miss to the forwarder with the owner its key names', () => {
    const forwarded: unknown[] = [];
    const here = new CancelRegistry({ owner: { replica: 3, worker: 0 }, forward: (owner, pid) => (forwarded.push({ owner, pid }), true) });
    const there = new CancelRegistry({ owner: { replica: 3, worker: 1 } });
    const a = target();
    const key = there.register(a);
    expect(here.route(key.processId, key.secretKey)).toEqual({ outcome: 'forwarded', owner: { replica: 3, worker: 1 } });
    expect(forwarded).toEqual([{ owner: { replica: 3, worker: 1 }, pid: key.processId }]);
    expect(a.count()).toBe(0); // the owner decides, not the receiver
    const mine = here.register(target());
    expect(here.route(mine.processId, mine.secretKey).outcome).toBe('cancelled');
    const lone = new CancelRegistry();
    expect(lone.route(key.processId, key.secretKey)).toEqual({ outcome: 'no_match' });
  });

  it('RandomPool: copies, never the same bytes twice', () => {
    const pool = new RandomPool(64);
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) seen.add(pool.take(8).toString('hex'));
    expect(seen.size).toBe(100);
  });
});
