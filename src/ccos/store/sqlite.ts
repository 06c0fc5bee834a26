/**
 * The embedded store: one SQLite file (better-sqlite3, WAL) in the data directory.
 *
 * Owns: the schema, opening and locking the data dir with clear errors, transactions, and the
 * rows of every table (actions, seals, blobs, runs, checkpoints, journal, capabilities, intents,
 * state). Higher modules (chain, orchestrator, registry) own what the rows mean.
 * Must never: interpret plan code, or leave a half-written record (every multi-row change is one
 * transaction).
 */
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { CcosError } from '../errors.js';

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
  seq INTEGER PRIMARY KEY, id TEXT NOT NULL, parent_id TEXT, run_id TEXT, plan_id TEXT,
  intent_id TEXT, step_path TEXT, type TEXT NOT NULL, time TEXT NOT NULL, body TEXT NOT NULL,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS actions_run ON actions(run_id, seq);
CREATE TABLE IF NOT EXISTS seals (seq INTEGER PRIMARY KEY, head_hash TEXT NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, content TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, intent_id TEXT, file TEXT NOT NULL, source TEXT NOT NULL,
  inputs TEXT NOT NULL, options TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL,
  checkpoint TEXT, result TEXT, error TEXT, waiting TEXT, owner TEXT);
CREATE TABLE IF NOT EXISTS checkpoints (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, created TEXT NOT NULL, reason TEXT NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS checkpoints_run ON checkpoints(run_id, created);
CREATE TABLE IF NOT EXISTS journal (
  run_id TEXT NOT NULL, request_id TEXT NOT NULL, kind TEXT NOT NULL, capability TEXT, args_hash TEXT,
  status TEXT NOT NULL, answer TEXT, PRIMARY KEY (run_id, request_id));
CREATE TABLE IF NOT EXISTS capabilities (id TEXT PRIMARY KEY, manifest TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
  id TEXT PRIMARY KEY, goal TEXT NOT NULL, constraints TEXT NOT NULL, success TEXT NOT NULL,
  status TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intent_edges (from_id TEXT NOT NULL, to_id TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (from_id, to_id, kind));
CREATE TABLE IF NOT EXISTS idempotency (
  key TEXT PRIMARY KEY, capability TEXT NOT NULL, args_hash TEXT NOT NULL, answer TEXT NOT NULL,
  run_id TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, stream TEXT NOT NULL, value TEXT NOT NULL, time TEXT NOT NULL);
`;

/** How hard the store works to survive a power loss. */
export type Durability = 'normal' | 'strict';

export interface StoreOptions {
  /** `strict`: fsync on every commit (a call's result is on disk before the plan uses it). */
  durability?: Durability;
  /** Open without creating the data dir (read-only commands on a missing dir fail clearly). */
  mustExist?: boolean;
}

/** The data directory: `--data-dir`, else `CCOS_HOME`, else `.ccos` under the current directory. */
export function resolveDataDir(explicit?: string): string {
  return path.resolve(explicit ?? process.env.CCOS_HOME ?? '.ccos');
}

/** Opens (creating if needed) the store of a data directory. */
export class SqliteStore {
  readonly db: Database.Database;
  readonly dbPath: string;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    readonly dataDir: string,
    opts: StoreOptions = {},
  ) {
    this.dbPath = path.join(dataDir, 'ccos.db');
    if (opts.mustExist && !fs.existsSync(this.dbPath)) {
      throw new CcosError('data-dir', `no CCOS data in ${dataDir}`, { hint: 'run a plan first (ccos run FILE), or pass --data-dir / set CCOS_HOME to the right directory' });
    }
    try {
      fs.mkdirSync(dataDir, { recursive: true });
    } catch (e) {
      throw new CcosError('data-dir', `cannot create the data directory ${dataDir}: ${(e as Error).message}`, { hint: 'choose a writable directory with --data-dir or CCOS_HOME' });
    }
    try {
      this.db = new Database(this.dbPath, { timeout: 5000 });
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${opts.durability === 'strict' ? 'FULL' : 'NORMAL'}`);
      // Fewer, larger WAL checkpoints: commits stay cheap; the WAL is folded back in bulk.
      this.db.pragma('wal_autocheckpoint = 10000');
      this.db.pragma('foreign_keys = ON');
      this.db.exec(SCHEMA);
      const v = this.getMeta('schema_version');
      if (v === undefined) this.setMeta('schema_version', String(SCHEMA_VERSION));
      else if (Number(v) > SCHEMA_VERSION) {
        throw new CcosError('data-dir', `the data in ${dataDir} was written by a newer CCOS (schema ${v}, this one reads ${SCHEMA_VERSION})`, { hint: 'upgrade ccos' });
      }
    } catch (e) {
      if (e instanceof CcosError) throw e;
      const msg = (e as Error).message;
      const code = (e as { code?: string }).code ?? '';
      if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT' || /not a database|malformed/i.test(msg)) {
        throw new CcosError('data-dir', `the database ${this.dbPath} is corrupted (${msg})`, { hint: 'restore it from a backup; `ccos chain verify` on a copy shows what is intact' });
      }
      if (code === 'SQLITE_BUSY' || /locked/i.test(msg)) {
        throw new CcosError('data-dir', `the database ${this.dbPath} is locked by another process`, { hint: 'wait for the other ccos process to finish, then try again' });
      }
      throw new CcosError('data-dir', `cannot open ${this.dbPath}: ${msg}`);
    }
  }

  /** A prepared statement, prepared once per store (preparing costs more than running). */
  stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction (a single writer; nothing is half-written). Nested
   * calls join the enclosing transaction.
   */
  tx<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    try {
      this.stmt('BEGIN IMMEDIATE').run();
    } catch (e) {
      throw translateSqliteError(e, this.dbPath);
    }
    try {
      const out = fn();
      this.stmt('COMMIT').run();
      return out;
    } catch (e) {
      if (this.db.inTransaction) this.stmt('ROLLBACK').run();
      throw translateSqliteError(e, this.dbPath);
    }
  }

  getMeta(key: string): string | undefined {
    const row = this.stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.stmt('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** Turns SQLite failures into errors that say what happened and what to do. */
export function translateSqliteError(e: unknown, dbPath: string): unknown {
  if (e instanceof CcosError) return e;
  const code = (e as { code?: string }).code ?? '';
  const msg = (e as Error).message ?? String(e);
  if (code === 'SQLITE_FULL' || /disk is full|database or disk is full/i.test(msg)) {
    return new CcosError('disk-full', `the disk holding ${dbPath} is full; nothing of this change was written`, { hint: 'free space, then `ccos resume` the run: it continues from its last durable record' });
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new CcosError('data-dir', `the database ${dbPath} is busy (another ccos process is writing)`, { hint: 'try again when the other process has finished' });
  }
  if (code === 'SQLITE_READONLY') return new CcosError('data-dir', `the database ${dbPath} is read-only`, { hint: 'check the permissions of the data directory' });
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') return new CcosError('data-dir', `the database ${dbPath} is corrupted (${msg})`);
  return e;
}
