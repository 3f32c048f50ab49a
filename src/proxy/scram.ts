/**
 * The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, for the proxy's service
 * accounts. No channel binding (gs2 header "n,,"), as libpq does by default.
 *
 * The salted password (PBKDF2, 4096+ iterations) is memoised per (password, salt, iterations): the server
 * keeps one salt per role, so every pooled connection after the first skips the key stretching, which is
 * what makes opening a backend cheap (PgBouncer does the same).
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { saslprep } from '../protocol/saslprep.js';
import { GprxyError } from '../shared/errors.js';

const pbkdf2Async = promisify(pbkdf2);

export class ScramError extends GprxyError<'scram_failed'> {
  readonly code = 'scram_failed' as const;
}

const saltedCache = new Map<string, Buffer>();

async function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const key = createHash('sha256').update(password).update('\0').update(salt).update(String(iterations)).digest('base64');
  let salted = saltedCache.get(key);
  if (!salted) {
    salted = await pbkdf2Async(saslprep(password), salt, iterations, 32, 'sha256');
    if (saltedCache.size > 1000) saltedCache.clear();
    saltedCache.set(key, salted);
  }
  return salted;
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function attributes(message: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq !== 1) throw new ScramError(`malformed SCRAM attribute in server message`);
    out.set(part[0]!, part.slice(2));
  }
  return out;
}

/** One SCRAM exchange: clientFirst() → serverFirst(data) → clientFinal → verifyServerFinal(data). */
export class ScramClient {
  private readonly clientNonce = randomBytes(18).toString('base64');
  private readonly clientFirstBare = `n=*,r=${this.clientNonce}`;
  private expectedServerSignature: Buffer | undefined;

  constructor(private readonly password: string) {}

  readonly mechanism = 'SCRAM-SHA-256';

  clientFirst(): Buffer {
    return Buffer.from(`n,,${this.clientFirstBare}`);
  }

  async clientFinal(serverFirstData: Buffer): Promise<Buffer> {
    const serverFirst = serverFirstData.toString('utf8');
    const attrs = attributes(serverFirst);
    const nonce = attrs.get('r');
    const saltB64 = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce || !nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      throw new ScramError('server nonce does not extend the client nonce');
    }
    if (!saltB64 || !Number.isInteger(iterations) || iterations < 1) throw new ScramError('server sent no usable salt or iteration count');
    const salted = await saltedPassword(this.password, Buffer.from(saltB64, 'base64'), iterations);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const finalWithoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${finalWithoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i]! ^ clientSignature[i]!;
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return Buffer.from(`${finalWithoutProof},p=${proof.toString('base64')}`);
  }

  verifyServerFinal(serverFinalData: Buffer): void {
    const attrs = attributes(serverFinalData.toString('utf8'));
    if (attrs.has('e')) throw new ScramError(`server rejected SCRAM: ${attrs.get('e')}`);
    const signature = Buffer.from(attrs.get('v') ?? '', 'base64');
    if (!this.expectedServerSignature || signature.length !== 32 || !timingSafeEqual(signature, this.expectedServerSignature)) {
      throw new ScramError('server signature does not match: the server does not know the password (possible impostor)');
    }
  }
}

/** PostgreSQL's md5 password response: "md5" + md5(md5(password + user) + salt). */
export function md5PasswordResponse(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user).digest('hex');
  return 'md5' + createHash('md5').update(inner).update(salt).digest('hex');
}
