/**
 * The thread of `WalCheckpointer`: checkpoints a store's WAL from a connection of its own.
 *
 * Owns: that connection, and the rhythm of checkpoints: a PASSIVE one every TICK_MS (it copies
 * what it can without ever blocking the writer); when the WAL holds more than CATCH_UP_FRAMES, at
 * a quicker rhythm until nearly everything is copied, and then a RESTART, which waits for the
 * writer's current transaction, copies the few frames left and lets the next commit start the WAL
 * over (a WAL that is never wholly copied while the writer keeps committing would grow for ever).
 * Must never: write rows. A failure other than a busy database ends the thread, and the store
 * then leaves its checkpoints to SQLite again.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { CheckpointWorkerData } from './wal-checkpointer.js';

const TICK_MS = 100;
const CATCH_UP_TICK_MS = 5;
/** Past this many frames in the WAL (40 MB of 4 KB pages), the WAL is made to start over. */
const CATCH_UP_FRAMES = 10_000;
/** A RESTART is made once at most this many frames are left to copy (its wait stays short)… */
const RESTART_WHEN_LEFT = 256;
/** …or at once past this many frames, if the writer outpaces the copies (the wait is then longer). */
const RESTART_ANYWAY_FRAMES = 4 * CATCH_UP_FRAMES;

const { dbPath, closed } = workerData as CheckpointWorkerData;
// The writer holds its transaction for a few milliseconds at a time: a RESTART waits that long.
const db = new Database(dbPath, { timeout: 1000 });
let timer: NodeJS.Timeout | null = null;

function tick(): void {
  let next = TICK_MS;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    if (r.log > CATCH_UP_FRAMES) {
      if (r.log - r.checkpointed <= RESTART_WHEN_LEFT || r.log > RESTART_ANYWAY_FRAMES) db.pragma('wal_checkpoint(RESTART)');
      else next = CATCH_UP_TICK_MS;
    }
  } catch (e) {
    // Another process's checkpoint or a long transaction: try again at the next tick.
    if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
  }
  timer = setTimeout(tick, next);
}

parentPort!.on('message', (m) => {
  if (m !== 'stop') return;
  if (timer) clearTimeout(timer);
  db.close();
  Atomics.store(closed, 0, 1);
  Atomics.notify(closed, 0);
  parentPort!.close();
});
timer = setTimeout(tick, 0);
