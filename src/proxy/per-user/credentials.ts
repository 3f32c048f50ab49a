/**
 * The password of a per-user role: derived from provisioning.secret and the role name with HMAC-SHA256, so
 * every replica that holds the secret computes the same one and nothing per user is stored or shown. The
 * server only ever receives its SCRAM-SHA-256 verifier (`ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'`), never
 * the password, so statement logs and pg_stat_activity show no credential. The verifier's salt is derived
 * the same way (per role, secret-keyed), so two replicas produce the identical verifier and a stored one
 * can be compared as text. Rotation: a new secret gives new passwords; the next login of each user finds
 * the stored verifier stale and sets the new one (README "Per-user roles").
 */
import { createHmac } from 'node:crypto';
import { scramVerifier } from '../../sql/scram.js';

const PASSWORD_LABEL = 'gprxy per-user password v1\0';
const SALT_LABEL = 'gprxy per-user scram salt v1\0';
/** Verifiers cost a PBKDF2 (4096 rounds): cache them; bounded so a flood of new names cannot grow it. */
const CACHE_LIMIT = 10_000;

export interface RoleCredential {
  readonly password: string;
  readonly verifier: string;
}

export class RoleCredentials {
  private readonly cache = new Map<string, RoleCredential>();

  constructor(private readonly secret: string) {}

  password(role: string): string {
    return createHmac('sha256', this.secret).update(PASSWORD_LABEL + role).digest('base64url');
  }

  /** The password and its deterministic SCRAM verifier. */
  for(role: string): RoleCredential {
    const cached = this.cache.get(role);
    if (cached) return cached;
    const password = this.password(role);
    const salt = createHmac('sha256', this.secret).update(SALT_LABEL + role).digest().subarray(0, 16);
    const credential = Object.freeze({ password, verifier: scramVerifier(password, { salt }) });
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(role, credential);
    return credential;
  }
}
