// Helpers shared by the CCOS tests.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CcosError, openCcos, type Ccos } from '../src/ccos/index.js';

/** Expects `fn` to fail with a CcosError of `code` (thrown or rejected); returns the error. */
export async function failsWith(fn: () => unknown, code: string, message?: RegExp): Promise<CcosError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof CcosError, `expected a CcosError ${code}, got ${err === undefined ? 'success' : String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
  return err;
}

/** A CCOS node over a fresh temp data dir (also its workspace), removed after the test. */
export function tempNode(t: { after: (fn: () => void) => void }, prefix = 'ccos-test-'): Ccos {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const ccos = openCcos({ dataDir, workspaceRoot: dataDir });
  t.after(() => {
    ccos.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return ccos;
}

/** The single JSON line a `--json` command printed on stdout. */
export function jsonLine<T = Record<string, unknown>>(r: { stdout: string; stderr: string }): T {
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, `expected one JSON line on stdout, got:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return JSON.parse(lines[0]) as T;
}

/** Output must not contain a JS stack trace. */
export const noStack = (s: string): void => assert.doesNotMatch(s, /\n\s+at .*\.js:\d+/, `unexpected stack trace:\n${s}`);

/** SQL that stores a database's checkpoints as schemas 1 to 3 did: keyed by their id alone. */
const CHECKPOINTS_BY_ID = `DROP INDEX checkpoints_run_id;
  ALTER TABLE checkpoints RENAME TO checkpoints_new;
  CREATE TABLE checkpoints (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, created TEXT NOT NULL, reason TEXT NOT NULL, state TEXT NOT NULL);
  INSERT INTO checkpoints SELECT id, run_id, created, reason, state FROM checkpoints_new ORDER BY rowid;
  DROP TABLE checkpoints_new;`;

/**
 * Rewrites a data dir's database as schema 3 stored it: checkpoints keyed by their id alone, and
 * the run id of an action generated from its body.
 */
export function rewriteAsSchema3(dbPath: string): void {
  const db = new Database(dbPath);
  try {
    const view = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'actions'").pluck().get() as string;
    db.exec(`DROP VIEW actions;
      ALTER TABLE action_rows RENAME TO action_rows_new;
      DROP INDEX actions_run;
      CREATE TABLE action_rows (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL, run_id TEXT GENERATED ALWAYS AS (body ->> '$.run') VIRTUAL);
      INSERT INTO action_rows (seq, body, hash) SELECT seq, body, hash FROM action_rows_new ORDER BY seq;
      DROP TABLE action_rows_new;
      CREATE INDEX actions_run ON action_rows(run_id, seq);
      ${view};
      ${CHECKPOINTS_BY_ID}
      UPDATE meta SET value = '3' WHERE key = 'schema_version';`);
  } finally {
    db.close();
  }
}

/**
 * Rewrites a data dir's database as schema 2 stored it: the actions table with every column written
 * out (the previous hash too), the journal keyed by the request id as text, checkpoints by id.
 */
export function rewriteAsSchema2(dbPath: string): void {
  const db = new Database(dbPath);
  try {
    db.exec(`CREATE TABLE journal_v2 (run_id TEXT NOT NULL, request_id TEXT NOT NULL, kind TEXT NOT NULL, capability TEXT, args_hash TEXT,
        status TEXT NOT NULL, answer TEXT, PRIMARY KEY (run_id, request_id)) WITHOUT ROWID;
      INSERT INTO journal_v2 SELECT run_id, request_id, kind, capability, args_hash, status, answer FROM journal;
      DROP TABLE journal;
      ALTER TABLE journal_v2 RENAME TO journal;
      CREATE TABLE actions_v2 (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, parent_id TEXT, run_id TEXT, plan_id TEXT,
        intent_id TEXT, step_path TEXT, type TEXT NOT NULL, time TEXT NOT NULL, body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
      INSERT INTO actions_v2 SELECT seq, id, parent_id, run_id, plan_id, intent_id, step_path, type, time, body,
        COALESCE((SELECT p.hash FROM actions p WHERE p.seq = actions.seq - 1), '${'0'.repeat(64)}'), hash FROM actions;
      DROP VIEW actions;
      DROP TABLE action_rows;
      ALTER TABLE actions_v2 RENAME TO actions;
      CREATE INDEX actions_run ON actions(run_id, seq);
      ${CHECKPOINTS_BY_ID}
      UPDATE meta SET value = '2' WHERE key = 'schema_version';`);
  } finally {
    db.close();
  }
}

/**
 * What a crash at this instant would leave of a data dir, as the next node to open it sees it:
 * the data dir is copied (without SQLite's shared-memory index, rebuilt from the WAL as after a
 * reboot), its redo logs are renamed as if their process had died, and a node opens the copy —
 * which redoes them — before `fn` reads it.
 */
export function afterCrash<T>(dataDir: string, fn: (db: Database.Database) => T): T {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-crash-image-'));
  try {
    fs.cpSync(dataDir, copy, { recursive: true, filter: (src) => !src.endsWith('-shm') });
    const redo = path.join(copy, 'redo');
    // Process 0 never owns a log: the copy's logs belong to no live process. Each keeps its
    // commit marker (which groups of it are in the database), under its new name.
    const logs = fs.existsSync(redo) ? fs.readdirSync(redo) : [];
    const markers = new Database(path.join(copy, 'ccos.db'));
    try {
      for (const name of logs) {
        const dead = name.replace(/^\d+-\d+-/, '0-1-');
        fs.renameSync(path.join(redo, name), path.join(redo, dead));
        markers.prepare('INSERT INTO meta (key, value) SELECT ?, value FROM meta WHERE key = ?').run(`redo:${dead.slice(0, -5)}`, `redo:${name.slice(0, -5)}`);
      }
    } finally {
      markers.close();
    }
    openCcos({ dataDir: copy, mustExist: true }).close();
    const db = new Database(path.join(copy, 'ccos.db'), { readonly: true, fileMustExist: true });
    try {
      return fn(db);
    } finally {
      db.close();
    }
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
}
