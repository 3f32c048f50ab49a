/**
 * Storage for one dev provider's artifacts (sessions, interactions, grants, codes, refresh tokens).
 * oidc-provider's built-in memory adapter keeps one module-wide LRU of 1000 entries shared by every
 * Provider in the process, so parallel test providers could evict each other's tokens. This store
 * belongs to one DevProvider and survives rebuilding its Provider (key rotation rebuilds it).
 */

type Payload = Record<string, unknown> & { grantId?: string; userCode?: string; uid?: string; consumed?: number };

interface Entry {
  payload: Payload;
  expiresAt: number | undefined;
}

export class MemoryStore {
  readonly #entries = new Map<string, Entry>();
  readonly #grants = new Map<string, Set<string>>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  get(key: string): Payload | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  set(key: string, payload: Payload, expiresInSeconds: number | undefined): void {
    const expiresAt = typeof expiresInSeconds === 'number' ? this.#now() + expiresInSeconds * 1000 : undefined;
    this.#entries.set(key, { payload, expiresAt });
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  linkGrant(grantId: string, key: string): void {
    let keys = this.#grants.get(grantId);
    if (!keys) this.#grants.set(grantId, (keys = new Set()));
    keys.add(key);
  }

  revokeGrant(grantId: string): void {
    for (const key of this.#grants.get(grantId) ?? []) this.#entries.delete(key);
    this.#grants.delete(grantId);
  }

  clear(): void {
    this.#entries.clear();
    this.#grants.clear();
  }
}

/** Artifacts that belong to a grant and die with it (revocation, refresh-token reuse detection). */
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

/** Returns an adapter class in the shape oidc-provider expects (`new Adapter(modelName)`), bound to `store`. */
export function memoryAdapter(store: MemoryStore): new (name: string) => object {
  return class DevMemoryAdapter {
    readonly #name: string;

    constructor(name: string) {
      this.#name = name;
    }

    #key(id: string): string {
      return `${this.#name}:${id}`;
    }

    async upsert(id: string, payload: Payload, expiresIn?: number): Promise<void> {
      const key = this.#key(id);
      if (this.#name === 'Session' && payload.uid) store.set(`sessionUid:${payload.uid}`, { id }, expiresIn);
      if (GRANTABLE.has(this.#name) && payload.grantId) store.linkGrant(payload.grantId, key);
      if (payload.userCode) store.set(`userCode:${payload.userCode}`, { id }, expiresIn);
      store.set(key, payload, expiresIn);
    }

    async find(id: string): Promise<Payload | undefined> {
      return store.get(this.#key(id));
    }

    async findByUserCode(userCode: string): Promise<Payload | undefined> {
      const ref = store.get(`userCode:${userCode}`);
      return typeof ref?.id === 'string' ? this.find(ref.id) : undefined;
    }

    async findByUid(uid: string): Promise<Payload | undefined> {
      const ref = store.get(`sessionUid:${uid}`);
      return typeof ref?.id === 'string' ? this.find(ref.id) : undefined;
    }

    async consume(id: string): Promise<void> {
      const payload = store.get(this.#key(id));
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id: string): Promise<void> {
      store.delete(this.#key(id));
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      store.revokeGrant(grantId);
    }
  };
}
