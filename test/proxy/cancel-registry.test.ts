/** Cancel routing: only the exact (pid, secret) a session was given cancels it, and only while it lives. */
import { describe, expect, it } from 'vitest';
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
