/**
 * The redo log: one file per open store, under `<data dir>/redo/`, that holds the writes of the
 * store's open group transaction which must survive a crash before the group is committed.
 *
 * Owns: this store's log file (created on first use, appended to one batch at a time, started
 * over once its batches are committed, removed on close), the framing that tells a whole batch
 * from one a crash cut off, telling whether another log's owner is still alive, and reading a dead
 * owner's log back.
 * Must never: interpret what it holds (the store encodes and replays records), or touch the log
 * of a process that is still running.
 *
 * Why: a SQLite commit costs ~30 µs here (every page it touches is a 4 KB WAL frame, and is
 * written again at the WAL checkpoint), while appending to a file costs a few. A non-idempotent
 * call must be on record before its effect starts; this log is that record until the group
 * commits. Like SQLite's `synchronous = NORMAL`, an append survives the process dying; with `sync`
 * it also survives a power loss.
 *
 * How: in a log that is never synced, the file is mapped into memory (native/redo_map.c) and a
 * batch is stored into the mapping: what is stored there is the file's page cache, which outlives
 * the process as a `write` does, and costs no system call (in a virtual machine a system call
 * costs several microseconds, more than its own time). Without the addon, and in a log that is
 * synced (`syncs`), a batch is one `write` (then, with `sync`, an fdatasync): after a store into a
 * mapping, the file's next fdatasync costs 2.5 times as much here (350 µs against 140).
 *
 * Either way a batch is framed as `~<seq> <bytes> <crc>\n<lines>~<seq>\n`, `crc` being the CRC-32
 * of the lines: what a crash leaves of a batch it cut off has a header, trailer or checksum that
 * does not match, and the reader stops there. A batch's header is broken first and made whole
 * last, so a process killed in between leaves none (before, an older batch's header and trailer
 * at the same place, around lines half overwritten, could read as whole); the checksum (~0.4 µs
 * a batch of 1 KB) catches what a power loss tears: sectors of a batch not synced yet, written
 * back in any order. `seq` grows for the life of the file, so what a started-over log leaves of
 * older batches after its new ones never reads as their continuation. Logs framed without the
 * checksum (shorter headers) are still read.
 *
 * A log is named `<pid>-<start>-<random>.redo`, where `<start>` is the process's start time as
 * the kernel counts it (see processes.ts), so that a new process that reuses the pid of a dead
 * one is not taken for the owner.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { createRequire } from 'node:module';
import path from 'node:path';
import { CcosError } from '../errors.js';
import { processAlive, processStartTime } from '../processes.js';

/** `map(fd, bytes)`: an ArrayBuffer over the first `bytes` of the file, shared (native/redo_map.c). */
type Mapper = { map(fd: number, bytes: number): ArrayBuffer };

/**
 * The addon, built by `npm install` (node-gyp) into `build/` at the package root: four levels up
 * from the compiled module (dist/src/ccos/store), three from its source. Null where it could not
 * be built.
 */
const mapper: Mapper | null = (() => {
  const load = createRequire(import.meta.url);
  for (const up of ['../../../../', '../../../']) {
    try {
      return load(`${up}build/Release/redo_map.node`) as Mapper;
    } catch {
      // (not there: try the next place)
    }
  }
  return null;
})();

/** Whether a log that never syncs stores its batches into a mapping (else `write`s them). */
export const redoMapped = mapper !== null;

/** The size a mapped log starts at (it doubles when a batch does not fit). */
const MAP_BYTES = 1024 * 1024;
/** `~<seq> <bytes> <crc>\n`: 12 and 10 digits, 8 hex digits. */
const HEADER_BYTES = 34;
/** `~<seq> <bytes>\n`: the header of a log written before batches carried a checksum. */
const UNCHECKED_HEADER_BYTES = 25;
/** `~<seq>\n`. */
const TRAILER_BYTES = 14;

/**
 * A batch's header, `~<seq> <bytes> <crc>\n`, written into `buf` at `at` (byte by byte: no string
 * per batch), its first byte last (see the module header).
 */
function putHeader(buf: Buffer, at: number, seq: number, bytes: number, crc: number): void {
  putDigits(buf, at + 1, seq, 12);
  buf[at + 13] = 0x20;
  putDigits(buf, at + 14, bytes, 10);
  buf[at + 24] = 0x20;
  for (let i = at + 32; i >= at + 25; i--) {
    const d = crc & 15;
    buf[i] = d < 10 ? 0x30 + d : 0x57 + d;
    crc >>>= 4;
  }
  buf[at + 33] = 0x0a;
  buf[at] = 0x7e;
}

/** A batch's trailer, `~<seq>\n`, written into `buf` at `at`. */
function putTrailer(buf: Buffer, at: number, seq: number): void {
  buf[at] = 0x7e;
  putDigits(buf, at + 1, seq, 12);
  buf[at + 13] = 0x0a;
}

/** `n` as `width` decimal digits, zero-padded. */
function putDigits(buf: Buffer, at: number, n: number, width: number): void {
  for (let i = at + width - 1; i >= at; i--) {
    buf[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
}

/**
 * Frames `lines` as batch `seq` into `buf` at `at` (the header broken, the lines, the trailer, then
 * the header); returns where the batch ends, or -1 if it does not fit (`buf` may then hold part of
 * it, behind a broken header).
 */
function frame(buf: Buffer, at: number, seq: number, lines: string): number {
  if (at < buf.length) buf[at] = 0;
  const start = at + HEADER_BYTES;
  if (start >= buf.length) return -1;
  const bytes = buf.write(lines, start, 'utf8');
  // `write` stops where the buffer ends (at a whole character): it may not all have fitted.
  if (bytes > buf.length - start - TRAILER_BYTES - 4 && bytes < Buffer.byteLength(lines)) return -1;
  if (start + bytes + TRAILER_BYTES > buf.length) return -1;
  putTrailer(buf, start + bytes, seq);
  putHeader(buf, at, seq, bytes, crc32(buf.subarray(start, start + bytes)));
  return start + bytes + TRAILER_BYTES;
}

/** The bytes a batch of `lines` takes, framed. */
function framedBytes(lines: string): number {
  return HEADER_BYTES + Buffer.byteLength(lines) + TRAILER_BYTES;
}

/** One batch as the log frames it (see the header); tests write logs with it. */
export function redoBatch(seq: number, lines: string): string {
  const buf = Buffer.alloc(framedBytes(lines));
  frame(buf, 0, seq, lines);
  return buf.toString('utf8');
}

/** Whether `data` holds, at `at`, the trailer of the batch whose header is at `headerAt`. */
function trailerAt(data: Buffer, at: number, headerAt: number): boolean {
  return at + TRAILER_BYTES <= data.length && data[at] === 0x7e && data[at + 13] === 0x0a && data.compare(data, headerAt + 1, headerAt + 13, at + 1, at + 13) === 0;
}

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
  /** Batches appended to the file so far (each batch's `seq`). */
  private batches = 0;
  /** Some batches were appended since the last fdatasync. */
  private unsynced = false;
  /** The mapped file (a log that never syncs, when the addon is there). */
  private mapped: Buffer | null = null;
  /** Where a batch is encoded before it is written (kept: encoding into it is one pass, no allocation). */
  private buf = Buffer.allocUnsafe(16 * 1024);

  /** `syncs`: some appends will be synced (see `append`), so the file is written, not mapped. */
  constructor(
    private readonly dir: string,
    private readonly syncs = false,
  ) {
    this.id = `${process.pid}-${processStartTime(process.pid) ?? 0}-${randomBytes(4).toString('hex')}`;
    this.file = path.join(dir, `${this.id}.redo`);
  }

  /**
   * Appends lines (see `RedoRecord`, each ending in a newline) as one batch (none if `text` is
   * empty); with `sync` (in a log that `syncs`), on disk when this returns, together with every
   * batch before it.
   */
  append(text: string, sync = false): void {
    try {
      if (text) {
        if (this.fd === null) this.open();
        const seq = ++this.batches;
        if (this.mapped) this.store(seq, text);
        else this.write(seq, text);
        this.unsynced = true;
      }
      if (sync && this.unsynced) {
        fs.fdatasyncSync(this.fd!);
        this.unsynced = false;
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new CcosError(code === 'ENOSPC' ? 'disk-full' : 'store', `cannot write the redo log ${this.file}: ${(e as Error).message}`, {
        hint: code === 'ENOSPC' ? 'free space, then `ccos resume` the run: it continues from its last durable record' : 'check the permissions and health of the data directory',
      });
    }
  }

  private open(): void {
    fs.mkdirSync(this.dir, { recursive: true });
    this.fd = fs.openSync(this.file, 'w+');
    this.size = 0;
    if (this.syncs) syncDirectory(this.dir); // the new file's name must survive a power loss too
    else if (mapper) this.mapped = this.map(MAP_BYTES);
  }

  /** Extends the file to `bytes` and maps it. */
  private map(bytes: number): Buffer {
    // Zeros are written rather than the file sized: a store into a hole would allocate its block
    // on a page fault, where a full disk kills the process (SIGBUS) instead of failing here.
    const from = this.mapped?.length ?? 0;
    const zeros = Buffer.alloc(bytes - from);
    for (let done = 0; done < zeros.length; ) done += fs.writeSync(this.fd!, zeros, done, zeros.length - done, from + done);
    return Buffer.from(mapper!.map(this.fd!, bytes));
  }

  /** A batch stored into the mapping, after what the log holds (the mapping doubles until it fits). */
  private store(seq: number, text: string): void {
    let end = frame(this.mapped!, this.size, seq, text);
    if (end < 0) {
      let size = this.mapped!.length;
      while (size < this.size + framedBytes(text)) size *= 2;
      this.mapped = this.map(size); // the old mapping is unmapped once it is collected
      end = frame(this.mapped, this.size, seq, text);
    }
    this.size = end;
  }

  /** A batch as one `write` at the end of what the log holds. */
  private write(seq: number, text: string): void {
    let end = frame(this.buf, 0, seq, text);
    if (end < 0) {
      this.buf = Buffer.allocUnsafe(2 ** Math.ceil(Math.log2(framedBytes(text))));
      end = frame(this.buf, 0, seq, text);
    }
    for (let done = 0; done < end; ) done += fs.writeSync(this.fd!, this.buf, done, end - done, this.size + done);
    this.size += end;
  }

  /**
   * Starts the log over (everything in it is committed: on disk, where the log syncs, since the
   * store's commits are synced then). The next batches overwrite the old ones
   * rather than truncating the file: overwriting costs half as much as appending to a file that
   * grows. What is left after them is older batches, which the reader does not take for theirs.
   */
  empty(): void {
    this.size = 0;
    this.unsynced = false;
  }

  /** Closes and removes the log (call only once everything in it is committed); false if there was none. */
  close(): boolean {
    if (this.fd === null) return false;
    fs.closeSync(this.fd);
    this.fd = null;
    this.mapped = null;
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
 * The records of a log, up to its first batch that is not whole (a crash cut it off while it was
 * stored; its `append` never returned, so nothing can depend on it) or that does not follow the
 * one before (what is left of older batches after a log started over).
 */
export function readLog(file: string): RedoRecord[] {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  // A log written before batches were framed is lines alone (a line begins with its group
  // number); one whose first batch has no whole header yet (broken, or zeros) holds nothing; one
  // written before batches carried a checksum has shorter headers.
  if (data.length === 0 || data[0] !== 0x7e) return data[0] >= 0x30 && data[0] <= 0x39 ? readLines(data.toString('utf8')).records : [];
  const checked = data[UNCHECKED_HEADER_BYTES - 1] !== 0x0a;
  const headerBytes = checked ? HEADER_BYTES : UNCHECKED_HEADER_BYTES;
  const header = checked ? /^~(\d{12}) (\d{10}) ([0-9a-f]{8})\n$/ : /^~(\d{12}) (\d{10})\n$/;
  const records: RedoRecord[] = [];
  let expected: number | null = null;
  for (let at = 0; at + headerBytes <= data.length; ) {
    const m = header.exec(data.toString('latin1', at, at + headerBytes));
    if (!m) break;
    const seq = Number(m[1]);
    const bytes = Number(m[2]);
    const end = at + headerBytes + bytes;
    if ((expected !== null && seq !== expected) || !trailerAt(data, end, at)) break;
    if (checked && crc32(data.subarray(at + headerBytes, end)) !== parseInt(m[3], 16)) break;
    const lines = readLines(data.toString('utf8', at + headerBytes, end));
    records.push(...lines.records);
    if (!lines.whole) break;
    expected = seq + 1;
    at = end + TRAILER_BYTES;
  }
  return records;
}

/** The records in `text`, up to its first line that is not a whole record; `whole`: all were. */
function readLines(text: string): { records: RedoRecord[]; whole: boolean } {
  const records: RedoRecord[] = [];
  const lines = text.split('\n');
  const rest = lines.pop(); // after the last newline
  for (const line of lines) {
    const m = /^(\d+) ([a-z]+) (.*)$/.exec(line);
    if (!m) return { records, whole: false };
    try {
      JSON.parse(m[3]);
    } catch {
      return { records, whole: false };
    }
    records.push({ group: Number(m[1]), kind: m[2], json: m[3] });
  }
  return { records, whole: rest === '' };
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
