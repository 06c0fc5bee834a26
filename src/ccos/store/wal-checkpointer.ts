/**
 * Folds the store's write-ahead log back into the database file on a thread of its own.
 *
 * Owns: one worker thread (wal-checkpoint-worker.ts) with its own connection to the database,
 * started once the WAL has grown, and stopped (synchronously) before the store closes; holding
 * SQLite's own checkpoints on the store's connection back (to LIMIT_FRAMES) while the thread does
 * them, and bringing them back if the thread fails; and the short checkpoint that lets the WAL
 * start over (see `committed`).
 * Must never: write rows; keep the process alive; let the store close before its thread has
 * closed its connection (the last connection to close is the one that folds and removes the WAL).
 *
 * Why: left to SQLite (`wal_autocheckpoint`), the commit that crosses the threshold copies the
 * whole WAL into the database file and syncs both, while every run of the process waits — one
 * commit in a few hundred takes tens of milliseconds, and sustained throughput drops by about a
 * sixth. On its own thread the copy overlaps with the writer, which SQLite allows (a PASSIVE
 * checkpoint never blocks it). But the WAL starts over only when a write transaction begins with
 * all of it copied, which a copy running beside a busy writer never sees: so once the thread has
 * copied all but the last few frames of a long WAL, the store copies those itself, between two
 * transactions, and the next one starts the WAL over.
 */
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

/** SQLite's own checkpoint threshold (pages) while no thread does it. */
export const AUTOCHECKPOINT_PAGES = 10_000;
/** The thread starts once the WAL file is this large (a short-lived command never starts it). */
const START_BYTES = 4 * 1024 * 1024;
/** Commits between two looks at the WAL's size (a look is a system call). */
const LOOK_EVERY_COMMITS = 64;
/** How long `stop` waits for the thread to close its connection. */
const STOP_WAIT_MS = 2000;
/** A WAL longer than this (frames: 40 MB of 4 KB pages) is made to start over (see the header). */
export const CATCH_UP_FRAMES = 10_000;
/** The store copies the rest itself once at most this many frames are left (a few milliseconds)… */
const LEFT_FOR_THE_STORE = 512;
/**
 * …and SQLite's own checkpoints come back past this length, for a writer that outpaces the thread:
 * after any commit while the WAL is longer, the store's connection copies what is left, unless the
 * thread is copying at that moment (a PASSIVE checkpoint then gives way).
 */
export const LIMIT_FRAMES = 2 * CATCH_UP_FRAMES;

/** What the thread is given (see wal-checkpoint-worker.ts). */
export interface CheckpointWorkerData {
  dbPath: string;
  /** Set to 1 by the thread once its connection is closed. */
  closed: Int32Array;
  /** After each of the thread's checkpoints: [frames in the WAL, frames copied]. */
  progress: Int32Array;
}

export class WalCheckpointer {
  private worker: Worker | null = null;
  private closed: Int32Array | null = null;
  private progress: Int32Array | null = null;
  private commitsSinceLook = 0;
  /** The thread failed once: SQLite checkpoints again, and no thread is started any more. */
  private failed = false;

  constructor(
    private readonly db: Database.Database,
    private readonly dbPath: string,
    /** The WAL size at which the thread starts (tests start it sooner). */
    private readonly startAtBytes = START_BYTES,
  ) {}

  /** Whether the thread is checkpointing. */
  get running(): boolean {
    return this.worker !== null;
  }

  /**
   * Call after each commit, outside a transaction: starts the thread once the WAL has grown; once
   * the thread has copied nearly all of a long WAL, copies the rest, so that the next write
   * transaction starts the WAL over.
   */
  committed(): void {
    if (this.worker) {
      const p = this.progress!;
      const log = Atomics.load(p, 0);
      if (log > CATCH_UP_FRAMES && log - Atomics.load(p, 1) <= LEFT_FOR_THE_STORE) {
        Atomics.store(p, 0, 0); // until the thread looks again
        try {
          this.db.pragma('wal_checkpoint(PASSIVE)');
        } catch {
          // (busy: another process checkpoints; the thread will report again)
        }
      }
      return;
    }
    if (this.failed || ++this.commitsSinceLook < LOOK_EVERY_COMMITS) return;
    this.commitsSinceLook = 0;
    if ((fs.statSync(`${this.dbPath}-wal`, { throwIfNoEntry: false })?.size ?? 0) >= this.startAtBytes) this.start();
  }

  private start(): void {
    const closed = new Int32Array(new SharedArrayBuffer(4));
    const progress = new Int32Array(new SharedArrayBuffer(8));
    let worker: Worker;
    try {
      worker = new Worker(new URL('./wal-checkpoint-worker.js', import.meta.url), { workerData: { dbPath: this.dbPath, closed, progress } satisfies CheckpointWorkerData });
    } catch {
      this.failed = true;
      return;
    }
    worker.unref();
    // A thread that fails leaves the checkpoints to SQLite again: the WAL must not grow for ever.
    const fail = (): void => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.failed = true;
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    };
    worker.on('error', fail);
    worker.on('exit', fail);
    this.worker = worker;
    this.closed = closed;
    this.progress = progress;
    this.db.pragma(`wal_autocheckpoint = ${LIMIT_FRAMES}`);
  }

  /** Stops the thread; returns once its connection is closed (or after STOP_WAIT_MS). */
  stop(): void {
    const worker = this.worker;
    if (!worker || !this.closed) return;
    this.worker = null;
    worker.postMessage('stop');
    Atomics.wait(this.closed, 0, 0, STOP_WAIT_MS);
    void worker.terminate();
  }
}
