/**
 * The suspendable RTFS machine.
 *
 * Owns: executing bytecode with an explicit stack (no JS recursion per RTFS call), fibers for
 * `step.parallel`, fuel, error raising and handling, and the host boundary: every `call`, step
 * entry/exit and compensation registration suspends the machine with a `HostRequest`; the host
 * answers with `resume`. Machine state is plain data (see `serialize.ts`).
 * Also owns label propagation (once `labelsActive`): per value through builtins, and coarsely
 * through label regions at pure calls (see `Region`).
 * Must never: perform an effect, read the clock, import `node:*`. The machine never decides
 * anything about a capability: it only asks. Never suspend, or let an error out of a pure call,
 * while a label region is open (it is aborted first).
 */
import { Box, Cell, Op, type Arity, type ClosureSpec, type Proto } from './code.js';
import { ensureJit, ensureJitL, isPureArity, noteBail, noteBailL, type JitState } from './jit.js';
import { prStr } from './printer.js';
import {
  Closure,
  ErrorValue,
  IMap,
  ISet,
  Keyword,
  Labeled,
  List,
  RList,
  RtfsError,
  EMPTY_MAP,
  intResult,
  isFn,
  kw,
  truthy,
  unlabel,
  valueEquals,
  type Builtin,
  type RMap,
  type SourcePos,
  type Value,
} from './values.js';

/** A scope a host call happens in: the plan, then each enclosing step (outermost first). */
export interface Scope {
  /** `saga`: inside the primary of a `step.with-compensation` (its compensation is declared). */
  readonly kind: 'plan' | 'step' | 'saga';
  readonly name: string | null;
  readonly meta: Value;
  readonly opts: Value;
  /** Where to restore the fiber when the host asks to retry the step. */
  readonly frameDepth: number;
  readonly sp: number;
  readonly retryPc: number;
  readonly handlerDepth: number;
  /** How many times the host has retried this step so far. */
  readonly attempt?: number;
}

/** What the machine asks of its host. */
export type HostRequest =
  | {
      readonly kind: 'call';
      readonly id: string;
      readonly fiber: number;
      readonly capability: string;
      readonly args: Value[];
      readonly meta: Value;
      readonly scopes: readonly Scope[];
      readonly stepPath: readonly string[];
      readonly pos: SourcePos | undefined;
    }
  | {
      readonly kind: 'step-start';
      readonly id: string;
      readonly fiber: number;
      readonly name: string;
      readonly opts: Value;
      readonly meta: Value;
      readonly scopes: readonly Scope[];
      readonly stepPath: readonly string[];
      readonly pos: SourcePos | undefined;
    }
  | {
      /** A pure predicate (`:pre`, `:post`, `:invariant`) for the host to evaluate and record. */
      readonly kind: 'contract';
      readonly id: string;
      readonly fiber: number;
      readonly phase: 'pre' | 'post' | 'invariant';
      readonly fn: Value;
      readonly args: Value[];
      readonly stepPath: readonly string[];
      readonly scopes: readonly Scope[];
      readonly pos: SourcePos | undefined;
    }
  | {
      readonly kind: 'step-end';
      readonly id: string;
      readonly fiber: number;
      readonly name: string;
      readonly stepPath: readonly string[];
      readonly scopes: readonly Scope[];
      /** The step's value, or the error that ended it. */
      readonly outcome: { ok: true; value: Value } | { ok: false; error: ErrorValue };
      readonly pos: SourcePos | undefined;
    };

/** How the host answers a request. `retry` is valid only for a failed `step-end`. */
export type Resolution = { value: Value } | { error: ErrorValue | RtfsError } | { retry: true };

/** The result of running the machine until it can go no further. */
export type Outcome =
  | { status: 'complete'; value: Value }
  | { status: 'suspended'; requests: HostRequest[] }
  | { status: 'error'; error: ErrorValue }
  | { status: 'out-of-fuel' };

export interface Frame {
  arity: Arity;
  closure: Closure;
  pc: number;
  bp: number;
}

export interface Handler {
  frameDepth: number;
  sp: number;
  pc: number;
  scopeDepth: number;
}

export type FiberStatus = 'ready' | 'blocked' | 'joining' | 'done' | 'failed';

/** One thread of execution. The root fiber is 0; `step.parallel` branches are children. */
export class Fiber {
  stack: Value[] = [];
  frames: Frame[] = [];
  handlers: Handler[] = [];
  scopes: Scope[] = [];
  status: FiberStatus = 'ready';
  request: HostRequest | null = null;
  /** Answer delivered by the host, applied when the fiber next runs. */
  inbox: Resolution | null = null;
  result: Value = null;
  error: ErrorValue | null = null;
  /** For a joining fiber: its branch fibers, in branch order. */
  children: number[] = [];
  /** Registered compensations, oldest first (`step.with-compensation`). */
  sagas: SagaEntry[] = [];
  /** When a branch of this fiber's `step.parallel` fails: wait for the others, or cancel them. */
  onBranchFail: 'await' | 'cancel' = 'await';
  /** A cancellation to raise at this fiber's next suspension (its pending answer comes first). */
  pendingCancel: ErrorValue | null = null;
  constructor(
    readonly id: number,
    readonly parent: number,
  ) {}
}

/** A compensation registered by `step.with-compensation`, run if its scope later fails. */
export interface SagaEntry {
  /** Name of the primary step it undoes. */
  readonly primary: string;
  /** A zero-argument function that runs the compensation (as a step). */
  readonly thunk: Value;
}

/**
 * A label region: a call of a pure arity whose labeled arguments (or labeled callee) were
 * unwrapped, so that it runs on plain values (on the fast path when it can) and its result gets
 * the union of their labels. This over-approximates per-value propagation on purpose: it also
 * covers what the arguments decide through control flow (a labeled loop bound labels the sum).
 * It is sound only while the call stays pure, so anything else — a host call, a step, plan, saga,
 * contract or fork op, a `def`, fuel running out, an error leaving the call — aborts the region:
 * the fiber goes back to the call with the fuel it had then and re-runs it with its labeled
 * arguments, propagating per value (as the fast path does when it bails). Everything undone was
 * pure, so nothing observable is lost. Calls inside a region with labeled arguments (from a
 * global, a free variable, a collection) add their labels to the region instead of opening
 * another. No region is open when `run` returns a suspension or runs out of fuel (it is aborted
 * first), so regions are not part of the saved state (`start` may leave one open for `run`).
 */
interface Region {
  /** Index of the call's frame (frames.length when it returns). */
  readonly depth: number;
  /** Stack index of the callee slot. */
  readonly base: number;
  readonly handlerDepth: number;
  readonly fuel: number;
  /** The call as it was: callee and arguments, labels included (for the re-run). */
  readonly call: Value[];
  readonly labels: Set<string>;
}

/** Internal: thrown by the run loop where the open label region must be aborted. */
const ABORT_REGION = { abortRegion: true } as const;
/** Internal: the same, because fuel ran out (the re-run keeps the region's labels). */
const REGION_OUT_OF_FUEL = { abortRegion: true, fuel: true } as const;

/** Default limits; hosts override them per run. */
export const DEFAULT_MAX_DEPTH = 1_000_000;

/** Internal: thrown by the run loop to raise an RTFS error at the current instruction. */
class Raise {
  constructor(readonly error: ErrorValue) {}
}

/** The machine's view of the runtime it runs in. */
export interface MachineEnv {
  /** The global cells (for `GLOBAL`/`DEF` and serialization). */
  readonly cells: Map<string, Cell>;
  /** Looks up a proto by id when restoring state. */
  proto(id: string): Proto | undefined;
  /** The builtin `+` etc. used when an inlined operator meets non-integers. */
  builtin(name: string): Builtin;
}

/**
 * Converts any JS error raised while running into an RTFS error value. Internal failures (bugs)
 * keep their message so that users can report them.
 */
export function toErrorValue(e: unknown, pos: SourcePos | undefined): ErrorValue {
  if (e instanceof ErrorValue) return e.pos || !pos ? e : new ErrorValue(e.message, e.data, e.type, pos, e.hint);
  if (e instanceof RtfsError) {
    let data: RMap = e.data ?? EMPTY_MAP;
    if (!data.has(kw('code'))) data = data.set(kw('code'), kw(e.code));
    const t = data.get(kw('type'));
    return new ErrorValue(e.message, data, t instanceof Keyword ? t : kw(e.code), e.pos ?? pos, e.hint);
  }
  if (e instanceof RangeError && /call stack/i.test(e.message)) {
    return new ErrorValue('nesting too deep for a native function', EMPTY_MAP.set(kw('code'), kw('stack-overflow')), kw('stack-overflow'), pos);
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new ErrorValue(`internal error: ${msg}`, EMPTY_MAP.set(kw('code'), kw('internal')), kw('internal'), pos);
}

/** The machine: fibers, fuel, and the host boundary. */
export class Machine {
  /** Live fibers by id, in creation order (finished branches are dropped at their join). */
  fibers = new Map<number, Fiber>();
  /** The id the next fiber gets (ids are never reused, so request ids stay unique). */
  nextFiberId = 1;
  /** Remaining fuel (calls and loop iterations); Infinity = unbounded. */
  fuel = Infinity;
  maxDepth = DEFAULT_MAX_DEPTH;
  /** Set when a labeled value has entered the machine; enables label propagation in natives. */
  labelsActive = false;
  /** Use the fast path (generated JS) for pure code. Off only to check it against the interpreter. */
  jit = true;
  /** Sequence number of the last host request (request ids are deterministic). */
  requestSeq = 0;
  /** The open label region (at most one: calls inside it join it). */
  private region: Region | null = null;
  /** A region decided by `labeledCall` that opens once its frame is entered. */
  private opening: { call: Value[]; labels: Set<string> } | null = null;

  constructor(readonly env: MachineEnv) {}

  /** Starts running `closure` with `args` on the root fiber. */
  start(closure: Closure, args: Value[] = []): void {
    const f = new Fiber(0, -1);
    this.fibers = new Map([[0, f]]);
    this.nextFiberId = 1;
    this.region = null;
    f.stack.push(closure, ...args);
    if (this.labelsActive) {
      const arity = selectArity(closure.code as Proto, args.length) as Arity & JitState;
      if (arity !== undefined && this.labeledCall(f, args.length, arity, closure)) {
        f.result = f.stack[0];
        f.stack = [];
        f.status = 'done';
        return;
      }
      this.enterClosure(f, closure, args.length);
      this.openRegion(f);
      return;
    }
    this.enterClosure(f, closure, args.length);
    this.tryFastStart(f, closure, args);
  }

  /** Pure code that is started directly (a unit's top level) may also take the fast path. */
  private tryFastStart(f: Fiber, closure: Closure, args: Value[]): void {
    const arity = f.frames[0].arity as Arity & JitState;
    if (!this.jit || arity.jit === null) return;
    const j = arity.jit === undefined ? ensureJit(arity) : arity.jit;
    if (!j) return;
    const fuelBefore = this.fuel;
    try {
      f.result = arity.variadic ? j(this, closure, args) : j(this, closure, ...args);
    } catch {
      this.fuel = fuelBefore;
      noteBail(arity);
      return;
    }
    f.frames = [];
    f.stack = [];
    f.status = 'done';
  }

  /** Delivers the host's answers. Unknown or stale request ids are an error. */
  resume(answers: { id: string; resolution: Resolution }[]): void {
    for (const a of answers) {
      let f: Fiber | undefined;
      for (const x of this.fibers.values()) if (x.request?.id === a.id) f = x;
      if (!f || f.status !== 'blocked') throw new RtfsError('host', `no pending host request with id ${a.id}`);
      if ('retry' in a.resolution && !(f.request?.kind === 'step-end' && !f.request.outcome.ok)) {
        throw new RtfsError('host', `request ${a.id}: retry is only valid for a failed step`);
      }
      f.inbox = a.resolution;
      f.status = 'ready';
    }
  }

  /** The requests currently waiting for an answer. */
  pending(): HostRequest[] {
    const out: HostRequest[] = [];
    for (const f of this.fibers.values()) if (f.status === 'blocked' && f.request) out.push(f.request);
    return out;
  }

  /** Runs every ready fiber until all are blocked or the root is finished. */
  run(): Outcome {
    for (;;) {
      let progressed = false;
      for (const f of this.fibers.values()) {
        if (f.status !== 'ready') continue;
        progressed = true;
        if (!this.runFiber(f)) return { status: 'out-of-fuel' };
        // A pending cancellation takes effect at the next call or step start, never at a
        // step's end (the step completed: it must be recorded, and its compensation registered).
        if ((f.status as FiberStatus) === 'blocked' && f.pendingCancel && f.request?.kind !== 'step-end') {
          f.request = null;
          f.inbox = { error: f.pendingCancel };
          f.pendingCancel = null;
          f.status = 'ready'; // runs again in the next round: it raises the cancellation where it stands
          continue;
        }
        if ((f.status as FiberStatus) === 'done' || (f.status as FiberStatus) === 'failed') this.onFiberEnd(f);
      }
      const root = this.fibers.get(0)!;
      if (root.status === 'done') return { status: 'complete', value: root.result };
      if (root.status === 'failed') return { status: 'error', error: root.error! };
      if (!progressed) {
        const requests = this.pending();
        if (requests.length === 0) throw new RtfsError('internal', 'machine deadlock: no fiber can run and none waits for the host');
        return { status: 'suspended', requests };
      }
    }
  }

  private onFiberEnd(f: Fiber): void {
    if (f.parent < 0) return;
    const parent = this.fibers.get(f.parent)!;
    const kids = parent.children.map((id) => this.fibers.get(id)!);
    if (f.status === 'failed' && parent.onBranchFail === 'cancel') {
      // Siblings' pending requests may already be running at the host: their answers land first.
      const inFlight = new Set(this.pending().map((r) => r.id));
      for (const k of kids) if (k.status === 'ready' || k.status === 'blocked' || k.status === 'joining') this.cancelFiber(k, f.error!, inFlight);
    }
    if (!kids.every((k) => k.status === 'done' || k.status === 'failed')) return;
    // Join in branch order, whatever the completion order. The first failed branch (in branch
    // order) is raised in the parent. Compensations the branches registered (completed ones, and
    // those a failed branch did not unwind) move to the parent in branch order: a later failure
    // of the parent's scope — or this join's own failure — runs them.
    // The error to raise: the first failure in branch order that is not a sibling's cancellation.
    const isCancel = (k: Fiber): boolean => k.error?.type.name === 'cancelled';
    const failed = kids.find((k) => k.status === 'failed' && !isCancel(k)) ?? kids.find((k) => k.status === 'failed');
    for (const k of kids) {
      parent.sagas.push(...k.sagas);
      k.sagas = [];
      this.fibers.delete(k.id); // joined: the branch is done with
    }
    parent.children = [];
    parent.status = 'ready';
    parent.onBranchFail = 'await';
    parent.inbox = failed ? { error: failed.error! } : { value: List(kids.map((k) => k.result)) };
  }

  /**
   * Makes a fiber raise `:cancelled` where it stands (its scopes then run their compensations).
   * A fiber whose request is in flight at the host (`inFlight`), or whose answer is already in,
   * gets that answer first and is cancelled at its next call or step start: an effect that
   * happened is then on record and compensable.
   */
  private cancelFiber(f: Fiber, cause: ErrorValue | null, inFlight: ReadonlySet<string>): void {
    if (f.status === 'done' || f.status === 'failed') return;
    const err = new ErrorValue(cause ? `cancelled because a sibling branch failed: ${cause.message}` : 'the run was cancelled', EMPTY_MAP.set(kw('code'), kw('cancelled')), kw('cancelled'));
    if (f.status === 'joining') {
      for (const id of f.children) this.cancelFiber(this.fibers.get(id)!, cause, inFlight);
      return;
    }
    if (f.status === 'blocked' && f.request && inFlight.has(f.request.id)) {
      f.pendingCancel = err;
      return;
    }
    if (f.status === 'blocked') f.request = null;
    if (f.status === 'ready' && f.inbox) {
      // An answer is on its way in (e.g. a step that completed): deliver it first, so that its
      // compensation gets registered, and raise the cancellation at the next suspension.
      f.pendingCancel = err;
      return;
    }
    f.inbox = { error: err };
    f.status = 'ready';
  }

  /**
   * Cancels the run: every fiber raises `:cancelled` where it stands (after the answers to
   * `inFlight` requests, which the host has started). Scopes unwind and run their compensations
   * (which may ask the host for more calls); call `run` to drive that to the end.
   */
  cancel(inFlight: ReadonlySet<string> = new Set()): void {
    const root = this.fibers.get(0);
    if (!root || root.status === 'done' || root.status === 'failed') return;
    this.cancelFiber(root, null, inFlight);
  }

  private newRequestId(f: Fiber): string {
    return `r${++this.requestSeq}.f${f.id}`;
  }

  private stepPath(f: Fiber): string[] {
    const out: string[] = [];
    for (const s of f.scopes) if (s.kind === 'step') out.push(s.name ?? '');
    return out;
  }

  /** Pushes a frame for `closure` whose `nargs` arguments sit on top of the stack. */
  private enterClosure(f: Fiber, closure: Closure, nargs: number): void {
    const proto = closure.code as Proto;
    const arity = selectArity(proto, nargs);
    const stack = f.stack;
    if (arity.variadic) {
      const extra = nargs - arity.nparams;
      let rest: Value = null;
      if (extra > 0) {
        const items = stack.splice(stack.length - extra, extra);
        rest = RList.from(items);
      }
      stack.push(rest);
    }
    const bp = stack.length - (arity.variadic ? arity.nparams + 1 : arity.nparams);
    for (let k = stack.length - bp; k < arity.nlocals; k++) stack.push(null);
    f.frames.push({ arity, closure, pc: 0, bp });
  }

  /**
   * A closure call while labels are active, with callee and arguments on top of the stack. Decides
   * the call's label region: a labeled callee or argument opens one when the arity is pure (the
   * stack slots are unwrapped, `opening` holds the original call), or joins the open region; an
   * impure arity runs with its labeled values (per-value propagation). Then runs the call on the
   * labels-mode fast path if no labeled value is left: true when it completed there (the result,
   * labeled by a new region, replaces callee and arguments); false when the interpreter must
   * enter it (then call `openRegion` once the frame is pushed).
   */
  private labeledCall(f: Fiber, nargs: number, arity: Arity & JitState, closure: Closure): boolean {
    const stack = f.stack;
    const base = stack.length - nargs;
    let labels: Set<string> | null = null;
    for (let i = base - 1; i < stack.length; i++) {
      const v = stack[i];
      if (v instanceof Labeled) {
        labels ??= new Set();
        for (const l of v.labels) labels.add(l);
      }
    }
    if (labels !== null) {
      if (this.region === null && !isPureArity(arity)) return false;
      const call = stack.slice(base - 1);
      stack[base - 1] = closure;
      for (let i = base; i < stack.length; i++) stack[i] = unlabel(stack[i]);
      if (this.region !== null) for (const l of labels) this.region.labels.add(l);
      else this.opening = { call, labels };
    }
    if (!this.jit || arity.jitL === null) return false;
    const j = arity.jitL === undefined ? ensureJitL(arity) : arity.jitL;
    if (!j) return false;
    const fuelBefore = this.fuel;
    let result: Value;
    try {
      if (arity.variadic) result = j(this, closure, stack.slice(base));
      else if (nargs === 1) result = j(this, closure, stack[base]);
      else result = j(this, closure, ...stack.slice(base));
    } catch {
      this.fuel = fuelBefore;
      noteBailL(arity);
      return false;
    }
    stack.length = base - 1;
    if (this.opening !== null) {
      result = withLabels(result, this.opening.labels);
      this.opening = null;
    }
    stack.push(result);
    return true;
  }

  /** Opens the region `labeledCall` decided, at the frame just entered. */
  private openRegion(f: Fiber): void {
    const o = this.opening;
    if (o === null) return;
    this.opening = null;
    const depth = f.frames.length - 1;
    this.region = { depth, base: f.frames[depth].bp - 1, handlerDepth: f.handlers.length, fuel: this.fuel, call: o.call, labels: o.labels };
  }

  /**
   * Aborts the open region: back to its call, with the fuel it had then, re-entered with its
   * labeled arguments (no region this time: per-value propagation from here on).
   * When fuel ran out (`interrupted`), nothing impure happened: the call is merely suspended
   * halfway, so the re-run keeps the region's labels for its result, by calling the function
   * labeled with them (a labeled function labels what it returns; being on the stack, this
   * survives a saved state). Without it, an interrupted run would lose what the region covers
   * beyond per-value propagation (e.g. a labeled loop bound).
   */
  private abortRegion(f: Fiber, interrupted: boolean): void {
    const r = this.region!;
    this.region = null;
    f.frames.length = r.depth;
    f.handlers.length = r.handlerDepth;
    f.stack.length = r.base;
    for (const v of r.call) f.stack.push(v);
    if (interrupted) f.stack[r.base] = withLabels(r.call[0], r.labels);
    this.fuel = r.fuel;
    this.enterClosure(f, unlabel(r.call[0]) as Closure, r.call.length - 1);
  }

  /**
   * Runs one fiber until it blocks, finishes or fails. Returns false when fuel ran out (the
   * fiber stays ready and consistent: adding fuel and calling `run` continues it).
   */
  private runFiber(f: Fiber): boolean {
    const stack = f.stack;
    let frame = f.frames[f.frames.length - 1];
    let ar = frame.arity;
    let ops = ar.ops;
    let consts = ar.consts;
    let pc = frame.pc;
    let bp = frame.bp;
    let closure = frame.closure;
    let opStart = pc;

    const load = (): void => {
      frame = f.frames[f.frames.length - 1];
      ar = frame.arity;
      ops = ar.ops;
      consts = ar.consts;
      pc = frame.pc;
      bp = frame.bp;
      closure = frame.closure;
    };
    const save = (): void => {
      frame.pc = pc;
    };
    const posHere = (): SourcePos | undefined => ar.pos[opStart] ?? nearestPos(ar, opStart);

    // Apply the host's answer, if any.
    if (f.inbox) {
      const inbox = f.inbox;
      f.inbox = null;
      const req = f.request;
      f.request = null;
      try {
        this.deliver(f, req, inbox);
      } catch (e) {
        if (!(e instanceof Raise)) throw e;
        if (!this.unwind(f, e.error)) return true;
      }
      load();
    }

    for (;;) {
      try {
        for (;;) {
          opStart = pc;
          switch (ops[pc++] as Op) {
            case Op.CONST:
              stack.push(consts[ops[pc++]] as Value);
              break;
            case Op.LOCAL:
              stack.push(stack[bp + ops[pc++]]);
              break;
            case Op.SETLOCAL:
              stack[bp + ops[pc++]] = stack.pop()!;
              break;
            case Op.FREE:
              stack.push(closure.free[ops[pc++]]);
              break;
            case Op.SELF:
              stack.push(closure);
              break;
            case Op.GLOBAL: {
              const cell = consts[ops[pc++]] as Cell;
              if (!cell.defined) throw new RtfsError('unbound-symbol', `\`${cell.name}\` is declared but has no value yet`, posHere());
              stack.push(cell.value);
              break;
            }
            case Op.DEF: {
              if (this.region !== null) throw ABORT_REGION;
              const cell = consts[ops[pc++]] as Cell;
              cell.value = stack[stack.length - 1];
              cell.defined = true;
              break;
            }
            case Op.POP:
              stack.pop();
              break;
            case Op.JUMP: {
              const target = ops[pc];
              if (target < pc && --this.fuel < 0) {
                if (this.region !== null) throw REGION_OUT_OF_FUEL;
                this.fuel = 0;
                pc = opStart;
                save();
                return false;
              }
              pc = target;
              break;
            }
            case Op.JUMPF: {
              const v = stack.pop()!;
              if (v === null || v === false || (v instanceof Labeled && !truthy(v))) pc = ops[pc];
              else pc++;
              break;
            }
            case Op.CALL:
            case Op.TAILCALL: {
              const tail = ops[opStart] === Op.TAILCALL;
              let nargs = ops[pc++];
              if (--this.fuel < 0) {
                if (this.region !== null) throw REGION_OUT_OF_FUEL;
                this.fuel = 0;
                pc = opStart;
                save();
                return false;
              }
              if (tail && this.labelsActive && stack[bp - 1] instanceof Labeled) {
                // This frame's result is to carry the labels of its (labeled) function: the call
                // that will produce that result in its place gets them.
                const k = stack.length - nargs - 1;
                stack[k] = withLabels(stack[k], (stack[bp - 1] as Labeled).labels);
              }
              for (;;) {
                let callee = stack[stack.length - nargs - 1];
                if (callee instanceof Labeled) callee = callee.value;
                if (callee instanceof Closure) {
                  const proto = callee.code as Proto;
                  const arity = selectArity(proto, nargs) as Arity & JitState;
                  if (arity === undefined) throw arityError(proto, nargs, posHere());
                  if (this.labelsActive) {
                    if (this.labeledCall(f, nargs, arity, callee)) break;
                  } else if (arity.jit !== null && this.jit) {
                    // The fast path; on any bail the same call runs below, in the interpreter.
                    const j = arity.jit === undefined ? ensureJit(arity) : arity.jit;
                    if (j) {
                      const base = stack.length - nargs;
                      const fuelBefore = this.fuel;
                      let done = true;
                      let result: Value = null;
                      try {
                        if (arity.variadic) result = j(this, callee, stack.slice(base));
                        else if (nargs === 0) result = j(this, callee);
                        else if (nargs === 1) result = j(this, callee, stack[base]);
                        else if (nargs === 2) result = j(this, callee, stack[base], stack[base + 1]);
                        else result = j(this, callee, ...stack.slice(base));
                      } catch {
                        done = false;
                        this.fuel = fuelBefore;
                        noteBail(arity);
                      }
                      if (done) {
                        stack.length = base - 1;
                        stack.push(result);
                        break;
                      }
                    }
                  }
                  if (tail) {
                    // Move callee and arguments down over the current frame.
                    const from = stack.length - nargs - 1;
                    const to = bp - 1;
                    for (let k = 0; k <= nargs; k++) stack[to + k] = stack[from + k];
                    stack.length = to + nargs + 1;
                    f.frames.pop();
                  } else save();
                  if (f.frames.length >= this.maxDepth) {
                    this.opening = null;
                    throw new RtfsError('stack-overflow', `recursion deeper than ${this.maxDepth} calls (in ${proto.name ?? 'an anonymous function'})`, posHere(), undefined, 'look for recursion without a base case, or use loop/recur');
                  }
                  this.enterClosure(f, callee, nargs);
                  this.openRegion(f);
                  load();
                  break;
                }
                if (isFn(callee) && (callee as Builtin).special === 'apply') {
                  // (apply f a b [c d]) → (f a b c d), dispatched again.
                  if (nargs < 2) throw new RtfsError('arity', 'apply needs a function and a collection', posHere());
                  const last = stack.pop()!;
                  let spread = seqToArray(unlabel(last), 'apply');
                  // A labeled collection lends its labels to every element it spreads.
                  if (last instanceof Labeled) spread = spread.map((x) => new Labeled(unlabel(x), x instanceof Labeled ? new Set([...x.labels, ...last.labels]) : last.labels));
                  const k = stack.length - nargs;
                  const applied = stack[k];
                  stack.splice(k, 1);
                  // A labeled apply (see TAILCALL) passes its labels on to the function it applies.
                  if (applied instanceof Labeled) stack[k] = withLabels(stack[k], applied.labels);
                  for (const x of spread) stack.push(x);
                  nargs = nargs - 2 + spread.length;
                  continue;
                }
                const args = stack.splice(stack.length - nargs, nargs);
                const held = stack.pop();
                let result: Value;
                if (isFn(callee)) {
                  const b = callee as Builtin;
                  if (nargs < b.minArity || nargs > b.maxArity) throw builtinArityError(b, nargs, posHere());
                  result = this.labelsActive ? callLabeled(b, args) : b.fn(args);
                } else result = applyData(callee, args, posHere());
                // A labeled builtin or callable data (a map looked up in) labels what it returns.
                stack.push(held instanceof Labeled ? withLabels(result, held.labels) : result);
                break;
              }
              break;
            }
            case Op.RETURN: {
              let result: Value = stack.pop()!;
              const held = stack[bp - 1];
              stack.length = bp - 1;
              f.frames.pop();
              // A labeled function labels what it returns (also how an interrupted region's labels
              // reach its result, see `abortRegion`).
              if (held instanceof Labeled) result = withLabels(result, held.labels);
              if (this.region !== null && f.frames.length === this.region.depth) {
                result = withLabels(result, this.region.labels);
                this.region = null;
              }
              if (f.frames.length === 0) {
                f.result = result;
                f.status = 'done';
                return true;
              }
              stack.push(result);
              load();
              break;
            }
            case Op.CLOSURE: {
              const spec = consts[ops[pc++]] as ClosureSpec;
              const free = spec.nfree === 0 ? EMPTY_FREE : stack.splice(stack.length - spec.nfree, spec.nfree);
              stack.push(new Closure(spec.proto, free, spec.proto.name));
              break;
            }
            case Op.VEC: {
              const n = ops[pc++];
              stack.push(List(stack.splice(stack.length - n, n)));
              break;
            }
            case Op.MAP: {
              const n = ops[pc++];
              const kvs = stack.splice(stack.length - 2 * n, 2 * n);
              let m = EMPTY_MAP;
              for (let k = 0; k < kvs.length; k += 2) m = m.set(kvs[k], kvs[k + 1]);
              stack.push(m);
              break;
            }
            case Op.SET: {
              const n = ops[pc++];
              stack.push(ISet(stack.splice(stack.length - n, n)));
              break;
            }
            case Op.LIST: {
              const n = ops[pc++];
              stack.push(RList.from(stack.splice(stack.length - n, n)));
              break;
            }
            case Op.HOST: {
              if (this.region !== null) throw ABORT_REGION;
              const n = ops[pc++];
              const args = stack.splice(stack.length - n, n);
              const capV = unlabel(stack.pop()!);
              const meta = stack.pop()!;
              let capability: string;
              if (capV instanceof Keyword) capability = capV.name;
              else if (typeof capV === 'string') capability = capV;
              else throw new RtfsError('type', `call: the capability id must be a keyword or a string, got ${prStr(capV)}`, posHere());
              f.request = {
                kind: 'call',
                id: this.newRequestId(f),
                fiber: f.id,
                capability,
                args,
                meta,
                scopes: f.scopes.slice(),
                stepPath: this.stepPath(f),
                pos: posHere(),
              };
              f.status = 'blocked';
              save();
              return true;
            }
            case Op.TRY:
              f.handlers.push({ frameDepth: f.frames.length, sp: stack.length, pc: ops[pc++], scopeDepth: f.scopes.length });
              break;
            case Op.ENDTRY:
              f.handlers.pop();
              break;
            case Op.THROW: {
              const v = unlabel(stack.pop()!);
              if (v instanceof ErrorValue) throw new Raise(v.pos ? v : new ErrorValue(v.message, v.data, v.type, posHere(), v.hint));
              throw new Raise(new ErrorValue(`thrown: ${prStr(v)}`, EMPTY_MAP.set(kw('value'), v), kw('thrown'), posHere()));
            }
            case Op.STEP_ENTER: {
              if (this.region !== null) throw ABORT_REGION;
              const meta = stack.pop()!;
              const opts = stack.pop()!;
              const nameV = stack.pop()!;
              const name = typeof nameV === 'string' ? nameV : prStr(nameV);
              const scope: Scope = { kind: 'step', name, meta, opts, frameDepth: f.frames.length, sp: stack.length, retryPc: pc, handlerDepth: f.handlers.length };
              f.request = {
                kind: 'step-start',
                id: this.newRequestId(f),
                fiber: f.id,
                name,
                opts,
                meta,
                scopes: [...f.scopes, scope],
                stepPath: [...this.stepPath(f), name],
                pos: posHere(),
              };
              f.status = 'blocked';
              save();
              return true;
            }
            case Op.STEP_EXIT: {
              if (this.region !== null) throw ABORT_REGION;
              const value = stack.pop()!;
              const scope = f.scopes[f.scopes.length - 1];
              f.request = {
                kind: 'step-end',
                id: this.newRequestId(f),
                fiber: f.id,
                name: scope.name ?? '',
                stepPath: this.stepPath(f),
                scopes: f.scopes.slice(),
                outcome: { ok: true, value },
                pos: posHere(),
              };
              f.status = 'blocked';
              save();
              return true;
            }
            case Op.STEP_FAIL: {
              if (this.region !== null) throw ABORT_REGION;
              const error = stack.pop() as unknown as ErrorValue;
              const scope = f.scopes[f.scopes.length - 1];
              f.request = {
                kind: 'step-end',
                id: this.newRequestId(f),
                fiber: f.id,
                name: scope.name ?? '',
                stepPath: this.stepPath(f),
                scopes: f.scopes.slice(),
                outcome: { ok: false, error },
                pos: error.pos ?? posHere(),
              };
              f.status = 'blocked';
              save();
              return true;
            }
            case Op.PLAN_ENTER: {
              if (this.region !== null) throw ABORT_REGION;
              const meta = stack.pop()!;
              const scopeKind = ops[pc++] === 1 ? 'saga' : 'plan';
              const name = IMap.isMap(meta) ? (meta as RMap).get(kw('name')) : null;
              f.scopes.push({ kind: scopeKind, name: typeof name === 'string' ? name : null, meta, opts: null, frameDepth: f.frames.length, sp: stack.length, retryPc: pc, handlerDepth: f.handlers.length });
              break;
            }
            case Op.PLAN_EXIT:
              if (this.region !== null) throw ABORT_REGION;
              f.scopes.pop();
              break;
            case Op.FORK: {
              if (this.region !== null) throw ABORT_REGION;
              const n = ops[pc++];
              f.onBranchFail = ops[pc++] === 1 ? 'cancel' : 'await';
              const thunks = stack.splice(stack.length - n, n) as Closure[];
              f.children = [];
              for (const t of thunks) {
                const child = new Fiber(this.nextFiberId++, f.id);
                child.scopes = f.scopes.slice();
                child.stack.push(t);
                this.enterClosure(child, t, 0);
                this.fibers.set(child.id, child);
                f.children.push(child.id);
              }
              f.status = 'joining';
              save();
              return true;
            }
            case Op.SAGA_PUSH: {
              if (this.region !== null) throw ABORT_REGION;
              const thunk = stack.pop()!;
              const primary = stack.pop()!;
              f.sagas.push({ primary: typeof primary === 'string' ? primary : prStr(primary), thunk });
              break;
            }
            case Op.SAGA_MARK:
              if (this.region !== null) throw ABORT_REGION;
              stack.push(f.sagas.length);
              break;
            case Op.SAGA_NEXT: {
              if (this.region !== null) throw ABORT_REGION;
              const mark = stack.pop() as number;
              stack.push(f.sagas.length > mark ? f.sagas.pop()!.thunk : null);
              break;
            }
            case Op.CONTRACT: {
              if (this.region !== null) throw ABORT_REGION;
              const args = stack.pop()!;
              const fn = stack.pop()!;
              const phase = stack.pop() as 'pre' | 'post' | 'invariant';
              f.request = { kind: 'contract', id: this.newRequestId(f), fiber: f.id, phase, fn, args: seqToArray(args, 'contract'), stepPath: this.stepPath(f), scopes: f.scopes.slice(), pos: posHere() };
              f.status = 'blocked';
              save();
              return true;
            }
            case Op.BOX:
              stack.push(new Box(null) as unknown as Value);
              break;
            case Op.BOXSET: {
              const v = stack.pop()!;
              (stack[bp + ops[pc++]] as unknown as Box).value = v;
              break;
            }
            case Op.UNBOX:
              stack.push((stack.pop() as unknown as Box).value);
              break;
            case Op.ERRMATCH: {
              const t = consts[ops[pc++]] as Keyword;
              const e = stack.pop() as unknown as ErrorValue;
              stack.push(errorMatches(e, t));
              break;
            }
            case Op.ADD: {
              const b = stack.pop()!;
              const a = stack[stack.length - 1];
              if (typeof a === 'number' && typeof b === 'number') {
                const r = a + b;
                stack[stack.length - 1] = Number.isSafeInteger(r) ? r : intResult(r, a, b, '+', (x, y) => x + y);
              } else stack[stack.length - 1] = this.callNamed('+', a, b);
              break;
            }
            case Op.SUB: {
              const b = stack.pop()!;
              const a = stack[stack.length - 1];
              if (typeof a === 'number' && typeof b === 'number') {
                const r = a - b;
                stack[stack.length - 1] = Number.isSafeInteger(r) ? r : intResult(r, a, b, '-', (x, y) => x - y);
              } else stack[stack.length - 1] = this.callNamed('-', a, b);
              break;
            }
            case Op.MUL: {
              const b = stack.pop()!;
              const a = stack[stack.length - 1];
              if (typeof a === 'number' && typeof b === 'number') {
                const r = a * b;
                stack[stack.length - 1] = Number.isSafeInteger(r) ? (r === 0 ? 0 : r) : intResult(r, a, b, '*', (x, y) => x * y);
              } else stack[stack.length - 1] = this.callNamed('*', a, b);
              break;
            }
            case Op.LT: {
              const b = stack.pop()!;
              const a = stack[stack.length - 1];
              stack[stack.length - 1] = typeof a === 'number' && typeof b === 'number' ? a < b : this.callNamed('<', a, b);
              break;
            }
            case Op.GT: {
              const b = stack.pop()!;
              const a = stack[stack.length - 1];
              stack[stack.length - 1] = typeof a === 'number' && typeof b === 'number' ? a > b : this.callNamed('>', a, b);
              break;
            }
            case Op.LE: {
              const b = stack.pop()!;
              const a = stack[stack.length - 1];
              stack[stack.length - 1] = typeof a === 'number' && typeof b === 'number' ? a <= b : this.callNamed('<=', a, b);
              break;
            }
            case Op.GE: {
              const b = stack.pop()!;
              const a = stack[stack.length - 1];
              stack[stack.length - 1] = typeof a === 'number' && typeof b === 'number' ? a >= b : this.callNamed('>=', a, b);
              break;
            }
            case Op.EQ: {
              const b = stack.pop()!;
              const a = stack[stack.length - 1];
              stack[stack.length - 1] = a === b || valueEquals(a, b);
              break;
            }
            case Op.INC: {
              const a = stack[stack.length - 1];
              stack[stack.length - 1] = typeof a === 'number' && a < Number.MAX_SAFE_INTEGER ? a + 1 : this.callNamed('inc', a);
              break;
            }
            case Op.DEC: {
              const a = stack[stack.length - 1];
              stack[stack.length - 1] = typeof a === 'number' && a > Number.MIN_SAFE_INTEGER ? a - 1 : this.callNamed('dec', a);
              break;
            }
            default:
              throw new RtfsError('internal', `bad opcode ${ops[opStart]} at ${opStart}`);
          }
        }
      } catch (e) {
        if (this.region !== null && (e === ABORT_REGION || e === REGION_OUT_OF_FUEL || f.handlers.length <= this.region.handlerDepth)) {
          // Something impure, fuel running out, or an error that would leave the region: re-run
          // its call per value (where the error, if any, is raised again).
          this.abortRegion(f, e === REGION_OUT_OF_FUEL);
        } else {
          const err = e instanceof Raise ? e.error : toErrorValue(e, posHere());
          save();
          if (!this.unwind(f, err)) return true;
        }
        load();
      }
    }
  }

  /** Unwinds `f` to its innermost handler with `err` pushed. False when the fiber failed. */
  private unwind(f: Fiber, err: ErrorValue): boolean {
    const h = f.handlers.pop();
    if (!h) {
      f.status = 'failed';
      f.error = err;
      f.frames = [];
      f.stack = [];
      return false;
    }
    f.frames.length = h.frameDepth;
    f.stack.length = h.sp;
    f.scopes.length = h.scopeDepth;
    f.stack.push(err);
    f.frames[f.frames.length - 1].pc = h.pc;
    return true;
  }

  /** Applies a host answer to the fiber that asked. Throws `Raise` for errors. */
  private deliver(f: Fiber, req: HostRequest | null, r: Resolution): void {
    const pos = req?.pos;
    if ('error' in r) {
      const err = toErrorValue(r.error, pos);
      // A failed step answered with an error leaves the step; a refused step-start never entered it.
      if (req?.kind === 'step-end') f.scopes.pop();
      throw new Raise(err);
    }
    if ('retry' in r) {
      if (req?.kind !== 'step-end') throw new RtfsError('host', 'retry is only valid for a failed step');
      const s = f.scopes[f.scopes.length - 1];
      f.scopes[f.scopes.length - 1] = { ...s, attempt: (s.attempt ?? 0) + 1 };
      f.frames.length = s.frameDepth;
      f.stack.length = s.sp;
      f.handlers.length = s.handlerDepth;
      f.frames[f.frames.length - 1].pc = s.retryPc;
      return;
    }
    if (req === null) {
      // A joining fiber: the join result.
      f.stack.push(r.value);
      return;
    }
    switch (req.kind) {
      case 'call':
        if (r.value instanceof Labeled) this.labelsActive = true;
        f.stack.push(r.value);
        return;
      case 'contract': {
        if (truthy(r.value)) return;
        const what = req.phase === 'pre' ? 'precondition' : req.phase === 'post' ? 'postcondition' : 'invariant';
        const code = kw(`contract/${what}-failed`);
        throw new Raise(new ErrorValue(`${what} failed${req.stepPath.length ? ` in step ${req.stepPath[req.stepPath.length - 1]}` : ''}`, EMPTY_MAP.set(kw('code'), code).set(kw('phase'), kw(req.phase)), code, pos));
      }
      case 'step-start': {
        const s = req.scopes[req.scopes.length - 1];
        f.scopes.push({ ...s, handlerDepth: f.handlers.length });
        return;
      }
      case 'step-end': {
        f.scopes.pop();
        // A failed step answered with a value: the host chose to continue (`:on-fail :continue`).
        f.stack.push(r.value);
        return;
      }
    }
  }

  private callNamed(name: string, ...args: Value[]): Value {
    const b = this.env.builtin(name);
    return this.labelsActive ? callLabeled(b, args) : b.fn(args);
  }

  /** Runs `closure` to completion synchronously (macro expansion, pure helpers). */
  static runPure(env: MachineEnv, closure: Closure, args: Value[], fuel: number): Value {
    const m = new Machine(env);
    m.fuel = fuel;
    m.start(closure, args);
    const out = m.run();
    if (out.status === 'complete') return out.value;
    if (out.status === 'error') throw errorValueToRtfsError(out.error);
    if (out.status === 'out-of-fuel') throw new RtfsError('fuel-exhausted', `ran out of fuel (${fuel} steps)`);
    const r = out.requests[0];
    throw new RtfsError('host', r.kind === 'call' ? `\`call\` of ${r.capability} is not allowed here (pure code)` : 'steps are not allowed here (pure code)', r.pos);
  }
}

const EMPTY_FREE: Value[] = [];

/** Converts an uncaught RTFS error back into a JS error for callers that throw. */
export function errorValueToRtfsError(e: ErrorValue): RtfsError {
  const code = e.data.get(kw('code'));
  return new RtfsError(code instanceof Keyword ? code.name : e.type.name, e.message, e.pos, e.data, e.hint);
}

function selectArity(proto: Proto, nargs: number): Arity {
  const as = proto.arities;
  for (let i = 0; i < as.length; i++) {
    const a = as[i];
    if (a.nparams === nargs && !a.variadic) return a;
  }
  for (let i = 0; i < as.length; i++) {
    const a = as[i];
    if (a.variadic && nargs >= a.nparams) return a;
  }
  return undefined as unknown as Arity;
}

function arityError(proto: Proto, nargs: number, pos: SourcePos | undefined): RtfsError {
  const expected = proto.arities.map((a) => (a.variadic ? `${a.nparams}+` : `${a.nparams}`)).join(' or ');
  return new RtfsError('arity', `wrong number of arguments (${nargs}) passed to ${proto.name ?? 'an anonymous function'}; expected ${expected}`, pos);
}

function builtinArityError(b: Builtin, nargs: number, pos: SourcePos | undefined): RtfsError {
  const expected = b.minArity === b.maxArity ? `${b.minArity}` : b.maxArity === Infinity ? `at least ${b.minArity}` : `${b.minArity} to ${b.maxArity}`;
  return new RtfsError('arity', `wrong number of arguments (${nargs}) passed to ${b.name}; expected ${expected}`, pos);
}

function nearestPos(ar: Arity, pc: number): SourcePos | undefined {
  for (let i = pc; i >= 0; i--) if (ar.pos[i]) return ar.pos[i];
  return undefined;
}

/** Does error `e` match the catch type `t` (its `:type`, or its kernel error code)? */
function errorMatches(e: ErrorValue, t: Keyword): boolean {
  if (t.name === 'default' || t.name === 'any' || t.name === 'error') return true;
  if (e.type === t) return true;
  const code = e.data.get(kw('code'));
  return code === t;
}

/** `v` with `labels` added to those it carries. */
function withLabels(v: Value, labels: ReadonlySet<string>): Value {
  if (!(v instanceof Labeled)) return new Labeled(v, labels);
  const all = new Set(labels);
  for (const l of v.labels) all.add(l);
  return new Labeled(v.value, all);
}

/** Calls a builtin with label propagation: the result carries the union of the args' labels. */
function callLabeled(b: Builtin, args: Value[]): Value {
  let labels: Set<string> | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a instanceof Labeled) {
      labels ??= new Set();
      for (const l of a.labels) labels.add(l);
      args[i] = a.value;
    }
  }
  const r = b.fn(args);
  if (!labels) return r;
  if (r instanceof Labeled) {
    for (const l of r.labels) labels.add(l);
    return new Labeled(r.value, labels);
  }
  return new Labeled(r, labels);
}

/** Keywords, maps, sets and vectors are callable, as in Clojure. */
function applyData(callee: Value, args: Value[], pos: SourcePos | undefined): Value {
  if (callee instanceof Keyword) {
    if (args.length < 1 || args.length > 2) throw new RtfsError('arity', `keyword :${callee.name} used as a function takes 1 or 2 arguments`, pos);
    const m = unlabel(args[0]);
    const dflt = args.length > 1 ? args[1] : null;
    if (IMap.isMap(m)) return (m as RMap).get(callee, dflt);
    if (ISet.isSet(m)) return (m as ISet<Value>).has(callee) ? callee : dflt;
    return dflt;
  }
  if (IMap.isMap(callee)) {
    if (args.length < 1 || args.length > 2) throw new RtfsError('arity', 'a map used as a function takes 1 or 2 arguments', pos);
    return (callee as RMap).get(args[0], args.length > 1 ? args[1] : null);
  }
  if (ISet.isSet(callee)) return (callee as ISet<Value>).has(args[0]) ? args[0] : null;
  if (List.isList(callee)) {
    const i = args[0];
    const v = callee as List<Value>;
    if (typeof i !== 'number' || i < 0 || i >= v.size) throw new RtfsError('index', `index ${prStr(i)} out of range for a vector of ${v.size}`, pos);
    return v.get(i) as Value;
  }
  throw new RtfsError('type', `${prStr(callee)} is not a function`, pos, undefined, 'only functions, keywords, maps, sets and vectors can be called');
}

/** The items of a sequential value (for `apply`). */
export function seqToArray(v: Value, who: string): Value[] {
  if (v === null) return [];
  if (v instanceof RList) return v.toArray();
  if (List.isList(v) || ISet.isSet(v)) return (v as List<Value>).toArray();
  if (IMap.isMap(v)) return (v as RMap).entrySeq().map(([k, x]) => List([k, x])).toArray() as Value[];
  if (typeof v === 'string') return [...v];
  throw new RtfsError('type', `${who}: expected a collection, got ${prStr(v)}`);
}

