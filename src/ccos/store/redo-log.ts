/**
 * The redo log: one file per open store, under `<data dir>/redo/`, that holds the writes of the
 * store's open group transaction which must survive a crash before the group is committed.
 *
 * Owns: this store's log file (created on first use, appended to with one `write` per batch,
 * started over once its batches are committed, removed on close), telling whether another log's
 * owner is still alive, and reading a dead owner's log back.
 * Must never: interpret what it holds (the store encodes and replays records), or touch the log
 * of a process that is still running.
 *
 * Why: a SQLite commit costs ~30 µs here (every page it touches is a 4 KB WAL frame, and is
 * written again at the WAL checkpoint), while appending one line to a file costs ~2 µs. A
 * non-idempotent call must be on record before its effect starts; this log is that record until
 * the group commits. Like SQLite's `synchronous = NORMAL`, an append survives the process dying;
 * with `sync` it also survives a power loss.
 *
 * A log is named `<pid>-<start>-<random>.redo`, where `<start>` is the process's start time as
 * the kernel counts it (see processes.ts), so that a new process that reuses the pid of a dead
 * one is not taken for the owner.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CcosError } from '../errors.js';
import { processAlive, processStartTime } from '../processes.js';

/**
 * One record: the group it belongs to, its kind and its data as JSON text. A line is
 * `<group> <kind> <json>`: the data, often JSON text already (an action's body), is not escaped
 * into another JSON string.
 */
export interface RedoRecord {
  group: number;
  kind: string;
  json: string;
}

/** The directory of a data dir's redo logs. */
export function redoDir(dataDir: string): string {
  return path.join(dataDir, 'redo');
}

export class RedoLog {
  /** The file name without `.redo`; the store's commit marker names the log by it. */
  readonly id: string;
  readonly file: string;
  private fd: number | null = null;
  private size = 0;
  /** Where a batch is encoded before it is written (kept: encoding into it is one pass, no allocation). */
  private buf = Buffer.allocUnsafe(16 * 1024);

  constructor(private readonly dir: string) {
    this.id = `${process.pid}-${processStartTime(process.pid) ?? 0}-${randomBytes(4).toString('hex')}`;
    this.file = path.join(dir, `${this.id}.redo`);
  }

  /** Appends lines (see `RedoRecord`, each ending in a newline); with `sync`, on disk when this returns. */
  append(text: string, sync: boolean): void {
    try {
      if (this.fd === null) {
        fs.mkdirSync(this.dir, { recursive: true });
        this.fd = fs.openSync(this.file, 'w');
        this.size = 0;
        if (sync) syncDirectory(this.dir); // the new file's name must survive a power loss too
      }
      let bytes = this.buf.write(text, 0, 'utf8');
      // `write` stops where the buffer ends (at a whole character): it may not all have fitted.
      if (bytes > this.buf.length - 4) {
        bytes = Buffer.byteLength(text);
        if (bytes > this.buf.length) this.buf = Buffer.allocUnsafe(2 ** Math.ceil(Math.log2(bytes)));
        this.buf.write(text, 0, 'utf8');
      }
      for (let done = 0; done < bytes; ) done += fs.writeSync(this.fd, this.buf, done, bytes - done, this.size + done);
      this.size += bytes;
      if (sync) fs.fdatasyncSync(this.fd);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new CcosError(code === 'ENOSPC' ? 'disk-full' : 'store', `cannot write the redo log ${this.file}: ${(e as Error).message}`, {
        hint: code === 'ENOSPC' ? 'free space, then `ccos resume` the run: it continues from its last durable record' : 'check the permissions and health of the data directory',
      });
    }
  }

  /**
   * Starts the log over (everything in it is committed). The next lines overwrite the old ones
   * rather than truncating the file: overwriting costs half as much as appending to a file that
   * grows. What is left after them belongs to committed groups, which recovery skips.
   */
  empty(): void {
    this.size = 0;
  }

  /** Closes and removes the log (call only once everything in it is committed); false if there was none. */
  close(): boolean {
    if (this.fd === null) return false;
    fs.closeSync(this.fd);
    this.fd = null;
    fs.rmSync(this.file, { force: true });
    return true;
  }
}

/**
 * The logs in `dir` whose owning process is gone, oldest first by name; `others`: whether any log
 * but `ownId`'s (a live one) is there, dead or alive.
 */
export function orphanedLogs(dir: string, ownId: string): { orphaned: { id: string; file: string }[]; others: boolean } {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return { orphaned: [], others: false };
  }
  const orphaned: { id: string; file: string }[] = [];
  let others = false;
  for (const name of names.sort()) {
    const m = /^(\d+)-(\d+)-[0-9a-f]+\.redo$/.exec(name);
    if (!m || name === `${ownId}.redo`) continue;
    others = true;
    if (!processAlive(Number(m[1]), Number(m[2]))) orphaned.push({ id: name.slice(0, -'.redo'.length), file: path.join(dir, name) });
  }
  return { orphaned, others };
}

/**
 * The records of a log, up to its first line that is not a whole record: what follows is the
 * remainder of lines overwritten since (see `empty`), or a batch the crash cut off, which nothing
 * can depend on since its `append` never returned.
 */
export function readLog(file: string): RedoRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const records: RedoRecord[] = [];
  const lines = text.split('\n');
  lines.pop(); // after the last newline
  for (const line of lines) {
    const m = /^(\d+) ([a-z]+) (.*)$/.exec(line);
    if (!m) break;
    try {
      JSON.parse(m[3]);
    } catch {
      break;
    }
    records.push({ group: Number(m[1]), kind: m[2], json: m[3] });
  }
  return records;
}

/** A record as a line of the log. */
export function redoLine(group: number, kind: string, json: string): string {
  return `${group} ${kind} ${json}\n`;
}

function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
