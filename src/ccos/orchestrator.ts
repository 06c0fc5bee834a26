/**
 * The orchestrator: drives RTFS machines, answers their requests through the one gate, and keeps
 * the journal, checkpoints and causal chain that make runs resumable and auditable.
 *
 * Owns: run lifecycle (start, pause, resume in any process, complete, fail, cancel), step
 * semantics (timeouts, retries with backoff, `:on-fail`), the journal of every answer given to a
 * machine, checkpoints `cp-<sha256>` at pauses and step boundaries, crash recovery (a completed
 * effect is never executed twice; an in-flight call is retried only if idempotent), and replay.
 * Must never: run a capability except through `Gate`; start a non-idempotent effect or pause a
 * run before every answer given so far is committed or in the redo log; end a run before they are
 * committed (with strict durability: let a machine use an answer before it is on disk).
 *
 * Commits (see SqliteStore's group commit): with normal durability, answers and bookkeeping are
 * written with `deferredTx`; a non-idempotent call's CapabilityCall action and "started" mark
 * are written with `durableTx`, which puts them and everything before them in the redo log before
 * the effect starts (as one provisional record: they reach SQLite only if the call is still in
 * flight when the group commits; usually the call goes on the chain with its result, in one
 * insert, and its answer replaces the mark); so is a pause; the end commits. A
 * crash loses at most what no effect outside the plan has depended on yet: pure work is redone,
 * idempotent calls may run again, and a non-idempotent call whose result was lost is already
 * marked started, so the run pauses for a person as for any call in flight at a crash. With
 * strict durability the redo log is also synced before a machine uses an answer (so a power
 * loss during a call loses its start with it, and the call runs again); with fenced durability,
 * before each effect too (`durableTx` with `fence`).
 *
 * Resume = restore the latest checkpoint, then answer every request the (deterministic) machine
 * asks again from the journal, by request id. Only requests with no journaled answer do work.
 */
import { hash, randomUUID } from 'node:crypto';
import os from 'node:os';
import type Database from 'better-sqlite3';
import type { Json } from '../common/canonical.js';
import {
  Closure,
  ErrorValue,
  Labeled,
  evaluateContract,
  truthy,
  IMap,
  Keyword,
  RtfsError,
  createRuntime,
  errorToJson,
  kw,
  prStr,
  restoreMachine,
  saveMachine,
  valueFromJson,
  valueToJson,
  type HostRequest,
  type Machine,
  type MachineState,
  type Outcome,
  type RMap,
  type Resolution,
  type Runtime,
  type Scope,
  type Value,
} from '../rtfs/index.js';
import { blobAddress, isoNow, type Action, type CausalChain, type DraftAction, type NewAction } from './chain.js';
import { CcosError } from './errors.js';
import { redact } from './redact.js';
import { deriveStepProfile } from './providers/sandbox.js';
import type { Decision, Gate } from './gate.js';
import { isStoreFailure, journalKey, type Provisional, type SqliteStore } from './store/sqlite.js';
import { PauseRun } from './capabilities/types.js';
import { processAlive } from './processes.js';

export type RunStatus = 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';

/** Options of one run. */
export interface RunOptions {
  /** Bound to the global `input` in the plan, as a map with keyword keys. */
  inputs?: Record<string, Value>;
  intentId?: string;
  /** Fuel for pure computation (function calls + loop iterations). */
  fuel?: number;
  /** Capability id patterns (`*` wildcard) a run may call; empty = all registered. */
  allow?: string[];
  /** Capability id patterns a run may never call. */
  deny?: string[];
  /** Effect kinds (e.g. `network`) whose non-idempotent calls must carry an idempotency key. */
  requireIdempotencyFor?: string[];
  /** Set when the run was cancelled: it is unwinding (running its compensations). */
  cancelled?: boolean;
}

/** What a run ended with (for now). */
export interface RunResult {
  runId: string;
  status: RunStatus;
  value?: Value;
  error?: { code: string; message: string; hint?: string; file?: string; line?: number; col?: number };
  /** For a paused run: what it waits for. */
  waiting?: Json;
  checkpoint?: string;
}

/** How `resume` answers what a paused run waits for. */
export interface ResumeOptions {
  /** Result for calls waiting on a person (`ccos.user.ask`) or whose outcome is unknown. */
  answer?: Value;
  /** Fail those calls instead, with this message. */
  fail?: string;
  /** Run again the calls whose outcome is unknown (you know they did not happen). */
  retryUnknown?: boolean;
  /**
   * Decisions for individual waiting calls, by request id (as `waiting.request` names them);
   * they take precedence over the run-wide options above.
   */
  decisions?: Record<string, { answer: Value } | { fail: string } | { retry: true }>;
}

interface RunRow {
  id: string;
  plan_id: string;
  intent_id: string | null;
  file: string;
  source: string;
  inputs: string;
  options: string;
  status: RunStatus;
  created: string;
  updated: string;
  checkpoint: string | null;
  result: string | null;
  error: string | null;
  waiting: string | null;
  owner: string | null;
}

/** A checkpoint's state as stored: each unit names its source by blob (older states: inline). */
type StoredState = Omit<MachineState, 'units'> & { units: { id: string; file: string; source?: string; sourceBlob?: string }[] };

/** What `claim` and `resume` need of a run's row. */
type RunLease = Pick<RunRow, 'id' | 'status' | 'checkpoint' | 'owner'>;

interface JournalRow {
  request_id: string;
  kind: string;
  capability: string | null;
  args_hash: string | null;
  status: 'answered' | 'started' | 'waiting' | 'waiting-approval';
  answer: string | null;
}

/** The state of a run being driven in this process. */
export interface ActiveRun {
  readonly runId: string;
  readonly planId: string;
  readonly intentId: string | null;
  readonly options: RunOptions;
  runtime: Runtime;
  machine: Machine;
  resume?: ResumeOptions;
  /** Unwinding after `cancel`: it ends as cancelled, whatever the plan does. */
  cancelling?: boolean;
  /** `cancel` was called in this process while the run was being driven. */
  cancelRequested?: boolean;
  /**
   * Results waiting to be written: calls answered together share one transaction, written before
   * the machine sees any of them.
   */
  pendingWrites?: (() => void)[];
  /**
   * Started in this process (and, if paused, resumed here from its parked machine): the journal
   * holds nothing for it that this process did not write, so a request is looked up there only if
   * it is one the run paused on (`waitingIds`); a machine never asks an answered request again.
   */
  fresh?: boolean;
  /** The requests the run paused on last. */
  waitingIds?: ReadonlySet<string>;
}

/** A pause requested while answering (a person must act). */
interface Pause {
  pause: true;
  waiting: Json;
}

const isPause = (x: Resolution | Pause): x is Pause => (x as Pause).pause === true;

/**
 * The answer to a request: at once when nothing it needs waits (a synchronous provider, gate
 * stages that decide at once), else a promise. Why not always a promise: a sequential plan would
 * make several per call (see the gate's `Interceptor`).
 */
type Answer = Resolution | Pause | Promise<Resolution | Pause>;

/** An answer as a promise: a synchronous throw becomes a rejection. */
function answerLater(answer: () => Answer): Promise<Resolution | Pause> {
  try {
    return Promise.resolve(answer());
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The redo log's kind for a call about to run: its CapabilityCall action and "started" mark (see `callStarting`). */
const CALL_RECORD = 'call';
/** The same mark alone, as logs of earlier versions hold it (their call action is a record of its own). */
const STARTED_RECORD = 'started';
/** The redo log's kind for a checkpoint row (see `checkpoint`). */
const CHECKPOINT_RECORD = 'checkpoint';
const INSERT_CHECKPOINT = 'INSERT OR IGNORE INTO checkpoints (id, run_id, created, reason, state) VALUES (?, ?, ?, ?, ?)';
/** The redo log's kind for a journal row (see `journalRow`). */
const JOURNAL_RECORD = 'journal';
const UPSERT_JOURNAL = `INSERT INTO journal (run_id, request_key, request_id, kind, capability, args_hash, status, answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT(run_id, request_key) DO UPDATE SET status = excluded.status, answer = excluded.answer`;

/** Wall-clock limit of one contract predicate (besides its fuel). */
const CONTRACT_TIME_LIMIT_MS = 1000;

// One-shot hashing: about twice as fast as createHash for the short texts hashed per call.
const sha = (s: string): string => hash('sha256', s);
/** This host and process, as run leases name them (computed once: `os.hostname()` is a system call). */
const HOST = os.hostname();
const OWNER = `${process.pid}@${HOST}`;
const owner = (): string => OWNER;

/**
 * A random UUID whose first 48 bits are the time in ms (the layout of UUID version 7). Why: ids
 * made later sort later, so a new run's rows go at the right edge of every index keyed by run id
 * (the journal, the chain's run index, runs) — appends, rather than inserts into the middle of
 * full pages, which SQLite rebalances three pages at a time, each a page more per commit.
 */
function timeOrderedUuid(): string {
  const t = Date.now().toString(16).padStart(12, '0');
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${randomUUID().slice(15)}`;
}

/** Answers serialized into the journal (exact RTFS encoding). */
function encodeResolution(r: Resolution): string {
  if ('retry' in r) return JSON.stringify({ retry: true });
  if ('error' in r) return JSON.stringify({ error: errorToJson(r.error) });
  return JSON.stringify({ value: valueToJson(r.value) });
}

function decodeResolution(text: string, rt: Runtime): Resolution {
  const j = JSON.parse(text) as { retry?: boolean; error?: Json; value?: Json };
  if (j.retry) return { retry: true };
  if ('error' in j) return { error: valueFromJson(j.error as Json, rt) as ErrorValue };
  return { value: valueFromJson(j.value as Json, rt) };
}

function argsHash(capability: string, args: Value[]): string {
  return sha(`${capability}\n${JSON.stringify(args.map((a) => valueToJson(a)))}`);
}

/** Names a step of a run among the profiled ones. */
function profileKey(run: ActiveRun, stepPath: readonly string[]): string {
  return `${run.runId}|${JSON.stringify(stepPath)}`;
}

/** Readable error for the chain and for results. */
export function errorSummary(e: ErrorValue | RtfsError | CcosError | Error): RunResult['error'] {
  if (e instanceof ErrorValue) {
    const code = e.data.get(kw('code'));
    return { code: code instanceof Keyword ? code.name : e.type.name, message: e.message, hint: e.hint, file: e.pos?.file, line: e.pos?.line, col: e.pos?.col };
  }
  if (e instanceof RtfsError) return { code: e.code, message: e.message, hint: e.hint, file: e.pos?.file, line: e.pos?.line, col: e.pos?.col };
  if (e instanceof CcosError) return { code: e.code, message: e.message, hint: e.hint };
  return { code: 'internal', message: e.message };
}

/** A call's arguments as `pr-str` prints them as a vector (without building one: every call does this). */
function printArgs(args: readonly Value[]): string {
  return `[${args.map((a) => prStr(a)).join(' ')}]`;
}

/** A new action in a run's context (run, plan, intent, step path). */
function ctxNew(run: ActiveRun, type: NewAction['type'], stepPath: readonly string[], data: Record<string, Json>, extra: Partial<NewAction> = {}): NewAction {
  return { type, runId: run.runId, planId: run.planId, intentId: run.intentId, stepPath: [...stepPath], data, ...extra };
}

function clean<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

function stepOpt(scope: Scope | undefined, key: string): Value {
  if (!scope || !IMap.isMap(scope.opts)) return null;
  return (scope.opts as RMap).get(kw(key), null) as Value;
}

/** Listeners of chain actions (live step tree, library subscribers). */
export type ActionListener = (a: Action) => void;

export class Orchestrator {
  private readonly listeners = new Set<ActionListener>();
  /** Runs this process is driving now (cancel reaches them at once). */
  private readonly active = new Map<string, ActiveRun>();
  /** Steps whose profile has been recorded (run id | step path). */
  private readonly profiled = new Set<string>();
  /** The persist shared by the calls that start together (see `persistBarrier`). */
  private barrier: Promise<void> | null = null;
  /** Unit sources as checkpoints store them: JSON text and blob address, by source. */
  private readonly sourceBlobs = new Map<string, { json: string; address: string }>();
  /** Runs this process paused, with the checkpoint they paused at (their machines are current). */
  private readonly parked = new Map<string, { run: ActiveRun; checkpoint: string }>();
  /** Inserts a checkpoint row; captured for the redo log by hand (see `checkpoint`). */
  private readonly insertCheckpoint: Database.Statement;
  /** Writes a journal row; captured for the redo log by hand (see `journalRow`). */
  private readonly upsertJournal: Database.Statement;

  constructor(
    private readonly store: SqliteStore,
    private readonly chain: CausalChain,
    private readonly gate: Gate,
  ) {
    // A call's record found in a dead process's redo log: the call may have had its effect.
    store.onReplay(CALL_RECORD, (json) => {
      const [argsH, fields] = JSON.parse(json) as [string, Record<string, Json>];
      chain.appendRecorded(fields);
      const data = fields.data as { request: string; capability: string };
      this.journalRow(fields.run as string, data.request, 'call', 'started', null, data.capability, argsH);
    });
    store.onReplay(STARTED_RECORD, (json) => {
      const [runId, requestId, capability, argsH] = JSON.parse(json) as [string, string, string, string];
      this.journalRow(runId, requestId, 'call', 'started', null, capability, argsH);
    });
    this.upsertJournal = store.db.prepare(UPSERT_JOURNAL);
    store.onReplay(JOURNAL_RECORD, (json) => {
      const [runId, requestId, kind, capability, argsH, status, answer] = JSON.parse(json) as [string, string, string, string | null, string | null, JournalRow['status'], Json];
      this.journalRow(runId, requestId, kind, status, answer === null ? null : JSON.stringify(answer), capability, argsH);
    });
    this.insertCheckpoint = store.db.prepare(INSERT_CHECKPOINT);
    store.onReplay(CHECKPOINT_RECORD, (json) => {
      const [id, runId, created, reason, state] = JSON.parse(json) as [string, string, string, string, Json];
      this.insertCheckpoint.run(id, runId, created, reason, JSON.stringify(state));
    });
  }

  /** Subscribes to every action this orchestrator records; returns the unsubscribe function. */
  subscribe(l: ActionListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Appends an action and tells subscribers. Call inside `store.tx`. */
  record(a: NewAction): Action {
    const action = this.chain.append(a);
    for (const l of this.listeners) l(action);
    return action;
  }

  /** Appends two actions with one insert (see `CausalChain.appendPair`) and tells subscribers. */
  private recordPair(first: NewAction | DraftAction, second: (first: Action) => NewAction, firstRedone = false): void {
    const pair = this.chain.appendPair(first, second, firstRedone);
    for (const a of pair) for (const l of this.listeners) l(a);
  }

  /** Appends a drafted action alone (see `CausalChain.appendDraft`) and tells subscribers. */
  private recordDraft(d: DraftAction, redone: boolean): void {
    const action = this.chain.appendDraft(d, redone);
    for (const l of this.listeners) l(action);
  }

  private ctxAction(run: ActiveRun, type: NewAction['type'], stepPath: readonly string[], data: Record<string, Json>, extra: Partial<NewAction> = {}): Action {
    return this.record(ctxNew(run, type, stepPath, data, extra));
  }

  // -----------------------------------------------------------------------------------------------
  // Starting

  /** Compiles and starts a plan; returns when it completes, fails or pauses. */
  async start(source: string, file: string, opts: RunOptions = {}): Promise<RunResult> {
    const runtime = createRuntime();
    let inputs: RMap = IMap<Value, Value>();
    for (const [k, v] of Object.entries(opts.inputs ?? {})) inputs = inputs.set(kw(k), v);
    const runId = `run-${timeOrderedUuid()}`;
    const planId = `plan-${sha(source).slice(0, 16)}`;
    runtime.load(preamble(prStr(inputs), runId, planId, opts.intentId ?? null), '<input>');
    const unit = runtime.load(source, file); // compile errors throw here: nothing has run
    const now = isoNow();
    const machine = runtime.machine();
    if (opts.fuel !== undefined) machine.fuel = opts.fuel;
    const run: ActiveRun = { runId, planId, intentId: opts.intentId ?? null, options: opts, runtime, machine, fresh: true };
    runtime.runToCompletion(runtime.units[0].main); // defines `input`
    this.store.tx(() => {
      this.store.stmt('INSERT INTO runs (id, plan_id, intent_id, file, source, inputs, options, status, created, updated, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(runId, planId, run.intentId, file, source, prStr(inputs), JSON.stringify({ ...opts, inputs: undefined }), 'running', now, now, owner());
      this.ctxAction(run, 'PlanStarted', [], { file, source_sha256: sha(source), inputs: prStr(inputs) });
    });
    machine.start(unit.main);
    return this.drive(run);
  }

  // -----------------------------------------------------------------------------------------------
  // Resuming

  /** Continues a paused or crashed run (by run id or checkpoint id) in this process. */
  async resume(idOrCheckpoint: string, resumeOpts: ResumeOptions = {}): Promise<RunResult> {
    // A process that died after resuming this run may have logged work it never committed (its
    // claim too, so the run may still look paused): redo that first.
    this.store.recoverRedo();
    // The lease columns only: a parked run needs no more (the full row is read to restore one).
    const lease = (id: string): RunLease | undefined => this.store.stmt('SELECT id, status, checkpoint, owner FROM runs WHERE id = ?').get(id) as RunLease | undefined;
    let row = lease(idOrCheckpoint);
    let cpId: string | null = null;
    if (!row && idOrCheckpoint.startsWith('cp-')) {
      const cp = this.store.stmt('SELECT run_id FROM checkpoints WHERE id = ?').get(idOrCheckpoint) as { run_id: string } | undefined;
      if (cp) {
        row = lease(cp.run_id);
        cpId = idOrCheckpoint;
      }
    }
    if (!row) throw new CcosError('not-found', `no run or checkpoint ${idOrCheckpoint}`, { hint: 'list runs with `ccos runs list`' });
    if (row.status === 'completed' || row.status === 'failed' || row.status === 'cancelled') {
      throw new CcosError('run-finished', `run ${row.id} is already ${row.status}`, { hint: '`ccos runs show` shows its result; `ccos replay` re-checks it' });
    }
    // Before restoring or waiting for the write lock: a run another process drives is refused at once.
    this.checkLease(row);
    const checkpoint = cpId ?? row.checkpoint;
    const parked = this.parked.get(row.id);
    this.parked.delete(row.id);
    // The parked machine is exactly the checkpoint's state when nothing happened since the pause.
    const run = parked && parked.checkpoint === checkpoint && row.status === 'paused' ? parked.run : this.restore(this.runRow(row.id)!, checkpoint);
    run.resume = resumeOpts;
    this.store.deferredTx(() => {
      this.claim(row!, true);
      this.ctxAction(run, 'PlanResumed', [], { by: owner(), checkpoint });
    });
    return this.drive(run);
  }

  /** Rebuilds the machine of a run: from a checkpoint, or from the start (the journal answers). */
  private restore(row: RunRow, checkpoint: string | null): ActiveRun {
    const options = JSON.parse(row.options) as RunOptions;
    if (checkpoint) {
      const cp = this.store.stmt('SELECT state FROM checkpoints WHERE run_id = ? AND id = ?').get(row.id, checkpoint) as { state: string } | undefined;
      if (!cp) throw new CcosError('checkpoint', `checkpoint ${checkpoint} of run ${row.id} is missing`, { hint: 'resume by run id to use the latest checkpoint, or replay the run' });
      const { runtime, machine } = restoreMachine(this.withSources(JSON.parse(cp.state) as StoredState, checkpoint));
      return { runId: row.id, planId: row.plan_id, intentId: row.intent_id, options, runtime, machine, cancelling: options.cancelled };
    }
    const runtime = createRuntime();
    runtime.load(preamble(row.inputs, row.id, row.plan_id, row.intent_id), '<input>');
    const unit = runtime.load(row.source, row.file);
    runtime.runToCompletion(runtime.units[0].main);
    const machine = runtime.machine();
    if (options.fuel !== undefined) machine.fuel = options.fuel;
    machine.start(unit.main);
    return { runId: row.id, planId: row.plan_id, intentId: row.intent_id, options, runtime, machine, cancelling: options.cancelled };
  }

  /**
   * A stored checkpoint state with its units' sources put back (a state names each by its blob;
   * states written before that carry the source inline). A missing or altered source is refused.
   */
  private withSources(state: StoredState, checkpoint: string): MachineState {
    const units = state.units.map((u) => {
      if (u.source !== undefined) return { id: u.id, file: u.file, source: u.source };
      const source = u.sourceBlob ? this.chain.blobText(u.sourceBlob) : undefined;
      if (source === undefined) {
        throw new CcosError('checkpoint', `checkpoint ${checkpoint} names the source of unit ${u.id} (${u.file}) by ${u.sourceBlob ?? 'nothing'}, which is missing or altered`, { hint: '`ccos chain verify` checks every blob; resume from an earlier checkpoint, or restore the data dir from a backup' });
      }
      return { id: u.id, file: u.file, source: JSON.parse(source) as string };
    });
    return { ...state, units };
  }

  /** Takes the run's lease; refuses when a live process on this host holds it. */
  private claim(row: RunLease, markRunning = false): void {
    this.checkLease(row);
    if (markRunning) this.store.stmt("UPDATE runs SET owner = ?, status = 'running', waiting = NULL, updated = ? WHERE id = ?").run(owner(), isoNow(), row.id);
    else this.store.stmt('UPDATE runs SET owner = ? WHERE id = ?').run(owner(), row.id);
  }

  /** Refuses a run that this process, or another live one on this host, is driving. */
  private checkLease(row: RunLease): void {
    if (this.active.has(row.id)) throw new CcosError('run-busy', `run ${row.id} is being driven by this process`, { hint: 'wait for it to pause or finish' });
    if (row.owner && row.status === 'running') {
      const [pid, host] = row.owner.split('@');
      if (host === HOST && Number(pid) !== process.pid && processAlive(Number(pid))) {
        throw new CcosError('run-busy', `run ${row.id} is being driven by process ${pid}`, { hint: 'wait for it to pause or finish; `ccos cancel` stops it' });
      }
    }
  }

  runRow(id: string): RunRow | undefined {
    return this.store.stmt('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
  }

  // -----------------------------------------------------------------------------------------------
  // Driving

  private async drive(run: ActiveRun): Promise<RunResult> {
    this.active.set(run.runId, run);
    try {
      return await this.driveLoop(run);
    } finally {
      this.active.delete(run.runId);
    }
  }

  private async driveLoop(run: ActiveRun): Promise<RunResult> {
    // The run's row was just read (start, resume): the first look for a cancel can wait.
    let lastCancelCheck = performance.now();
    const inflight = new Map<string, Promise<{ id: string; res: Resolution | Pause }>>();
    const done = new Map<string, Resolution | Pause>();
    const waiting = new Map<string, Json>();
    let storeFailure: CcosError | null = null;
    const lostGroupsBefore = this.store.lostGroups;
    const flush = (): void => {
      const writes = run.pendingWrites?.splice(0) ?? [];
      if (writes.length) this.store.deferredTx(() => writes.forEach((w) => w()));
    };
    // Before the run ends, every call already started must be answered (and so journaled).
    const settle = async (): Promise<void> => {
      while (inflight.size) {
        const { id } = await Promise.race(inflight.values());
        inflight.delete(id);
      }
      flush();
    };
    for (;;) {
      // This process cancels through `cancelRequested`; another process by writing the run's
      // status, which is looked at every 20 ms at most.
      const now = performance.now();
      if (run.cancelRequested && !run.cancelling) this.beginCancel(run, new Set(inflight.keys()));
      else if (now - lastCancelCheck > 20) {
        lastCancelCheck = now;
        const status = (this.store.stmt('SELECT status FROM runs WHERE id = ?').get(run.runId) as { status: string }).status;
        if (status === 'cancelled' && !run.cancelling) this.beginCancel(run, new Set(inflight.keys()));
      }
      let out: Outcome;
      try {
        out = run.machine.run();
      } catch (e) {
        return this.finishFailed(run, e as Error);
      }
      if (out.status !== 'suspended') await settle();
      if (!run.cancelling && run.cancelRequested) {
        this.beginCancel(run);
        if (out.status === 'complete') return this.finishCancelled(run, null);
      }
      if (run.cancelling && (out.status === 'complete' || out.status === 'error')) return this.finishCancelled(run, out.status === 'error' ? out.error : null);
      if (out.status === 'complete') return this.finishCompleted(run, out.value);
      if (out.status === 'error') return this.finishFailed(run, out.error);
      if (out.status === 'out-of-fuel') return this.finishFailed(run, new RtfsError('fuel-exhausted', 'the plan ran out of fuel (a runaway loop or recursion?)', undefined, undefined, 'raise the fuel limit with --fuel, or fix the loop'));
      // One request and nothing else outstanding (a sequential plan): answered and delivered
      // directly, without the bookkeeping of concurrent requests below.
      if (out.requests.length === 1 && inflight.size === 0 && waiting.size === 0) {
        const req = out.requests[0];
        let res: Resolution | Pause;
        try {
          const answer = this.answer(run, req);
          res = answer instanceof Promise ? await answer : answer;
        } catch (e) {
          // A failing store (disk full, I/O) is not the call's answer: the run stops instead.
          if (isStoreFailure(e)) return this.stopForStore(run, e as CcosError, this.store.lostGroups !== lostGroupsBefore);
          res = { error: asError(e) };
        }
        flush();
        if (isPause(res)) waiting.set(req.id, res.waiting);
        else run.machine.resume([{ id: req.id, resolution: res }]);
        continue;
      }
      // Every request not yet being answered starts now; each answer is delivered as soon as it
      // arrives, so a branch of step.parallel never waits for a sibling's unrelated call.
      const starting = out.requests.filter((r) => !inflight.has(r.id) && !waiting.has(r.id));
      for (const r of starting) {
        const id = r.id;
        inflight.set(id, answerLater(() => this.answer(run, r, starting.length > 1)).then(
          (res) => (done.set(id, res), { id, res }),
          (e: unknown) => {
            // A failing store (disk full, I/O) is not the call's answer: the run stops instead.
            if (isStoreFailure(e)) storeFailure ??= e as CcosError;
            const res = { error: asError(e) } as Resolution;
            done.set(id, res);
            return { id, res };
          },
        ));
      }
      if (inflight.size === 0) {
        flush();
        // Everything left waits for a person.
        const w = [...waiting.values()];
        run.waitingIds = new Set(waiting.keys()); // a parked machine asks them again
        return this.pause(run, w.length === 1 ? w[0] : w);
      }
      await Promise.race(inflight.values());
      // Calls that finish together share one commit: gather what settles by the next turn.
      if (inflight.size > done.size) await new Promise((r) => setImmediate(r));
      const batch = [...done];
      done.clear();
      for (const [id] of batch) inflight.delete(id);
      if (storeFailure) {
        await settle();
        return this.stopForStore(run, storeFailure, this.store.lostGroups !== lostGroupsBefore);
      }
      flush();
      const pending = new Set(run.machine.pending().map((p) => p.id));
      const ready: { id: string; resolution: Resolution }[] = [];
      for (const [id, res] of batch) {
        if (isPause(res)) waiting.set(id, res.waiting);
        else if (pending.has(id)) ready.push({ id, resolution: res });
        // (an answer for a fiber that was cancelled meanwhile is journaled, and no longer awaited)
      }
      if (ready.length) run.machine.resume(ready);
    }
  }

  /**
   * The answer to one request: from the journal if it has one, else by doing the work.
   * `together`: other requests start in the same turn (with fenced durability their "started"
   * marks share one fdatasync).
   */
  private answer(run: ActiveRun, req: HostRequest, together = false): Answer {
    const j = run.fresh && !run.waitingIds?.has(req.id) ? undefined : (this.store.stmt('SELECT * FROM journal WHERE run_id = ? AND request_key = ?').get(run.runId, journalKey(req.id)) as JournalRow | undefined);
    if (j?.status === 'answered') return decodeResolution(j.answer!, run.runtime);
    switch (req.kind) {
      case 'contract':
        return this.contract(run, req);
      case 'step-start':
        return this.stepStart(run, req);
      case 'step-end':
        return this.stepEnd(run, req);
      case 'call':
        if (j?.status === 'started') return this.inFlightAfterCrash(run, req, j, true);
        // Waiting for an approval: ask the gate again (it may have been granted meanwhile).
        if (j?.status === 'waiting-approval') return this.call(run, req, false, true, together);
        if (j?.status === 'waiting') return this.answerWaiting(run, req, j);
        return this.call(run, req, false, true, together);
    }
  }

  private journal(run: ActiveRun, req: HostRequest, status: JournalRow['status'], answer: Resolution | null, capability?: string, argsH?: string): void {
    this.journalRow(run.runId, req.id, req.kind, status, answer ? encodeResolution(answer) : null, capability ?? null, argsH ?? null);
  }

  private journalRow(runId: string, requestId: string, kind: string, status: JournalRow['status'], answer: string | null, capability: string | null, argsH: string | null): void {
    const { changes } = this.upsertJournal.run(runId, journalKey(requestId), requestId, kind, capability, argsH, status, answer);
    // In the redo log: the answer as the JSON it is (not escaped into a string, and no SQL text);
    // the kind, status and hash need no escaping (a fixed word, hex).
    const J = JSON.stringify;
    this.store.capture(JOURNAL_RECORD, `[${J(runId)},${J(requestId)},"${kind}",${capability === null ? 'null' : J(capability)},${argsH === null ? 'null' : `"${argsH}"`},"${status}",${answer ?? 'null'}]`, changes);
  }

  /**
   * Records a call as starting: its action (drafted) and "started" mark go to the redo log before
   * its effect, and to SQLite only if the call is still in flight when the group commits (see
   * `store.provisional`); else with its result, or before its pause or its own calls (see `call`).
   */
  private callStarting(run: ActiveRun, req: HostRequest & { kind: 'call' }, call: DraftAction, argsH: string, durableNow: boolean): Provisional {
    // Both in one record, `[args hash, action]`: the hash is hex and the body JSON already.
    const record = `["${argsH}",${call.body}]`;
    const write = (): void => {
      this.recordDraft(call, false);
      this.journal(run, req, 'started', null, req.capability, argsH);
    };
    return durableNow ? this.store.durableProvisional(CALL_RECORD, record, write) : this.store.provisional(CALL_RECORD, record, write);
  }

  /** Evaluates a contract predicate in a pure machine and records the check. */
  private contract(run: ActiveRun, req: HostRequest & { kind: 'contract' }): Resolution {
    // The predicate is identified by its compiled code (a content-derived id), hashed.
    const code = req.fn instanceof Closure ? req.fn.code.id : prStr(req.fn);
    const predicate = `sha256:${sha(code)}`;
    const started = performance.now();
    const result = evaluateContract(run.runtime, req.fn, req.args, () => performance.now() - started > CONTRACT_TIME_LIMIT_MS);
    const outcome = 'error' in result ? 'error' : 'value' in result && truthy(result.value) ? 'passed' : 'failed';
    this.store.deferredTx(() => {
      const s = this.ctxAction(run, 'ContractCheckStarted', req.stepPath, { phase: req.phase, predicate, args: printArgs(req.args).slice(0, 2000) });
      this.ctxAction(run, 'ContractCheckCompleted', req.stepPath, clean({ phase: req.phase, predicate, outcome, error: 'error' in result ? (errorSummary(result.error) as unknown as Json) : undefined }) as Record<string, Json>, { parentId: s.id, durationMs: performance.now() - started });
      this.journal(run, req, 'answered', result);
    });
    return result;
  }

  private stepStart(run: ActiveRun, req: HostRequest & { kind: 'step-start' }): Resolution {
    const answer: Resolution = { value: null };
    const primary = compensationOf(req.opts);
    this.store.deferredTx(() => {
      if (primary !== null) {
        const done = this.store.stmt("SELECT id FROM actions WHERE run_id = ? AND type = 'StepCompleted' AND json_extract(body, '$.data.name') = ? ORDER BY seq DESC LIMIT 1").get(run.runId, primary) as { id: string } | undefined;
        this.ctxAction(run, 'CompensationStarted', req.stepPath, { name: req.name, primary }, { parentId: done?.id ?? null });
      } else {
        this.ctxAction(run, 'StepStarted', req.stepPath, clean({ name: req.name, options: req.opts === null ? undefined : prStr(req.opts), meta: req.meta === null ? undefined : prStr(req.meta) }) as Record<string, Json>);
      }
      this.journal(run, req, 'answered', answer);
    });
    this.checkpoint(run, 'step-start');
    return answer;
  }

  /**
   * A compensation failed: the run is quarantined — paused for a person. Resuming retries the
   * compensation; `--answer` marks it done by hand; `--fail` gives up on it (the failure goes on).
   */
  private compensationFailed(run: ActiveRun, req: HostRequest & { kind: 'step-end' }, primary: string, error: ErrorValue): Resolution | Pause {
    const r = run.resume;
    if (!r) {
      this.store.tx(() => this.ctxAction(run, 'CompensationCompleted', req.stepPath, { name: req.name, primary, ok: false, error: errorSummary(error) as unknown as Json, quarantined: true }));
      return { pause: true, waiting: { kind: 'compensation-failed', primary, step: [...req.stepPath], error: error.message, hint: 'fix the cause, then `ccos resume RUN` retries the compensation; `--answer VALUE` marks it done by hand; `--fail MESSAGE` gives up on it' } };
    }
    run.resume = undefined; // one decision per failure
    const answer: Resolution = r.fail !== undefined ? { error: new RtfsError('compensation-failed', r.fail) } : r.answer !== undefined ? { value: r.answer } : { retry: true };
    this.store.tx(() => {
      this.ctxAction(run, 'StepRetrying', req.stepPath, clean({ name: req.name, compensation_of: primary, decision: 'retry' in answer ? 'retry' : 'value' in answer ? 'marked done by hand' : 'given up', reason: r.fail }) as Record<string, Json>);
      this.journal(run, req, 'answered', answer);
    });
    return answer;
  }

  private async stepEnd(run: ActiveRun, req: HostRequest & { kind: 'step-end' }): Promise<Resolution | Pause> {
    const scope = req.scopes[req.scopes.length - 1];
    const primary = compensationOf(scope?.opts ?? null);
    if (req.outcome.ok) {
      const answer: Resolution = { value: req.outcome.value };
      this.store.deferredTx(() => {
        if (primary !== null) this.ctxAction(run, 'CompensationCompleted', req.stepPath, { name: req.name, primary, ok: true });
        else this.ctxAction(run, 'StepCompleted', req.stepPath, { name: req.name, value: prStr(req.outcome.ok ? req.outcome.value : null).slice(0, 2000) });
        this.journal(run, req, 'answered', answer);
      });
      this.checkpoint(run, 'step-end');
      return answer;
    }
    const error = req.outcome.error;
    if (primary !== null) return this.compensationFailed(run, req, primary, error);
    const retries = stepOpt(scope, 'retries');
    const max = IMap.isMap(retries) ? Number((retries as RMap).get(kw('max'), 0)) : 0;
    const backoff = IMap.isMap(retries) ? Number((retries as RMap).get(kw('backoff-ms'), 0)) : 0;
    const attempt = scope?.attempt ?? 0;
    // A call whose outcome is unknown (timed out, not idempotent, no key) is never re-run by a retry.
    const unknownOutcome = error.data.get(kw('outcome-unknown'), false) === true;
    if (attempt < max && !unknownOutcome) {
      const answer: Resolution = { retry: true };
      const delay = backoff * 2 ** attempt;
      this.store.deferredTx(() => {
        this.ctxAction(run, 'StepRetrying', req.stepPath, { name: req.name, attempt: attempt + 1, of: max, backoff_ms: delay, error: errorSummary(error) as unknown as Json });
        this.journal(run, req, 'answered', answer);
      });
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      return answer;
    }
    const onFail = stepOpt(scope, 'on-fail');
    const cont = onFail instanceof Keyword && onFail.name === 'continue';
    const answer: Resolution = cont ? { value: null } : { error };
    this.store.deferredTx(() => {
      this.ctxAction(run, 'StepFailed', req.stepPath, { name: req.name, error: errorSummary(error) as unknown as Json, continued: cont });
      this.journal(run, req, 'answered', answer);
    });
    return answer;
  }

  /** A governed capability call: gate, "started" on disk before the effect, result journaled before use. */
  private call(run: ActiveRun, req: HostRequest & { kind: 'call' }, retryOfUnknown = false, groupCommit = false, together = false): Answer {
    const h = argsHash(req.capability, req.args);
    const key = idempotencyKey(run, req);
    if (key) {
      const prior = this.store.stmt('SELECT capability, args_hash, answer FROM idempotency WHERE key = ?').get(key.full) as { capability: string; args_hash: string; answer: string } | undefined;
      if (prior) {
        const answer: Resolution =
          prior.capability === req.capability && prior.args_hash === h
            ? decodeResolution(prior.answer, run.runtime)
            : { error: new RtfsError('idempotency-conflict', `idempotency key "${key.key}" (${key.scope} scope) was already used for ${prior.capability} with other arguments`, req.pos, undefined, 'use a key derived from the arguments, or a new key for a new operation') };
        this.store.deferredTx(() => {
          this.ctxAction(run, 'CapabilityResult', req.stepPath, 'value' in answer ? { capability: req.capability, ok: true, result: prStr(answer.value), deduplicated: true, idempotency_key: key.key } : { capability: req.capability, ok: false, error: errorSummary((answer as { error: RtfsError }).error) as unknown as Json, idempotency_key: key.key });
          this.journal(run, req, 'answered', answer, req.capability, h);
        });
        return answer;
      }
    }
    /** An allowed idempotent call: its call action is written with its result. */
    let deferred: Decision | undefined;
    /** An allowed non-idempotent call: its call action, drafted before the effect (see `callStarting`). */
    let draft: DraftAction | undefined;
    let started: Provisional | undefined;
    // A denial is its own PolicyDecision action; an allowed call carries its decision (rule and
    // rationale) inside the CapabilityCall action, which saves a third of the chain writes.
    const callAction = (decision: Decision, stepPath: readonly string[]): NewAction =>
      // (Keys in canonical order: the chain then encodes the data without sorting them.)
      ctxNew(run, 'CapabilityCall', stepPath, clean({ args: redact(printArgs(req.args)), capability: req.capability, decision: { decision: 'allow', rationale: decision.rationale, rule: decision.rule }, request: req.id, retry_after_crash: retryOfUnknown || undefined }) as Record<string, Json>);
    /** An allowed non-idempotent call: its action drafted and recorded as starting (see `callStarting`). */
    const startCall = (decision: Decision, stepPath: readonly string[], durableNow: boolean): void => {
      draft = this.chain.draft(callAction(decision, stepPath));
      started = this.callStarting(run, req, draft, h, durableNow);
    };
    const recordDecision = (decision: Decision, stepPath: readonly string[]): void => {
      if (decision.decision !== 'allow') {
        this.ctxAction(run, 'PolicyDecision', stepPath, decision as unknown as Record<string, Json>);
        return;
      }
      this.recordStepProfile(run, req, stepPath);
      startCall(decision, stepPath, false);
    };
    /**
     * Puts the drafted call action on the chain — with its result as one insert, if given — unless
     * it is there already (a commit during the effect, a redo of its group, or an earlier caller
     * put it there; then the result alone). Call inside a body, then `settle` its provisional write
     * as the body's last step (a body that fails takes the settling back).
     */
    const draftOnChain = (result?: (call: Action) => NewAction): void => {
      const s = started!;
      if (s.settled || s.state === 'written') {
        if (result) this.record(result(draft!.action));
        return;
      }
      // Pending: the starting record, in the open group, redoes the action after a crash.
      if (result) this.recordPair(draft!, result, s.state === 'pending');
      else this.recordDraft(draft!, s.state === 'pending');
    };
    const nested = async (capability: string, args: Value[], subId: string): Promise<Value> => {
      // The chain shows this call before the calls it makes.
      if (draft)
        this.store.deferredTx(() => {
          draftOnChain();
          this.store.settle(started!);
        });
      const sub = { ...req, id: `${req.id}/${subId}`, capability, args, meta: null };
      const j = run.fresh && !run.waitingIds?.has(req.id) ? undefined : (this.store.stmt('SELECT * FROM journal WHERE run_id = ? AND request_key = ?').get(run.runId, journalKey(sub.id)) as JournalRow | undefined);
      const r = j?.status === 'answered' ? decodeResolution(j.answer!, run.runtime) : j?.status === 'started' ? await this.inFlightAfterCrash(run, sub, j) : await this.call(run, sub);
      if (isPause(r)) throw new CcosError('unsupported', `${capability} needs a person, which a capability's own calls cannot wait for`);
      if ('error' in r) throw r.error;
      if ('retry' in r) throw new CcosError('internal', 'unexpected retry answer');
      return r.value;
    };
    return this.gate.call<Pause>(
      { run, request: req, retry: retryOfUnknown, nested, keyed: key !== null },
      {
        beforeEffect: (decision: Decision, stepPath: readonly string[]) => {
          // An idempotent call needs no durable "started" mark: if the process dies during it,
          // running it again is safe. Its decision and call are written with its result.
          if (decision.decision === 'allow' && this.gate.manifest(req.capability)?.idempotent) {
            deferred = decision;
            return undefined;
          }
          // With fenced durability, calls starting together (a step.parallel) share the fdatasync
          // of their "started" marks, made before any of their effects begins.
          if (together && this.store.fenced && decision.decision === 'allow') {
            this.store.deferredTx(() => recordDecision(decision, stepPath), { persistLater: true });
            return this.persistBarrier();
          }
          // The call, and every answer before it, go to the redo log before the effect starts:
          // in a transaction body if it writes rows too (a denial, a step profile).
          if (decision.decision === 'allow' && !this.profileDue(run, req, stepPath)) startCall(decision, stepPath, true);
          else this.store.durableTx(() => recordDecision(decision, stepPath), { fence: true });
        },
        afterEffect: (result, durationMs) => {
          const write = (): void => {
            const answer: Resolution = 'error' in result ? { error: result.error } : { value: result.value };
            const manifest = this.gate.manifest(req.capability);
            const data: Record<string, Json> = 'error' in result ? { capability: req.capability, ok: false, error: errorSummary(result.error) as unknown as Json } : { capability: req.capability, ok: true, result: prStr(result.value) };
            if ('value' in result && result.value instanceof Labeled) data.labels = [...result.value.labels].sort();
            if (manifest?.dpEpsilon) {
              data.epsilon = manifest.dpEpsilon;
              const first = req.args[0];
              const dataset = IMap.isMap(first) ? (first as RMap).get(kw('dataset'), null) : null;
              if (typeof dataset === 'string' || dataset instanceof Keyword) data.dataset = dataset instanceof Keyword ? dataset.name : dataset;
            }
            if ('value' in result && result.tokens !== undefined) data.tokens = result.tokens;
            const resultAction = (parentId: string | null): NewAction =>
              ctxNew(run, 'CapabilityResult', req.stepPath, key ? { ...data, idempotency_key: key.key } : data, { parentId, durationMs, costUsd: 'value' in result ? result.costUsd : undefined });
            if (deferred) {
              // An idempotent call: its call and result go on the chain together, in one insert.
              this.recordStepProfile(run, req, req.stepPath);
              this.recordPair(callAction(deferred, req.stepPath), (c) => resultAction(c.id));
            } else draftOnChain((c) => resultAction(c.id));
            this.journal(run, req, 'answered', answer, req.capability, h);
            if (key && 'value' in answer) this.store.stmt('INSERT OR IGNORE INTO idempotency (key, capability, args_hash, answer, run_id, created) VALUES (?, ?, ?, ?, ?, ?)').run(key.full, req.capability, h, encodeResolution(answer), run.runId, isoNow());
            if (draft) this.store.settle(started!);
          };
          // In the drive loop the write joins the batch written before the answers are delivered;
          // a nested call (inside an RTFS capability) is used at once, so it is written now.
          if (groupCommit) (run.pendingWrites ??= []).push(write);
          else this.store.deferredTx(write);
        },
        denied: (error) => {
          const answer: Resolution = { error };
          this.store.deferredTx(() => this.journal(run, req, 'answered', answer, req.capability, h));
          return answer;
        },
        waiting: (waiting) => {
          const forApproval = (waiting as { kind?: string }).kind === 'approval';
          this.store.deferredTx(() => {
            // The call is on the chain before the pause.
            if (deferred) {
              this.recordStepProfile(run, req, req.stepPath);
              this.record(callAction(deferred, req.stepPath));
            } else if (draft) draftOnChain();
            this.journal(run, req, forApproval ? 'waiting-approval' : 'waiting', null, req.capability, h);
            if (draft) this.store.settle(started!);
          });
          return { pause: true, waiting } as Pause;
        },
      },
    );
  }

  /**
   * Resolves once everything written so far is on disk: by one synced `persist`, after every call
   * that started in this turn of the event loop has written its "started" mark (fenced durability).
   */
  private persistBarrier(): Promise<void> {
    this.barrier ??= new Promise<void>((resolve, reject) =>
      setImmediate(() => {
        this.barrier = null;
        try {
          this.store.persist(true);
          resolve();
        } catch (e) {
          reject(e);
        }
      }),
    );
    return this.barrier;
  }

  /**
   * Records, once per step of a run, the profile derived for its first capability with effects:
   * security level and isolation from the effects and the intent's constraints (seed 003 §1.e).
   */
  private recordStepProfile(run: ActiveRun, req: HostRequest & { kind: 'call' }, stepPath: readonly string[]): void {
    if (!this.profileDue(run, req, stepPath)) return;
    const manifest = this.gate.manifest(req.capability)!;
    this.profiled.add(profileKey(run, stepPath));
    if (this.profiled.size > 10_000) this.profiled.clear();
    const intent = run.intentId ? (this.store.stmt('SELECT constraints FROM intents WHERE id = ?').get(run.intentId) as { constraints: string } | undefined) : undefined;
    const profile = deriveStepProfile(manifest, intent ? JSON.parse(intent.constraints) : {}, { workspaceRoot: this.gate.workspaceRoot });
    this.ctxAction(run, 'StepProfileDerived', stepPath, { capability: manifest.id, security_level: profile.securityLevel, isolation: profile.isolation, network: profile.network, fs_read: profile.fsRead, fs_write: profile.fsWrite, reasons: profile.reasons });
  }

  /** Whether a call's step still needs its profile recorded (see `recordStepProfile`). */
  private profileDue(run: ActiveRun, req: HostRequest & { kind: 'call' }, stepPath: readonly string[]): boolean {
    const manifest = this.gate.manifest(req.capability);
    if (!manifest || stepPath.length === 0 || (manifest.effects.length === 0 && manifest.provider.kind !== 'sandbox')) return false;
    return !this.profiled.has(profileKey(run, stepPath));
  }

  /** A call journaled as started but never answered: the process died during it. */
  private async inFlightAfterCrash(run: ActiveRun, req: HostRequest & { kind: 'call' }, j: JournalRow, groupCommit = false): Promise<Resolution | Pause> {
    const manifest = this.gate.manifest(req.capability);
    const decision = run.resume?.decisions?.[req.id];
    if (decision && 'retry' in decision) return this.call(run, req, true, groupCommit);
    if (decision) return this.answerWaiting(run, req, j);
    if (j.args_hash !== argsHash(req.capability, req.args)) {
      throw new CcosError('replay-divergence', `request ${req.id} asks ${req.capability} with other arguments than journaled`, { hint: 'the plan or its inputs changed since the run started' });
    }
    // An idempotent capability, or a call with an idempotency key (which the provider receives),
    // may run again; anything else waits for a person.
    if (manifest?.idempotent || idempotencyKey(run, req) !== null || run.resume?.retryUnknown) return this.call(run, req, true, groupCommit);
    if (run.resume?.answer !== undefined || run.resume?.fail !== undefined) return this.answerWaiting(run, req, j);
    return { pause: true, waiting: { kind: 'outcome-unknown', capability: req.capability, request: req.id, step: [...req.stepPath], hint: 'the process stopped while this non-idempotent call ran; check whether it took effect, then `ccos resume RUN --retry-unknown` or `--answer VALUE` or `--fail MESSAGE`' } };
  }

  /** A call waiting on a person: answered by `ccos resume --answer/--fail`, else still paused. */
  private answerWaiting(run: ActiveRun, req: HostRequest & { kind: 'call' }, j: JournalRow): Resolution | Pause {
    const own = run.resume?.decisions?.[req.id];
    if (own && !('retry' in own)) {
      const answer: Resolution = 'fail' in own ? { error: new RtfsError('rejected', own.fail) } : { value: own.answer };
      this.store.deferredTx(() => {
        this.ctxAction(run, 'CapabilityResult', req.stepPath, 'value' in answer ? { answered_by: 'resume', capability: req.capability, ok: true, result: prStr(answer.value) } : { answered_by: 'resume', capability: req.capability, error: (own as { fail: string }).fail, ok: false });
        this.journal(run, req, 'answered', answer, req.capability, j.args_hash ?? undefined);
      });
      return answer;
    }
    const r = run.resume;
    if (r?.answer === undefined && r?.fail === undefined) {
      return { pause: true, waiting: { kind: 'answer', capability: req.capability, request: req.id, args: printArgs(req.args) } };
    }
    const answer: Resolution = r.fail !== undefined ? { error: new RtfsError('rejected', r.fail) } : { value: r.answer! };
    this.store.deferredTx(() => {
      this.ctxAction(run, 'CapabilityResult', req.stepPath, 'value' in answer ? { answered_by: 'resume', capability: req.capability, ok: true, result: prStr(answer.value) } : { answered_by: 'resume', capability: req.capability, error: r.fail!, ok: false });
      this.journal(run, req, 'answered', answer, req.capability, j.args_hash ?? undefined);
    });
    // One answer serves one waiting call.
    run.resume = { ...r, answer: undefined, fail: undefined };
    return answer;
  }

  // -----------------------------------------------------------------------------------------------
  // Checkpoints and endings

  /**
   * Saves the machine (suspended, requests pending) as `cp-<sha256>` and makes it the run's
   * checkpoint; returns the id and size. A pause (`forPause`) names it in its own PlanPaused
   * action and run update instead of a CheckpointCreated action and a run update of its own.
   *
   * Each unit's source is stored once, as a content-addressed blob, and the state names it by
   * hash (`sourceBlob`): a plan's source would otherwise be repeated in every checkpoint, at every
   * pause and step boundary — half of a typical state. The id still covers the source, through
   * its hash.
   */
  checkpoint(run: ActiveRun, reason: string, forPause = false): { id: string; bytes: number } {
    const saved = saveMachine(run.runtime, run.machine);
    const sources = saved.units.map((u) => {
      let blob = this.sourceBlobs.get(u.source);
      if (!blob) {
        if (this.sourceBlobs.size >= 256) this.sourceBlobs.clear();
        const json = JSON.stringify(u.source);
        this.sourceBlobs.set(u.source, (blob = { json, address: blobAddress(json) }));
      }
      return blob;
    });
    const units: StoredState['units'] = saved.units.map((u, i) => ({ id: u.id, file: u.file, sourceBlob: sources[i].address }));
    const state = JSON.stringify({ ...saved, units });
    const id = `cp-${sha(state)}`;
    this.store.deferredTx(() => {
      for (const b of sources) this.chain.storeBlob(b.json, b.address);
      const created = isoNow();
      const { changes } = this.insertCheckpoint.run(id, run.runId, created, reason, state);
      // In the redo log the state goes as the JSON it is, not escaped into a string: it is the
      // largest record of a pause, and escaping it cost more than writing it.
      this.store.capture(CHECKPOINT_RECORD, `[${JSON.stringify(id)},${JSON.stringify(run.runId)},${JSON.stringify(created)},${JSON.stringify(reason)},${state}]`, changes);
      if (forPause) return;
      this.store.stmt('UPDATE runs SET checkpoint = ?, updated = ? WHERE id = ?').run(id, isoNow(), run.runId);
      this.ctxAction(run, 'CheckpointCreated', [], { checkpoint: id, reason, bytes: state.length });
    });
    return { id, bytes: state.length };
  }

  /**
   * The store failed while answering (disk full, I/O error): the run pauses where it is, if that
   * can be recorded, and the request that failed is asked again on resume. If answers the machine
   * has already used were lost with a rolled-back group (`lostWrites`), or the pause cannot be
   * written, the error goes up instead and the run is left as after a crash: resuming restarts it
   * from what is durable.
   */
  private stopForStore(run: ActiveRun, e: CcosError, lostWrites: boolean): RunResult {
    if (lostWrites) throw e;
    try {
      return this.pause(run, { kind: 'store-failure', error: e.message, hint: e.hint ?? 'fix the storage problem, then `ccos resume RUN`' });
    } catch {
      throw e;
    }
  }

  /**
   * Pauses a run: its checkpoint and status go to the redo log at once (a crash keeps the run
   * paused) and are committed with the group, within `groupCommitMs` (another process sees the
   * run as paused from then on).
   */
  private pause(run: ActiveRun, waiting: Json): RunResult {
    const cp = this.store.durableTx(() => {
      const { id, bytes } = this.checkpoint(run, 'pause', true);
      this.ctxAction(run, 'PlanPaused', [], { checkpoint: id, checkpoint_bytes: bytes, waiting });
      this.store.stmt("UPDATE runs SET status = 'paused', checkpoint = ?, waiting = ?, owner = NULL, updated = ? WHERE id = ?").run(id, JSON.stringify(waiting), isoNow(), run.runId);
      this.chain.sealSoon();
      return id;
    });
    // A resume in this process continues this very machine instead of restoring the checkpoint.
    this.parked.set(run.runId, { run, checkpoint: cp });
    if (this.parked.size > 64) this.parked.delete(this.parked.keys().next().value!);
    return { runId: run.runId, status: 'paused', waiting, checkpoint: cp };
  }

  private finishCompleted(run: ActiveRun, value: Value): RunResult {
    this.store.tx(() => {
      this.ctxAction(run, 'PlanCompleted', [], { result: prStr(value) });
      this.store.stmt("UPDATE runs SET status = 'completed', result = ?, owner = NULL, waiting = NULL, updated = ? WHERE id = ?").run(JSON.stringify(valueToJson(value)), isoNow(), run.runId);
      this.chain.seal();
    });
    return { runId: run.runId, status: 'completed', value };
  }

  private finishFailed(run: ActiveRun, e: ErrorValue | Error): RunResult {
    const error = errorSummary(e as ErrorValue);
    this.store.tx(() => {
      this.ctxAction(run, 'PlanAborted', [], { error: error as unknown as Json });
      this.store.stmt("UPDATE runs SET status = 'failed', error = ?, owner = NULL, updated = ? WHERE id = ?").run(JSON.stringify(error), isoNow(), run.runId);
      this.chain.seal();
    });
    return { runId: run.runId, status: 'failed', error };
  }

  /** Starts unwinding a run: every fiber raises `:cancelled`; compensations run on the way out. */
  private beginCancel(run: ActiveRun, inFlight: ReadonlySet<string> = new Set()): void {
    run.cancelling = true;
    run.machine.cancel(inFlight);
    const options = { ...run.options, cancelled: true };
    this.store.stmt('UPDATE runs SET options = ? WHERE id = ?').run(JSON.stringify({ ...options, inputs: undefined }), run.runId);
  }

  private finishCancelled(run: ActiveRun, error: ErrorValue | null): RunResult {
    const code = error?.data.get(kw('code'));
    const clean = !error || (code instanceof Keyword && code.name === 'cancelled');
    this.store.tx(() => {
      this.ctxAction(run, 'PlanCancelled', [], clean ? { by: owner(), compensated: true } : { by: owner(), compensated: false, error: errorSummary(error!) as unknown as Json });
      this.store.stmt("UPDATE runs SET status = 'cancelled', owner = NULL, waiting = NULL, updated = ? WHERE id = ?").run(isoNow(), run.runId);
      this.chain.seal();
    });
    return { runId: run.runId, status: 'cancelled', ...(clean ? {} : { error: errorSummary(error!) }) };
  }

  /**
   * Cancels a run. Its scopes unwind and run their compensations (newest first), through the gate
   * like any call; then the run ends as cancelled. A run driven by another process is asked to
   * cancel and does so at its next request.
   */
  async cancel(runId: string): Promise<RunResult> {
    this.store.recoverRedo(); // as in `resume`: what a dead process did with the run comes first
    const row = this.runRow(runId);
    if (!row) throw new CcosError('not-found', `no run ${runId}`, { hint: 'list runs with `ccos runs list`' });
    if (row.status === 'completed' || row.status === 'failed' || row.status === 'cancelled') throw new CcosError('run-finished', `run ${runId} is already ${row.status}`);
    const mine = this.active.get(runId);
    if (mine) {
      // Driven here: the driver stops before its next request and unwinds.
      mine.cancelRequested = true;
      this.store.stmt("UPDATE runs SET status = 'cancelled', updated = ? WHERE id = ?").run(isoNow(), runId);
      return { runId, status: 'cancelled' };
    }
    if (row.status === 'running' && row.owner && row.owner !== owner()) {
      const [pid, host] = row.owner.split('@');
      if (host === HOST && processAlive(Number(pid))) {
        this.store.stmt("UPDATE runs SET status = 'cancelled', updated = ? WHERE id = ?").run(isoNow(), runId);
        return { runId, status: 'cancelled' };
      }
    }
    this.claim(row);
    const run = this.restore(row, row.checkpoint);
    this.store.tx(() => {
      this.ctxAction(run, 'PlanResumed', [], { checkpoint: row.checkpoint, by: owner(), reason: 'cancel' });
      this.store.stmt("UPDATE runs SET status = 'running', waiting = NULL, updated = ? WHERE id = ?").run(isoNow(), runId);
    });
    this.beginCancel(run);
    return this.drive(run);
  }

  // -----------------------------------------------------------------------------------------------
  // Replay

  /**
   * Re-executes a run from its source with every answer taken from the journal and no effects;
   * reports `identical`, or the first divergence.
   */
  replay(runId: string): { identical: boolean; requests: number; divergence?: string; result?: string } {
    this.store.recoverRedo(); // as in `resume`: what a dead process did with the run comes first
    const row = this.runRow(runId);
    if (!row) throw new CcosError('not-found', `no run ${runId}`);
    const run = this.restore(row, null);
    const journal = new Map((this.store.stmt('SELECT * FROM journal WHERE run_id = ?').all(runId) as JournalRow[]).map((j) => [j.request_id, j]));
    let requests = 0;
    for (;;) {
      const out = run.machine.run();
      if (out.status === 'suspended') {
        const answers: { id: string; resolution: Resolution }[] = [];
        for (const r of out.requests) {
          requests++;
          const j = journal.get(r.id);
          if (!j || j.status !== 'answered') {
            if (row.status === 'paused' || row.status === 'running') return { identical: true, requests: requests - 1, result: `(run is ${row.status}; replayed up to request ${r.id})` };
            return { identical: false, requests, divergence: `request ${r.id} (${r.kind}${r.kind === 'call' ? ' ' + r.capability : ''}) has no journaled answer` };
          }
          if (r.kind === 'call' && j.args_hash !== argsHash(r.capability, r.args)) {
            return { identical: false, requests, divergence: `request ${r.id}: ${r.capability} called with other arguments than journaled` };
          }
          if (r.kind !== j.kind) return { identical: false, requests, divergence: `request ${r.id} is a ${r.kind}, the journal has a ${j.kind}` };
          const journaled = decodeResolution(j.answer!, run.runtime);
          // A completed step's value is recomputed by the replay, not taken on trust.
          if (r.kind === 'step-end' && r.outcome.ok && 'value' in journaled && prStr(journaled.value) !== prStr(r.outcome.value)) {
            return { identical: false, requests, divergence: `step ${r.name} (request ${r.id}) now ends with ${prStr(r.outcome.value)}, the journal recorded ${prStr(journaled.value)}` };
          }
          answers.push({ id: r.id, resolution: journaled });
        }
        run.machine.resume(answers);
        continue;
      }
      const recorded = row.status === 'completed' ? prStr(valueFromJson(JSON.parse(row.result!) as Json, run.runtime)) : null;
      if (out.status === 'complete') {
        const got = prStr(out.value);
        if (recorded !== null && got !== recorded) return { identical: false, requests, divergence: `final value ${got} differs from the recorded ${recorded}` };
        if (row.status === 'failed') return { identical: false, requests, divergence: 'the run failed, its replay completed' };
        return { identical: true, requests, result: got };
      }
      const err = out.status === 'error' ? out.error.message : 'out of fuel';
      if (row.status === 'failed') return { identical: true, requests, result: `failed: ${err}` };
      return { identical: false, requests, divergence: `replay failed (${err}) where the run was ${row.status}` };
    }
  }
}

/**
 * What a plan sees besides its own code: `input` (the run's inputs) and `context` (the run's
 * identity, as the seeds' execution contexts describe it).
 */
function preamble(inputs: string, runId: string, planId: string, intentId: string | null): string {
  return `(def input (quote ${inputs}))\n(def context {:run-id ${JSON.stringify(runId)} :plan-id ${JSON.stringify(planId)} :intent-id ${intentId === null ? 'nil' : JSON.stringify(intentId)}})`;
}

/**
 * The idempotency key of a call: its own `^{:idempotency {:key .. :scope ..}}`, else the innermost
 * enclosing step's (suffixed with the capability, so one step key covers its different calls).
 * Scopes: `:plan` (default: this plan, across its runs), `:intent`, `:global`.
 */
function idempotencyKey(run: ActiveRun, req: HostRequest & { kind: 'call' }): { key: string; scope: string; full: string } | null {
  const read = (meta: Value, suffix: string): { key: string; scope: string; full: string } | null => {
    if (!IMap.isMap(meta)) return null;
    const spec = (meta as RMap).get(kw('idempotency'), null);
    if (!IMap.isMap(spec)) return null;
    const k = (spec as RMap).get(kw('key'), null);
    if (k === null) return null;
    const key = (typeof k === 'string' ? k : prStr(k)) + suffix;
    const sc = (spec as RMap).get(kw('scope'), kw('plan'));
    const scope = sc instanceof Keyword ? sc.name : String(sc);
    const owner = scope === 'global' ? 'global' : scope === 'intent' ? `intent:${run.intentId ?? run.planId}` : `plan:${run.planId}`;
    return { key, scope, full: `${owner}:${key}` };
  };
  const own = read(req.meta, '');
  if (own) return own;
  for (let i = req.scopes.length - 1; i >= 0; i--) {
    const k = read(req.scopes[i].meta, `/${req.capability}`);
    if (k) return k;
  }
  return null;
}

/** The primary step a compensation step undoes (its `:compensation-of` option), or null. */
function compensationOf(opts: Value): string | null {
  if (!IMap.isMap(opts)) return null;
  const p = (opts as RMap).get(kw('compensation-of'), null);
  return typeof p === 'string' ? p : null;
}

function asError(e: unknown): ErrorValue | RtfsError {
  if (e instanceof ErrorValue || e instanceof RtfsError) return e;
  if (e instanceof CcosError) return new RtfsError(e.code, e.message, undefined, undefined, e.hint);
  return new RtfsError('host', e instanceof Error ? e.message : String(e));
}

export { PauseRun };
