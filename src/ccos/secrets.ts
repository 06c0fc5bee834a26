/**
 * Secrets: named values (API tokens, passwords) that capabilities declare and read at the
 * provider boundary (`CallContext.secret(name)`), encrypted at rest in the data directory.
 *
 * Owns: the `secrets` table (AES-256-GCM: a fresh 12-byte nonce per write, the secret's name as
 * associated data so rows cannot be swapped), the key file `<data dir>/keys/secrets.key`
 * (32 random bytes, mode 0600, created on first use), redaction of known values from text and
 * results, and wiring the store into a node's gate (`installSecrets`).
 * Must never: write a value in clear anywhere (the database, the chain, logs, errors, output),
 * or name a value in an error (errors name the secret).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { IMap, List, RtfsError, type RMap, type Value } from '../rtfs/index.js';
import type { Capability } from './capabilities/registry.js';
import type { CallContext, Provider, ProviderResult } from './capabilities/types.js';
import { RESULT_MARK } from './capabilities/types.js';
import type { ActionType } from './chain.js';
import { ACTION_TYPES } from './chain.js';
import { CcosError } from './errors.js';
import type { Ccos } from './index.js';
import type { SqliteStore } from './store/sqlite.js';

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
/** A secret's name: letters, digits and `._-/:` (it appears in manifests and commands). */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._\-/:]{0,127}$/;
/** What a redacted value is replaced with. */
export const REDACTED = '[secret]';

/** A secret as listed: never its value. */
export interface SecretInfo {
  name: string;
  updated: string;
}

/** The encrypted secrets of one data directory. */
export class SecretStore {
  private key: Buffer | undefined;
  readonly keyFile: string;

  constructor(private readonly store: SqliteStore) {
    this.keyFile = path.join(store.dataDir, 'keys', 'secrets.key');
    store.db.exec('CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL, tag BLOB NOT NULL, updated TEXT NOT NULL)');
  }

  /** Stores (or replaces) a secret. */
  set(name: string, value: string): SecretInfo {
    checkName(name);
    if (typeof value !== 'string' || value.length === 0) throw new CcosError('invalid-input', `the value of the secret ${name} is empty`, { hint: 'pipe the value on stdin: printf %s "$TOKEN" | ccos secrets set NAME' });
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.loadKey(), nonce);
    cipher.setAAD(Buffer.from(name, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    const updated = new Date().toISOString();
    this.store.stmt('INSERT INTO secrets (name, nonce, ciphertext, tag, updated) VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext, tag = excluded.tag, updated = excluded.updated')
      .run(name, nonce, ciphertext, tag, updated);
    return { name, updated };
  }

  /** The value of a secret; throws `secret-missing` (naming the secret) when it is not set. */
  get(name: string): string {
    const row = this.store.stmt('SELECT nonce, ciphertext, tag FROM secrets WHERE name = ?').get(name) as { nonce: Buffer; ciphertext: Buffer; tag: Buffer } | undefined;
    if (!row) throw new CcosError('secret-missing', `the secret ${name} is not set`, { hint: `set it with: ccos secrets set ${name} (the value is read from stdin)` });
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.loadKey(), row.nonce);
      decipher.setAAD(Buffer.from(name, 'utf8'));
      decipher.setAuthTag(row.tag);
      return Buffer.concat([decipher.update(row.ciphertext), decipher.final()]).toString('utf8');
    } catch (e) {
      if (e instanceof CcosError) throw e;
      // Never echo the underlying message: it could carry key or ciphertext detail.
      throw new CcosError('secret-corrupt', `the secret ${name} cannot be decrypted (wrong key file or damaged row)`, { hint: `restore ${this.keyFile} from a backup, or set the secret again` });
    }
  }

  has(name: string): boolean {
    return this.store.stmt('SELECT 1 FROM secrets WHERE name = ?').get(name) !== undefined;
  }

  /** Names and update times, never values. */
  list(): SecretInfo[] {
    return this.store.stmt('SELECT name, updated FROM secrets ORDER BY name').all() as SecretInfo[];
  }

  /** Deletes a secret; throws `secret-missing` when it is not set. */
  delete(name: string): void {
    const r = this.store.stmt('DELETE FROM secrets WHERE name = ?').run(name);
    if (r.changes === 0) throw new CcosError('secret-missing', `the secret ${name} is not set`, { hint: 'ccos secrets list shows the secrets that are set' });
  }

  /** Every stored value (for redaction). Unreadable rows are skipped. */
  values(): string[] {
    const out: string[] = [];
    for (const { name } of this.list()) {
      try {
        out.push(this.get(name));
      } catch {
        // a damaged row cannot leak what cannot be decrypted
      }
    }
    return out;
  }

  private loadKey(): Buffer {
    if (this.key) return this.key;
    const file = this.keyFile;
    let key: Buffer | undefined;
    try {
      key = fs.readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CcosError('key', `the secrets key ${file} is unreadable: ${(e as Error).message}`, { hint: 'check its permissions; without it stored secrets cannot be read' });
    }
    if (!key) {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      const fresh = randomBytes(KEY_BYTES);
      try {
        fs.writeFileSync(file, fresh, { mode: 0o600, flag: 'wx' });
        key = fresh;
      } catch (e) {
        // Another process created it first: use theirs.
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new CcosError('key', `cannot create the secrets key ${file}: ${(e as Error).message}`);
        key = fs.readFileSync(file);
      }
    }
    if (key.length !== KEY_BYTES) throw new CcosError('key', `the secrets key ${file} is damaged (${key.length} bytes, expected ${KEY_BYTES})`, { hint: 'restore it from a backup' });
    this.key = key;
    return key;
  }
}

function checkName(name: string): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new CcosError('invalid-input', `invalid secret name ${JSON.stringify(String(name)).slice(0, 80)}`, { hint: 'use letters, digits and . _ - / : (e.g. api.token)' });
  }
}

/** Replaces every occurrence of any of `values` in `text` with `[secret]` (longest first). */
export function redactValues(text: string, values: readonly string[]): string {
  let out = text;
  for (const v of [...values].filter((x) => x.length > 0).sort((a, b) => b.length - a.length)) out = out.split(v).join(REDACTED);
  return out;
}

/** Replaces every known secret value in `text` with `[secret]`. */
export function redactSecrets(text: string, store: SecretStore): string {
  return redactValues(text, store.values());
}

/** Redacts secret values in the strings of an RTFS value (vectors and maps are walked). */
export function redactValue(v: Value, values: readonly string[]): Value {
  if (values.length === 0) return v;
  if (typeof v === 'string') return redactValues(v, values);
  if (List.isList(v)) return (v as List<Value>).map((x) => redactValue(x, values));
  if (IMap.isMap(v)) return (v as RMap).map((x) => redactValue(x, values)) as RMap;
  return v;
}

/** An error like `e` with secret values removed from its message and hint. */
export function redactError(e: unknown, values: readonly string[]): unknown {
  if (values.length === 0) return e;
  const r = (s: string | undefined): string | undefined => (s === undefined ? undefined : redactValues(s, values));
  if (e instanceof RtfsError) {
    if (!values.some((v) => e.message.includes(v) || (e.hint ?? '').includes(v))) return e;
    // Error data (ex-info) could carry the value too: it is dropped rather than trusted.
    return new RtfsError(e.code, r(e.message)!, e.pos, undefined, r(e.hint));
  }
  if (e instanceof CcosError) return new CcosError(e.code, r(e.message)!, { hint: r(e.hint) });
  if (e instanceof Error) {
    const out = new Error(r(e.message));
    out.name = e.name;
    return out;
  }
  return redactValues(String(e), values);
}

/**
 * Wraps a provider so that neither its errors nor its results carry the values of the secrets
 * it read (a provider echoing its token in an error message would otherwise put it on the chain).
 */
export function redactingProvider(provider: Provider, readValues: () => string[]): Provider {
  return {
    invoke(args, ctx) {
      const read: string[] = [];
      // The context with its `secret` wrapped (not spread: its `signal` and `call` live on its prototype).
      const inner: CallContext = Object.create(ctx, {
        secret: {
          value: (name: string) => {
            const v = ctx.secret(name);
            read.push(v);
            return v;
          },
        },
      });
      const all = (): string[] => [...new Set([...read, ...readValues()])];
      const clean = (res: ProviderResult): ProviderResult => {
        const vals = all();
        if (vals.length === 0) return res;
        if (typeof res === 'object' && res !== null && (res as Record<symbol, unknown>)[RESULT_MARK] === true) {
          const m = res as { value: Value; costUsd?: number; tokens?: number };
          return { ...m, value: redactValue(m.value, vals), [RESULT_MARK]: true } as ProviderResult;
        }
        return redactValue(res as Value, vals);
      };
      let pending: ReturnType<Provider['invoke']>;
      try {
        pending = provider.invoke(args, inner);
      } catch (e) {
        throw redactError(e, all());
      }
      if (pending instanceof Promise) return pending.then(clean, (e: unknown) => Promise.reject(redactError(e, all())));
      return clean(pending);
    },
  };
}

const installed = new WeakMap<Ccos, SecretStore>();

/**
 * Opens the secret store of a node and makes its gate read from it.
 *
 * Coupling (temporary): the gate's settings object is private (`(ccos.gate as any).settings`);
 * this sets its `readSecret`. Providers of capabilities that declare secrets are wrapped by
 * redaction by shadowing `ccos.registry.resolve` on the instance. Both go away when `Ccos` takes
 * a secret store as a constructor option and the gate redacts provider errors itself.
 */
export function installSecrets(ccos: Ccos): SecretStore {
  const known = installed.get(ccos);
  if (known) return known;
  const store = new SecretStore(ccos.store);
  installed.set(ccos, store);
  const settings = (ccos.gate as unknown as { settings: { readSecret?: (name: string) => string } }).settings;
  settings.readSecret = (name) => store.get(name);
  const registry = ccos.registry as unknown as { resolve(id: string): Capability | undefined };
  const original = registry.resolve.bind(registry);
  const wrapped = new WeakMap<Provider, Provider>();
  registry.resolve = (id: string): Capability | undefined => {
    const cap = original(id);
    if (!cap || !(cap.manifest.secrets ?? []).length) return cap;
    let p = wrapped.get(cap.provider);
    if (!p) {
      p = redactingProvider(cap.provider, () => store.values());
      wrapped.set(cap.provider, p);
    }
    return { manifest: cap.manifest, provider: p };
  };
  return store;
}

/** Records a secret change on the chain (name only) when the chain knows the action type. */
export function recordSecretChange(ccos: Ccos, type: 'SecretSet' | 'SecretDeleted', name: string): void {
  if (!(ACTION_TYPES as readonly string[]).includes(type)) return;
  ccos.store.tx(() => ccos.orchestrator.record({ type: type as ActionType, data: { name } }));
}
