/**
 * The embedded store: one SQLite file (better-sqlite3, WAL) in the data directory.
 *
 * Owns: the schema, opening and locking the data dir with clear errors, transactions, and the
 * rows of every table (actions, seals, blobs, runs, checkpoints, journal, capabilities, intents,
 * state). Higher modules (chain, orchestrator, registry) own what the rows mean.
 * Must never: interpret plan code, or leave a half-written record (every multi-row change is one
 * transaction).
 *
 * Group commit: `deferredTx` writes join one open transaction that is
 * committed by the next `tx` (or `commit`), after `groupCommitMs` or GROUP_MAX_WRITES, or on close.
 * Why: a commit costs 15–50 µs here, most of a governed call. Deferring is safe only for records
 * whose loss in a crash is the same as a crash a moment earlier (a result that nothing outside the
 * plan has seen yet; an idempotent call, which may run again); anything that must be on disk
 * before the next effect uses `durableTx`: its writes, and every write of the open group before
 * them, are appended to the redo log (see redo-log.ts) instead of committed.
 *
 * Strict durability: every `deferredTx` is persisted with an fdatasync of the redo log before it
 * returns (~0.1 ms here, where a synchronous SQLite commit costs 0.15–0.3 ms); the group is
 * committed as above (every 20 ms by default), and `tx` (ends) commits with an fsync. What only
 * has to precede an effect (`durableTx` with `fence`) is written to the redo log without an
 * fdatasync, as with normal durability: it survives the process dying, and the fdatasync that
 * follows the effect (its result's) takes it to disk. Fenced durability syncs that too, before
 * the effect: a second fdatasync per non-idempotent call.
 *
 * The redo log: while a transaction is open, every write made through `stmt` is captured (its SQL
 * and parameters), and higher modules capture what cannot be replayed as SQL (the chain's
 * appends, whose sequence numbers another process may have taken meanwhile). A provisional
 * write (`provisional`) is only such a record until the group commits, and is made then only if
 * nothing settled it first (a body that fails takes back what it settled). `persist` appends what
 * the group captured since its last persist. A commit that follows a persist also records, in the
 * same transaction, that the log's group is in (`meta` key `redo:<log id>`), then starts the log
 * over. After a crash, the next store to open (or a resume) replays a dead process's log from its
 * first group not marked in. Writes made around `stmt` (a capability using `db` directly) cannot
 * be replayed: `persist` then commits instead, and the group's bodies run in savepoints (see
 * `body`).
 */
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { CcosError } from '../errors.js';
import { orphanedLogs, readLog, redoDir, redoLine, RedoLog } from './redo-log.js';
import { AUTOCHECKPOINT_PAGES, WalCheckpointer } from './wal-checkpointer.js';

/**
 * 2: the journal is a WITHOUT ROWID table; checkpoints have no (run_id, created) index.
 * 3: an action is stored as its sequence number, canonical body and hash (`action_rows`), read
 * through the `actions` view (see ACTION_ROWS). The journal is keyed by `journalKey`.
 * 4: checkpoints are stored in the order they are made and found by run and id (see CHECKPOINTS);
 * an action's run id is stored, not generated from its body (see ACTION_ROWS).
 */
const SCHEMA_VERSION = 4;

// A checkpoint's id is the hash of its content, so an index keyed by the id alone puts each new
// one on a random page: at every pause a page of its own to write at the commit, and again at the
// WAL checkpoint (a tenth of a pause's cost). Keyed by run first (time-ordered ids), a run's
// checkpoints share their index pages. Finding a checkpoint by its id alone (`ccos resume cp-...`)
// scans that index, which a person's command can afford.
const CHECKPOINTS = `CREATE TABLE IF NOT EXISTS checkpoints (id TEXT NOT NULL, run_id TEXT NOT NULL, created TEXT NOT NULL, reason TEXT NOT NULL, state TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS checkpoints_run_id ON checkpoints(run_id, id)`;

// Every commit of a governed call writes a journal row: one B-tree (WITHOUT ROWID, keyed by run
// and request) instead of a rowid table plus its primary-key index saves a page per commit. The key
// orders a run's requests by number (see `journalKey`), so a run's new rows land beside its last
// ones instead of all over its key range, where each insert into a full page rebalances three.
const JOURNAL_COLUMNS = `run_id TEXT NOT NULL, request_key TEXT NOT NULL, request_id TEXT NOT NULL, kind TEXT NOT NULL,
  capability TEXT, args_hash TEXT, status TEXT NOT NULL, answer TEXT, PRIMARY KEY (run_id, request_key)`;

/**
 * The journal's sort key of a request id: every run of digits is prefixed with a letter giving its
 * length (`r9.f0` → `ra9.fa0`, `r10.f0` → `rb10.fa0`), so text order is numeric order.
 */
export function journalKey(requestId: string): string {
  // A scan rather than a replace with a callback: every journal row makes one (~0.3 µs less).
  let key = '';
  let from = 0;
  const digitAt = (i: number): boolean => {
    const c = requestId.charCodeAt(i); // NaN past the end
    return c >= 48 && c <= 57;
  };
  for (let i = 0; i < requestId.length; ) {
    if (!digitAt(i)) {
      i++;
      continue;
    }
    let end = i + 1;
    while (digitAt(end)) end++;
    key += requestId.slice(from, i) + String.fromCharCode(96 + Math.min(end - i, 26));
    from = i;
    i = end;
  }
  return key + requestId.slice(from);
}

// An action is stored once, as its hashed canonical body (`action_rows`); the `actions` view reads
// the columns queries filter on (type, step, time, ids) from the body. Why: they can never disagree
// with what is hashed, and a row is a third smaller. Only the run id, which the run index needs, is
// a column of its own, written by the chain from the action it hashes: a column generated from the
// body parsed the body at every insert (~0.5 µs an action); `CausalChain.verify` checks that it
// matches the body. The previous hash is the previous row's, so it is not stored either.
const ACTION_ROWS = `seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL, run_id TEXT`;
const ACTIONS_VIEW = `CREATE VIEW IF NOT EXISTS actions AS SELECT seq, body, hash, run_id,
  body ->> '$.id' AS id, body ->> '$.parent' AS parent_id, body ->> '$.plan' AS plan_id, body ->> '$.intent' AS intent_id,
  body -> '$.step' AS step_path, body ->> '$.type' AS type, body ->> '$.time' AS time FROM action_rows`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS action_rows (${ACTION_ROWS});
CREATE INDEX IF NOT EXISTS actions_run ON action_rows(run_id, seq);
${ACTIONS_VIEW};
CREATE TABLE IF NOT EXISTS seals (seq INTEGER PRIMARY KEY, head_hash TEXT NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, content TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, intent_id TEXT, file TEXT NOT NULL, source TEXT NOT NULL,
  inputs TEXT NOT NULL, options TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL,
  checkpoint TEXT, result TEXT, error TEXT, waiting TEXT, owner TEXT);
${CHECKPOINTS};
CREATE TABLE IF NOT EXISTS journal (${JOURNAL_COLUMNS}) WITHOUT ROWID;
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

/**
 * How hard the store works to survive a power loss. `normal`: what is written survives the
 * process dying (a power loss may take the last moments' work); `strict`: also a power loss,
 * before anything uses it; `fenced`: also what precedes an effect, before the effect starts.
 */
export type Durability = 'normal' | 'strict' | 'fenced';

/** The durability levels, in order, as `--durability` takes them. */
export const DURABILITIES: readonly Durability[] = ['normal', 'strict', 'fenced'];

export interface StoreOptions {
  /** How hard the store works to survive a power loss (default `normal`; see `Durability`). */
  durability?: Durability;
  /** Open without creating the data dir (read-only commands on a missing dir fail clearly). */
  mustExist?: boolean;
  /** Told before data written by an older CCOS is upgraded (a large chain takes seconds). */
  onUpgrade?: (fromSchema: number, toSchema: number) => void;
  /** How long (ms) writes may wait to share a commit (default 2; with strict durability 20). */
  groupCommitMs?: number;
  /** The WAL size (bytes) at which a thread takes over its checkpoints (default 4 MiB; see wal-checkpointer.ts). */
  walThreadAtBytes?: number;
}

/** The data directory: `--data-dir`, else `CCOS_HOME`, else `.ccos` under the current directory. */
export function resolveDataDir(explicit?: string): string {
  return path.resolve(explicit ?? process.env.CCOS_HOME ?? '.ccos');
}

/** A deferred group is committed once it holds this many `deferredTx` writes (or is `groupCommitMs` old). */
const GROUP_MAX_WRITES = 256;

/** Statements whose runs are captured for the redo log. */
const WRITE_SQL = /^\s*(INSERT|UPDATE|DELETE|REPLACE)\b/i;

/**
 * A captured write: `sql` with its statement and parameters (and the SQL as JSON text, made once
 * per statement rather than at every persist), or a kind a higher module replays (`onReplay`)
 * with its data as JSON text.
 */
type Captured = { k: 'sql'; d: [string, unknown[]]; sqlJson: string } | { k: string; d: string; p?: Provisional };

/** Replays one captured record of a kind from its JSON text (inside the replaying transaction). */
export type Replayer = (json: string) => void;

/** A write owed to SQLite only if the group commits before it is settled (see `provisional`). */
export interface Provisional {
  readonly write: () => void;
  /** Index of its record in the open group's captured writes (a failed body drops it from there). */
  readonly at: number;
  /**
   * `pending`: only its record, in the open group, stands for it; `written`: its rows are in
   * SQLite (the commit made them, or its record was redone); `dropped`: its record is gone (with
   * the body that made it, or with a group SQLite rolled back before it reached the redo log).
   */
  state: 'pending' | 'written' | 'dropped';
  /** Its caller took it over (see `settle`): neither a commit nor a redo in this process makes its write. */
  settled: boolean;
}

/** Opens (creating if needed) the store of a data directory. */
export class SqliteStore {
  readonly db: Database.Database;
  readonly dbPath: string;
  /** Commits made so far (benchmarks and diagnostics count them). */
  commits = 0;
  /**
   * Changes whenever this store's write transaction begins, commits or rolls back (to a
   * savepoint): a value read inside the transaction stays current while this is unchanged, since
   * no other connection can write meanwhile.
   */
  generation = 0;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly groupCommitMs: number;
  /** How hard this store works to survive a power loss (see `Durability`). */
  readonly durability: Durability;
  /** Strict (or fenced) durability: deferred writes are fdatasynced in the redo log, commits fsynced. */
  readonly strict: boolean;
  /** Fenced durability: what precedes an effect is fdatasynced in the redo log before it starts. */
  readonly fenced: boolean;
  /** Depth of `tx`/`deferredTx` bodies being run (nested ones join the outermost). */
  private depth = 0;
  /** A transaction holding deferred writes is open. */
  private groupOpen = false;
  private groupWrites = 0;
  private groupSince = 0;
  private groupTimer: NodeJS.Timeout | null = null;
  /**
   * Groups of deferred writes lost to a rollback (disk full, I/O error): a run that wrote into one
   * must restart from what is durable.
   */
  lostGroups = 0;
  /** A deferred group that failed to commit from the timer: reported by the next write. */
  private groupFailure: unknown = null;
  /** This store's redo log. */
  private readonly redo: RedoLog;
  /** Checkpoints the WAL on a thread of its own once it has grown. */
  readonly walThread: WalCheckpointer;
  /** The writes of the open transaction, in order (see the header). */
  private captured: Captured[] = [];
  /** How many of `captured` are in the redo log. */
  private persisted = 0;
  /** The group number of the next lines written to the redo log (it grows at each commit of some). */
  private redoGroup = 1;
  /** Persisted writes of a group that was rolled back (disk full): the next transaction redoes them. */
  private redoPending: Captured[] | null = null;
  /** Rows changed by captured writes in the open transaction, and `total_changes()` when it began. */
  private capturedChanges = 0;
  private changesAtBegin = 0;
  private readonly replayers = new Map<string, Replayer>();
  private totalChangesStmt: Database.Statement | undefined;
  private lastChangesStmt: Database.Statement | undefined;
  /** Provisional writes of the open group not settled yet: made just before it commits. */
  private provisionals: Provisional[] = [];
  /** Provisional writes settled by the body now running (taken back if it fails). */
  private settledInBody: Provisional[] = [];
  /** The redo directory as `recoverRedo` last saw it: its mtime, when, and whether other processes had logs. */
  private redoScan: { mtime: number; at: number; others: boolean } | null = null;

  constructor(
    readonly dataDir: string,
    opts: StoreOptions = {},
  ) {
    this.dbPath = path.join(dataDir, 'ccos.db');
    this.durability = opts.durability ?? 'normal';
    this.fenced = this.durability === 'fenced';
    this.strict = this.fenced || this.durability === 'strict';
    // Strict: what waits for the commit is already synced in the redo log, so it can wait longer
    // (each commit costs an fsync; other processes wait for the write lock meanwhile).
    this.groupCommitMs = opts.groupCommitMs ?? (this.strict ? 20 : 2);
    this.redo = new RedoLog(redoDir(dataDir), this.strict);
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
      this.db.pragma(`synchronous = ${this.strict ? 'FULL' : 'NORMAL'}`);
      // Fewer, larger WAL checkpoints: commits stay cheap; the WAL is folded back in bulk — by a
      // thread of its own once the WAL has grown (see wal-checkpointer.ts).
      this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
      this.walThread = new WalCheckpointer(this.db, this.dbPath, opts.walThreadAtBytes);
      this.db.pragma('foreign_keys = ON');
      this.db.exec(SCHEMA);
      const v = this.getMeta('schema_version');
      if (v === undefined) this.setMeta('schema_version', String(SCHEMA_VERSION));
      else if (Number(v) > SCHEMA_VERSION) {
        throw new CcosError('data-dir', `the data in ${dataDir} was written by a newer CCOS (schema ${v}, this one reads ${SCHEMA_VERSION})`, { hint: 'upgrade ccos' });
      } else if (Number(v) < SCHEMA_VERSION) {
        opts.onUpgrade?.(Number(v), SCHEMA_VERSION);
        this.migrate(Number(v));
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

  /** Brings a data dir written by an older CCOS to SCHEMA_VERSION, in one transaction. */
  private migrate(from: number): void {
    this.db.transaction(() => {
      if (from < 2) this.db.exec('DROP INDEX IF EXISTS checkpoints_run');
      if (from < 3) {
        this.db.function('ccos_journal_key', { deterministic: true }, (id: unknown) => journalKey(String(id)));
        this.db.exec(`CREATE TABLE journal_v3 (${JOURNAL_COLUMNS}) WITHOUT ROWID;
          INSERT INTO journal_v3 (run_id, request_key, request_id, kind, capability, args_hash, status, answer)
            SELECT run_id, ccos_journal_key(request_id), request_id, kind, capability, args_hash, status, answer FROM journal;
          DROP TABLE journal;
          ALTER TABLE journal_v3 RENAME TO journal;`);
        // The old actions table (its name now belongs to the view) becomes action_rows.
        if (this.db.prepare("SELECT type FROM sqlite_master WHERE name = 'actions'").pluck().get() === 'table') {
          this.db.exec(`INSERT INTO action_rows (seq, body, hash, run_id) SELECT seq, body, hash, body ->> '$.run' FROM actions ORDER BY seq;
            DROP TABLE actions;
            CREATE INDEX actions_run ON action_rows(run_id, seq);
            ${ACTIONS_VIEW};`);
        }
      }
      if (from < 4) {
        if (this.db.prepare("SELECT hidden FROM pragma_table_xinfo('action_rows') WHERE name = 'run_id'").pluck().get() !== 0) {
          this.db.exec(`DROP VIEW actions;
            ALTER TABLE action_rows RENAME TO action_rows_v3;
            DROP INDEX actions_run;
            CREATE TABLE action_rows (${ACTION_ROWS});
            INSERT INTO action_rows (seq, body, hash, run_id) SELECT seq, body, hash, body ->> '$.run' FROM action_rows_v3 ORDER BY seq;
            DROP TABLE action_rows_v3;
            CREATE INDEX actions_run ON action_rows(run_id, seq);
            ${ACTIONS_VIEW};`);
        }
        this.db.exec(`ALTER TABLE checkpoints RENAME TO checkpoints_v3;
          DROP INDEX IF EXISTS checkpoints_run_id;
          ${CHECKPOINTS};
          INSERT INTO checkpoints (id, run_id, created, reason, state) SELECT id, run_id, created, reason, state FROM checkpoints_v3 ORDER BY rowid;
          DROP TABLE checkpoints_v3;`);
      }
      this.setMeta('schema_version', String(SCHEMA_VERSION));
    })();
  }

  /**
   * A prepared statement, prepared once per store (preparing costs more than running). The runs of
   * a write statement inside a transaction are captured for the redo log.
   */
  stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      if (WRITE_SQL.test(sql)) this.captureRuns(s, sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private captureRuns(s: Database.Statement, sql: string): void {
    const run = s.run.bind(s);
    const get = s.get.bind(s);
    const sqlJson = JSON.stringify(sql);
    s.run = (...params: unknown[]) => {
      const info = run(...params);
      this.captureRecord({ k: 'sql', d: [sql, params], sqlJson }, info.changes);
      return info;
    };
    // `INSERT ... RETURNING` is read with `get`.
    s.get = (...params: unknown[]) => {
      const row = get(...params);
      this.captureRecord({ k: 'sql', d: [sql, params], sqlJson }, this.lastChanges.get() as number);
      return row;
    };
  }

  /**
   * Records a write made inside a transaction for the redo log: its kind (see `onReplay`), its
   * data as JSON text, and the rows it changed.
   */
  capture(kind: string, json: string, changes: number): void {
    this.captureRecord({ k: kind, d: json }, changes);
  }

  private captureRecord(r: Captured, changes: number): void {
    // A write that changed nothing (an `INSERT OR IGNORE` of a stored blob) need not be redone.
    if (changes === 0 || !this.db.inTransaction) return;
    this.captured.push(r);
    this.capturedChanges += changes;
  }

  /**
   * A write that must survive a crash from now on, but need reach SQLite only if it is still
   * wanted when the group commits: a call's action and "started" mark, which its result and
   * answer replace a few microseconds later when the effect is quick. It goes to the redo log with
   * the next `persist`, as a record of `kind` (replayed by `onReplay(kind)` after a crash; made
   * again in this process, by `write` itself); the commit makes `write` unless `settle` came
   * first. Call inside a transaction body (or see `durableProvisional`).
   */
  provisional(kind: string, json: string, write: () => void): Provisional {
    if (!this.db.inTransaction || (this.depth === 0 && !this.groupOpen)) throw new Error('provisional() outside a transaction body');
    const p: Provisional = { write, at: this.captured.length, state: 'pending', settled: false };
    this.captured.push({ k: kind, d: json, p });
    this.provisionals.push(p);
    return p;
  }

  /**
   * The provisional write is replaced (or no longer wanted): the commit skips it. While `state` is
   * `pending`, the replacement may leave out what the record redoes (see `captureCovered`); if
   * `dropped`, nothing does. Settled inside a body that then fails, it is owed again.
   */
  settle(p: Provisional): void {
    p.settled = true;
    if (this.depth > 0) this.settledInBody.push(p);
  }

  /**
   * Counts `changes` rows as captured without a record: a write that a provisional record of the
   * open group (still `pending`) redoes after a crash.
   */
  captureCovered(changes: number): void {
    if (this.db.inTransaction) this.capturedChanges += changes;
  }

  /** How captured records of `kind` are replayed (see `capture`). */
  onReplay(kind: string, replayer: Replayer): void {
    this.replayers.set(kind, replayer);
  }

  /**
   * Makes the open group's writes survive a crash without committing them: appends what was
   * captured since the last persist to the redo log (with `sync`, and an fdatasync: they survive a
   * power loss too, with everything persisted before them). Commits instead when the group holds
   * writes that were not captured. Call between transactions, not in one.
   */
  persist(sync = this.strict): void {
    if (this.depth > 0 || !this.groupOpen) return;
    const lines = (this.totalChanges.get() as number) - this.changesAtBegin === this.capturedChanges ? encodeRecords(this.captured, this.persisted, this.redoGroup) : null;
    if (lines === null) return this.commit();
    // With nothing new, `sync` still takes to disk what earlier persists wrote without one.
    if (lines || sync) this.redo.append(lines, sync);
    this.persisted = this.captured.length;
  }

  /**
   * A transaction whose writes are persisted, not necessarily committed (see `persist`), when it
   * returns. `fence`: they only have to precede an effect, so they are synced only with fenced
   * durability (see the header).
   */
  durableTx<T>(fn: () => T, opts: { fence?: boolean } = {}): T {
    const out = this.deferredTx(fn, { persistLater: true });
    this.persist(opts.fence ? this.fenced : this.strict);
    return out;
  }

  /**
   * `durableTx(() => provisional(kind, json, write), { fence: true })`, without a transaction
   * body while a group is open: a record is all it adds, and a body (its checks, its
   * bookkeeping) costs more than the record. A non-idempotent call makes one before every effect.
   */
  durableProvisional(kind: string, json: string, write: () => void): Provisional {
    if (this.depth > 0 || !this.groupOpen || this.groupFailure || !this.db.inTransaction) return this.durableTx(() => this.provisional(kind, json, write), { fence: true });
    const p = this.provisional(kind, json, write);
    this.persist(this.fenced);
    return p;
  }

  /** `SELECT total_changes()`, plucked once (a body reads it, and `pluck` is a call into SQLite's binding). */
  private get totalChanges(): Database.Statement {
    return (this.totalChangesStmt ??= this.db.prepare('SELECT total_changes()').pluck());
  }

  /** `SELECT changes()`, likewise. */
  private get lastChanges(): Database.Statement {
    return (this.lastChangesStmt ??= this.db.prepare('SELECT changes()').pluck());
  }

  /**
   * Replays the redo logs of processes that died with writes not yet committed, each in one
   * transaction that also marks its groups as in; then removes the logs. Call once every table
   * and replayer is set up (on open), and before resuming any run: another process may have
   * resumed it, logged what it did, and died before committing (so the run still looks paused).
   */
  recoverRedo(): void {
    const dir = redoDir(this.dataDir);
    // A directory that held no other process's log when last looked at, and has not changed since
    // (a log is created before anything is written to it), holds none now. File times are coarse
    // (a clock tick), so a look within a second of the last change does not count.
    const mtime = fs.statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? -1;
    const last = this.redoScan;
    if (last && last.mtime === mtime && !last.others && last.at - mtime > 1000) return;
    const logs = orphanedLogs(dir, this.redo.id);
    this.redoScan = { mtime, at: Date.now(), others: logs.others };
    for (const log of logs.orphaned) {
      const records = readLog(log.file);
      const marker = `redo:${log.id}`;
      try {
        this.tx(() => {
          // Another process may have redone it since it was read (it removes the log, then the marker).
          if (!fs.existsSync(log.file)) return;
          const done = Number(this.getMeta(marker) ?? 0);
          const todo = records.filter((r) => r.group > done);
          if (!todo.length) return;
          this.replay(todo.map((r) => ({ k: r.kind, d: r.kind === 'sql' ? JSON.parse(r.json) : r.json })));
          this.setMeta(marker, String(Math.max(...todo.map((r) => r.group))));
        });
      } catch (e) {
        const err = translateSqliteError(e, this.dbPath);
        if (err instanceof CcosError) throw err; // the store's own trouble (full, busy), said as such
        throw new CcosError('data-dir', `cannot redo ${log.file}, left by a process that stopped before committing it: ${(e as Error).message}`, {
          hint: 'move the file out of the redo directory to open the data dir without it; the runs it covers may then have lost their last records (`ccos runs list` shows them as running)',
        });
      }
      fs.rmSync(log.file, { force: true });
      this.tx(() => this.stmt('DELETE FROM meta WHERE key = ?').run(marker));
    }
  }

  private replay(records: Captured[]): void {
    for (const r of records) {
      if (r.k === 'sql') {
        const [sql, params] = r.d as [string, unknown[]];
        this.stmt(sql).run(...params);
        continue;
      }
      // A provisional record of this process that nothing settled: its write is its redo (so
      // whatever it tells, it tells once).
      const own = (r as { p?: Provisional }).p;
      if (own && !own.settled) {
        own.write();
        continue;
      }
      const replayer = this.replayers.get(r.k);
      if (!replayer) throw new CcosError('data-dir', `a redo log holds a record of unknown kind "${r.k}"`, { hint: 'it was written by a newer CCOS: upgrade ccos' });
      replayer(r.d as string);
    }
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction (a single writer; nothing is half-written) and commits
   * it, together with any deferred writes before it. Nested calls join the enclosing transaction.
   */
  tx<T>(fn: () => T): T {
    if (this.depth > 0 || (!this.groupOpen && this.db.inTransaction)) return fn();
    const out = this.body(fn);
    this.commit();
    return out;
  }

  /**
   * Like `tx`, but the commit may wait (see the header): with normal durability, for records whose
   * loss in a crash is no worse than crashing just before them. With strict durability the writes
   * are persisted, with an fdatasync of the redo log, before this returns — unless `persistLater`:
   * the caller then persists (once, for several writes) before anything depends on them.
   */
  deferredTx<T>(fn: () => T, opts: { persistLater?: boolean } = {}): T {
    if (this.depth > 0 || (!this.groupOpen && this.db.inTransaction)) return fn();
    const out = this.body(fn);
    if (++this.groupWrites >= GROUP_MAX_WRITES || performance.now() - this.groupSince >= this.groupCommitMs) this.commit();
    else {
      this.groupTimer ??= setTimeout(() => this.commitFromTimer(), this.groupCommitMs).unref();
      if (this.strict && !opts.persistLater) this.persist();
    }
    return out;
  }

  /** Commits the deferred writes, if any (they are durable when this returns). */
  commit(): void {
    if (this.groupTimer) clearTimeout(this.groupTimer);
    this.groupTimer = null;
    if (!this.groupOpen) return;
    this.groupWrites = 0;
    if (!this.db.inTransaction) {
      this.groupLost();
      throw lostGroup(this.dbPath);
    }
    this.generation++;
    const logged = this.persisted > 0;
    try {
      for (const p of this.provisionals) {
        if (p.settled) continue;
        p.write();
        p.state = 'written';
      }
      if (logged) this.setMeta(`redo:${this.redo.id}`, String(this.redoGroup));
      this.stmt('COMMIT').run();
      this.commits++;
    } catch (e) {
      if (this.db.inTransaction) this.stmt('ROLLBACK').run();
      this.groupLost();
      throw translateSqliteError(e, this.dbPath);
    }
    this.provisionals = [];
    this.groupOpen = false;
    this.captured = [];
    this.persisted = 0;
    if (logged) {
      this.redoGroup++;
      this.redo.empty();
    }
    this.walThread.committed();
  }

  /**
   * The open group was rolled back (by SQLite, after a full disk or an I/O error): as after a
   * crash, except that what the group persisted to the redo log is redone by the next transaction.
   */
  private groupLost(): void {
    this.groupOpen = false;
    this.lostGroups++;
    // What was persisted, provisional writes included, is redone by the next transaction.
    if (this.persisted > 0) this.redoPending = this.captured.slice(0, this.persisted);
    for (const p of this.provisionals) p.state = p.at < this.persisted ? 'written' : 'dropped';
    this.provisionals = [];
    this.captured = [];
    this.persisted = 0;
  }

  /**
   * Runs `fn` inside the open group or a new transaction. A body that joins the group needs no
   * savepoint while every write of the group was captured (a SAVEPOINT and its RELEASE cost about
   * a microsecond, as much as a body's own insert): if it fails, `undoBody` takes its writes back.
   * After a write made around `stmt`, which could not be made again, bodies use a savepoint.
   */
  private body<T>(fn: () => T): T {
    if (this.groupFailure) {
      const f = this.groupFailure;
      this.groupFailure = null;
      throw f;
    }
    if (this.groupOpen && !this.db.inTransaction) {
      this.groupLost();
      throw lostGroup(this.dbPath);
    }
    const joining = this.groupOpen;
    /** Rows the group changed before this body. */
    const changesBefore = joining ? (this.totalChanges.get() as number) - this.changesAtBegin : 0;
    const savepoint = joining && changesBefore !== this.capturedChanges;
    try {
      if (!joining) this.stmt('BEGIN IMMEDIATE').run();
      else if (savepoint) this.stmt('SAVEPOINT body').run();
    } catch (e) {
      throw translateSqliteError(e, this.dbPath);
    }
    const capturedBefore = this.captured.length;
    this.depth++;
    try {
      if (!joining) {
        this.groupSince = performance.now();
        this.generation++;
        this.captured = [];
        this.capturedChanges = 0;
        this.changesAtBegin = this.totalChanges.get() as number;
        if (this.redoPending) {
          // Already in the redo log, under this same group number (no commit of it happened since).
          this.replay(this.redoPending);
          this.persisted = this.captured.length;
          this.redoPending = null;
        }
      }
      const out = fn();
      if (savepoint) this.stmt('RELEASE body').run();
      this.groupOpen = true;
      this.settledInBody.length = 0;
      return out;
    } catch (e) {
      this.generation++;
      // What the body settled is owed again (before its group may be made again, see `replay`).
      for (const p of this.settledInBody) p.settled = false;
      this.settledInBody.length = 0;
      if (joining && this.db.inTransaction) {
        if (savepoint) {
          this.stmt('ROLLBACK TO body').run();
          this.stmt('RELEASE body').run();
          this.dropCapturedFrom(capturedBefore, changesBefore);
        } else this.undoBody(capturedBefore, changesBefore);
      } else if (this.db.inTransaction) this.stmt('ROLLBACK').run();
      // After a full disk or an I/O error SQLite may roll back the whole transaction itself: the
      // deferred writes went with it, as in a crash (the caller's error says why).
      if (!this.db.inTransaction && this.groupOpen) this.groupLost();
      else if (!joining) {
        this.captured = [];
        this.provisionals = [];
        this.persisted = 0;
      }
      throw translateSqliteError(e, this.dbPath);
    } finally {
      this.depth--;
    }
  }

  /** Forgets the captured records (and provisional writes) from index `from` on. */
  private dropCapturedFrom(from: number, capturedChanges: number): void {
    this.captured.length = from;
    this.capturedChanges = capturedChanges;
    for (const p of this.provisionals) if (p.at >= from) p.state = 'dropped';
    this.provisionals = this.provisionals.filter((p) => p.at < from);
  }

  /**
   * Takes back what a body that failed inside the open group, without a savepoint, wrote: nothing
   * to do if it changed no row; else the group is rolled back, its writes before the body (all
   * captured, as `body` checked) are made again, and the group is committed, which leaves the
   * redo log and the captured records plain. If that fails, the group is lost as after a crash.
   */
  private undoBody(capturedBefore: number, changesBefore: number): void {
    if ((this.totalChanges.get() as number) - this.changesAtBegin === changesBefore) return this.dropCapturedFrom(capturedBefore, changesBefore);
    const before = this.captured.slice(0, capturedBefore);
    const persistedBefore = Math.min(this.persisted, capturedBefore);
    const owed = this.provisionals;
    this.stmt('ROLLBACK').run();
    try {
      this.stmt('BEGIN IMMEDIATE').run();
      this.captured = [];
      this.capturedChanges = 0;
      this.changesAtBegin = this.totalChanges.get() as number;
      // (A record may be replayed as several: what was persisted is counted again after it.)
      this.replay(before.slice(0, persistedBefore));
      this.persisted = this.captured.length;
      this.replay(before.slice(persistedBefore));
      // Provisional writes among them were just made (as in a crash recovery).
      this.provisionals = [];
      this.commit();
      for (const p of owed) p.state = p.at < capturedBefore ? 'written' : 'dropped';
    } catch {
      if (this.db.inTransaction) this.stmt('ROLLBACK').run();
      // The persisted ones are redone by the next transaction (`groupLost`).
      this.captured = before;
      this.persisted = persistedBefore;
      this.provisionals = [];
      for (const p of owed) p.state = p.at < persistedBefore ? 'written' : 'dropped';
    }
  }

  private commitFromTimer(): void {
    this.groupTimer = null;
    try {
      this.commit();
    } catch (e) {
      this.groupFailure = e;
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
    if (!this.db.open) return;
    try {
      this.commit();
      // Everything it held is committed (a pending redo is not: the log stays for recovery).
      if (!this.redoPending && this.redo.close()) {
        try {
          this.stmt('DELETE FROM meta WHERE key = ?').run(`redo:${this.redo.id}`);
        } catch {
          // (busy or read-only: a marker without its log is only a row too many)
        }
      }
    } finally {
      // The last connection to close folds the WAL into the database and removes it: this one.
      this.walThread.stop();
      this.db.close();
    }
  }
}

/**
 * Redo log lines (`redoLine`) for `records[from..]`. Null when a parameter cannot be written as
 * JSON (bytes, big integers): the caller commits instead.
 */
function encodeRecords(records: Captured[], from: number, group: number): string | null {
  let text = '';
  for (let i = from; i < records.length; i++) {
    const r = records[i];
    if (r.k !== 'sql') text += redoLine(group, r.k, r.d as string);
    else {
      const { d, sqlJson } = r as Extract<Captured, { k: 'sql' }>;
      if (!d[1].every(plainParam)) return null;
      text += redoLine(group, 'sql', `[${sqlJson},${JSON.stringify(d[1])}]`);
    }
  }
  return text;
}

const plainParam = (p: unknown): boolean => p === null || typeof p === 'string' || (typeof p === 'number' && Number.isFinite(p));

/** An error of the storage itself (full, locked, corrupt, rolled back), not of what was being stored. */
export function isStoreFailure(e: unknown): boolean {
  return e instanceof CcosError && (e.code === 'disk-full' || e.code === 'data-dir' || e.code === 'store');
}

/** The open group transaction was rolled back under us (by SQLite, after an error elsewhere). */
function lostGroup(dbPath: string): CcosError {
  return new CcosError('store', `SQLite rolled back writes to ${dbPath} that were not yet committed; the last few records of the running plans were not saved`, { hint: 'check the disk, then `ccos resume` the run: it continues from its last durable record' });
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
