/**
 * Folds the store's write-ahead log back into the database file on a thread of its own.
 *
 * Owns: one worker thread (wal-checkpoint-worker.ts) with its own connection to the database,
 * started once the WAL has grown, and stopped (synchronously) before the store closes; turning
 * SQLite's own checkpoints off on the store's connection while the thread does them, and back on
 * if the thread fails.
 * Must never: write rows; keep the process alive; let the store close before its thread has
 * closed its connection (the last connection to close is the one that folds and removes the WAL).
 *
 * Why: left to SQLite (`wal_autocheckpoint`), the commit that crosses the threshold copies the
 * whole WAL into the database file and syncs both, while every run of the process waits — one
 * commit in a few hundred takes tens of milliseconds, and sustained throughput drops by about a
 * sixth. On its own thread the copy overlaps with the writer, which SQLite allows (a PASSIVE
 * checkpoint never blocks it).
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

/** What the thread is given (see wal-checkpoint-worker.ts). */
export interface CheckpointWorkerData {
  dbPath: string;
  /** Set to 1 by the thread once its connection is closed. */
  closed: Int32Array;
}

export class WalCheckpointer {
  private worker: Worker | null = null;
  private closed: Int32Array | null = null;
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

  /** Call after each commit: starts the thread once the WAL has grown. */
  committed(): void {
    if (this.worker || this.failed || ++this.commitsSinceLook < LOOK_EVERY_COMMITS) return;
    this.commitsSinceLook = 0;
    if ((fs.statSync(`${this.dbPath}-wal`, { throwIfNoEntry: false })?.size ?? 0) >= this.startAtBytes) this.start();
  }

  private start(): void {
    const closed = new Int32Array(new SharedArrayBuffer(4));
    let worker: Worker;
    try {
      worker = new Worker(new URL('./wal-checkpoint-worker.js', import.meta.url), { workerData: { dbPath: this.dbPath, closed } satisfies CheckpointWorkerData });
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
    this.db.pragma('wal_autocheckpoint = 0');
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
