/**
 * The thread of `WalCheckpointer`: copies a store's WAL into the database file from a connection
 * of its own, and tells the store how far it got.
 *
 * Owns: that connection, and a PASSIVE checkpoint every TICK_MS (every CATCH_UP_TICK_MS while the
 * WAL is long): it copies what it can and never waits for, or blocks, the writer. After each, it
 * publishes the WAL's length and how much of it is copied (`CheckpointWorkerData.progress`); and
 * syncing what it copied into the database file, which SQLite leaves to the checkpoint that copies
 * the last frame (the store's, then: see `WalCheckpointer.committed`), so that the store does not
 * wait for 40 MB to reach the disk.
 * Must never: take the write lock (no FULL or RESTART checkpoint: the writer holds that lock almost
 * all the time, and a checkpoint waiting for it would starve it or be starved); write rows. A
 * failure other than a busy database ends the thread, and the store then leaves its checkpoints to
 * SQLite again.
 */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CATCH_UP_FRAMES, type CheckpointWorkerData } from './wal-checkpointer.js';

const TICK_MS = 100;
const CATCH_UP_TICK_MS = 10;

const { dbPath, closed, progress } = workerData as CheckpointWorkerData;
const db = new Database(dbPath, { timeout: 0 });
const dbFile = fs.openSync(dbPath, 'r');
let timer: NodeJS.Timeout | null = null;
let copied = 0;

function tick(): void {
  let next = TICK_MS;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    if (r.log >= 0 && r.checkpointed >= 0) {
      if (r.checkpointed !== copied) fs.fdatasyncSync(dbFile);
      copied = r.checkpointed;
      Atomics.store(progress, 1, r.checkpointed);
      Atomics.store(progress, 0, r.log);
    }
    if (r.log > CATCH_UP_FRAMES) next = CATCH_UP_TICK_MS;
  } catch (e) {
    // Another process's checkpoint: try again at the next tick.
    if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
  }
  timer = setTimeout(tick, next);
}

parentPort!.on('message', (m) => {
  if (m !== 'stop') return;
  if (timer) clearTimeout(timer);
  db.close();
  fs.closeSync(dbFile);
  Atomics.store(closed, 0, 1);
  Atomics.notify(closed, 0);
  parentPort!.close();
});
timer = setTimeout(tick, 0);
