/**
 * The node's Ed25519 key: created on first use in `<data dir>/keys/node.pem` (mode 0600), its
 * public half recorded in the store (meta `key:<id>`) for others to check exported chains.
 *
 * Owns: signing seals and verifying signatures by key id.
 * Must never: write the private key anywhere but its file, or print it.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, createHash, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CcosError } from './errors.js';
import type { SqliteStore } from './store/sqlite.js';

/** A signing key with a stable id (hash of its public key). */
export class NodeKey {
  private readonly publicKey: KeyObject;

  private constructor(
    readonly id: string,
    private readonly privateKey: KeyObject,
  ) {
    this.publicKey = createPublicKey(privateKey);
  }

  /** Loads the node key of a data dir, creating it on first use. */
  static load(store: SqliteStore): NodeKey {
    const dir = path.join(store.dataDir, 'keys');
    const file = path.join(dir, 'node.pem');
    let priv: KeyObject;
    if (fs.existsSync(file)) {
      try {
        priv = createPrivateKey(fs.readFileSync(file, 'utf8'));
      } catch (e) {
        throw new CcosError('key', `the node key ${file} is unreadable: ${(e as Error).message}`, { hint: 'restore it from a backup; without it new seals cannot be signed' });
      }
    } else {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      priv = generateKeyPairSync('ed25519').privateKey;
      fs.writeFileSync(file, priv.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    }
    const pub = createPublicKey(priv).export({ type: 'spki', format: 'pem' }).toString();
    const id = `node-${createHash('sha256').update(pub).digest('hex').slice(0, 16)}`;
    const known = store.getMeta(`key:${id}`);
    if (!known) store.setMeta(`key:${id}`, pub);
    if (!store.getMeta('node_key')) store.setMeta('node_key', id);
    return new NodeKey(id, priv);
  }

  /** Base64 Ed25519 signature of `message`. */
  sign(message: string): string {
    return sign(null, Buffer.from(message), this.privateKey).toString('base64');
  }

  /**
   * Verifies a signature made by this node's key. A signature by any other key id is rejected:
   * public keys stored in the database are not trusted for verification (whoever can edit the
   * database could replace them).
   */
  verifyFrom(keyId: string, message: string, signature: string): boolean {
    if (keyId !== this.id) return false;
    try {
      return verify(null, Buffer.from(message), this.publicKey, Buffer.from(signature, 'base64'));
    } catch {
      return false;
    }
  }
}
