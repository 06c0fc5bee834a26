// The WAL checkpoint thread: once the WAL has grown, a thread of the store's own folds it back into
// the database file while the store keeps writing; SQLite's own checkpoints are off meanwhile and
// come back if the thread fails; closing the store stops the thread first, so the store's
// connection is the last one and removes the WAL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { SqliteStore } from '../src/ccos/store/sqlite.js';
import { AUTOCHECKPOINT_PAGES, LIMIT_FRAMES } from '../src/ccos/store/wal-checkpointer.js';
import { openCcos } from '../src/ccos/index.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-wal-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Commits `n` transactions of one ~2 KB row each. */
function writeRows(store: SqliteStore, n: number, from = 0): void {
  const value = 'x'.repeat(2000);
  for (let i = from; i < from + n; i++) store.tx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run(`k${i}`, value));
}

const autocheckpoint = (store: SqliteStore): number => store.db.pragma('wal_autocheckpoint', { simple: true }) as number;

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

test('wal thread: starts once the WAL has grown, folds it into the database while the store writes on', async (t) => {
  const dataDir = tempDir(t);
  const store = new SqliteStore(dataDir, { walThreadAtBytes: 256 * 1024 });
  t.after(() => store.close());
  writeRows(store, 60);
  assert.equal(store.walThread.running, false, 'a store that wrote little starts no thread');
  assert.equal(autocheckpoint(store), AUTOCHECKPOINT_PAGES);
  writeRows(store, 400, 60);
  assert.equal(store.walThread.running, true);
  assert.equal(autocheckpoint(store), LIMIT_FRAMES, "SQLite's own checkpoints wait for a WAL the thread cannot keep up with");
  // Nothing on this connection checkpoints a WAL this short, so the database file grows only by the thread's copies.
  const before = fs.statSync(store.dbPath).size;
  writeRows(store, 200, 460);
  await until('the database file holds the copied pages', () => fs.statSync(store.dbPath).size > before + 400 * 2000);
  assert.equal(store.stmt('SELECT COUNT(*) FROM state_kv').pluck().get(), 660);
});

test('wal thread: under a writer that never stops, the WAL still starts over (its file stays bounded)', (t) => {
  const dataDir = tempDir(t);
  const store = new SqliteStore(dataDir, { walThreadAtBytes: 256 * 1024 });
  t.after(() => store.close());
  // ~300 MB of rows, one commit after another, faster than the thread copies them: nearly four
  // times the length past which the store's connection copies what is left (LIMIT_FRAMES pages).
  // A WAL that never started over would be at least that long. (How far past LIMIT_FRAMES it gets
  // depends on how long the thread's copy in progress takes, which a loaded machine stretches: the
  // bound checked is that it started over, well before all was written.)
  const value = 'y'.repeat(60_000);
  const total = 5000;
  for (let i = 0; i < total; i++) store.tx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run(`k${i}`, value));
  assert.equal(store.walThread.running, true);
  const walBytes = fs.statSync(`${store.dbPath}-wal`).size;
  assert.ok(walBytes < 2.5 * LIMIT_FRAMES * 4096, `the WAL file is ${(walBytes / 1e6).toFixed(0)} MB`);
  assert.equal(store.stmt('SELECT COUNT(*) FROM state_kv').pluck().get(), total);
});

test('wal thread: closing the store stops it first; the WAL is folded and removed; every row is there', async (t) => {
  const dataDir = tempDir(t);
  const store = new SqliteStore(dataDir, { walThreadAtBytes: 256 * 1024 });
  writeRows(store, 500);
  assert.equal(store.walThread.running, true);
  store.close();
  assert.equal(store.walThread.running, false);
  assert.equal(fs.existsSync(`${store.dbPath}-wal`), false, 'the last connection to close removes the WAL');
  const again = new SqliteStore(dataDir);
  t.after(() => again.close());
  assert.equal(again.stmt('SELECT COUNT(*) FROM state_kv').pluck().get(), 500);
});

test("wal thread: if it fails, SQLite's own checkpoints come back and no new thread is started", async (t) => {
  const dataDir = tempDir(t);
  const store = new SqliteStore(dataDir, { walThreadAtBytes: 256 * 1024 });
  t.after(() => store.close());
  writeRows(store, 500);
  assert.equal(autocheckpoint(store), LIMIT_FRAMES);
  // (The thread's handle is private: a test stands in for a crash of the thread.)
  await (store.walThread as unknown as { worker: Worker }).worker.terminate();
  await until('the store has noticed', () => !store.walThread.running);
  assert.equal(autocheckpoint(store), AUTOCHECKPOINT_PAGES);
  writeRows(store, 200, 500);
  assert.equal(store.walThread.running, false);
});

test('wal thread: governed calls after it started are journaled and on a chain that verifies', async (t) => {
  const dataDir = tempDir(t);
  const ccos = openCcos({ dataDir, workspaceRoot: dataDir, walThreadAtBytes: 64 * 1024 });
  t.after(() => ccos.close());
  let effects = 0;
  ccos.registerCapability({ id: 't.work', idempotent: false }, (args) => {
    effects++;
    return args[0];
  });
  let runs = 0;
  const run = async (): Promise<void> => {
    const res = await ccos.run('(loop [i 0] (if (< i 300) (do (call :t.work i) (recur (inc i))) i))');
    assert.equal(res.status, 'completed');
    assert.equal(res.value, 300);
    runs++;
  };
  while (!ccos.store.walThread.running) {
    assert.ok(runs < 100, 'the thread starts');
    await run();
  }
  for (let r = 0; r < 3; r++) await run();
  assert.equal(effects, runs * 300);
  const report = ccos.verifyChain();
  assert.equal(report.ok, true, JSON.stringify(report.problems));
});
