/**
 * The public API of the RTFS kernel.
 *
 * Owns: the explicit export list, and `evaluate`/`runProgram`, the synchronous drivers used by the
 * CLI, tests and embedders that answer host calls in-process.
 * Must never: import `node:*` or perform effects itself (effects come from the caller's host).
 */
import { Machine, errorValueToRtfsError, type HostRequest, type Outcome, type Resolution } from './machine.js';
import { createRuntime, type Runtime } from './runtime.js';
import { restoreMachine, saveMachine } from './serialize.js';
import { Closure, ErrorValue, RtfsError, isFn, type Builtin, type Value } from './values.js';
import { prStr } from './printer.js';

export { readAll, readOne, MetaForm, posOf, type Form } from './reader.js';
export { prStr, strOf } from './printer.js';
export { createRuntime, Runtime, type LoadedUnit } from './runtime.js';
export { Machine, errorValueToRtfsError, type HostRequest, type Outcome, type Resolution, type Scope } from './machine.js';
export { saveMachine, restoreMachine, valueToJson, valueFromJson, errorToJson, STATE_FORMAT, type MachineState } from './serialize.js';
export { formatDiagnostic } from './diagnostics.js';
export { SPECIAL_FORM_NAMES } from './compiler.js';
export * from './values.js';

/** Answers a capability call in-process: return its value or throw to fail the call. */
export type CallHandler = (capability: string, args: Value[], request: HostRequest & { kind: 'call' }) => Value;

export interface EvaluateOptions {
  /** File name used in diagnostics. */
  file?: string;
  /** Answers `(call ...)`; without one, every call fails with a clear error. */
  onCall?: CallHandler;
  /** Fuel budget (function calls + loop iterations). Default: unbounded. */
  fuel?: number;
  /** Serialize the machine to JSON at every suspension and resume from it in a fresh runtime. */
  roundtrip?: boolean;
  /** Reuse a runtime (globals and macros persist between calls, as in a REPL). */
  runtime?: Runtime;
  /** Use the fast path for pure code (default true; false runs everything in the interpreter). */
  jit?: boolean;
  /** Observes every suspension (tests and `--trace`). */
  onSuspend?: (requests: HostRequest[]) => void;
}

/** Fuel for one contract predicate: enough for real checks, never a hang. */
export const CONTRACT_FUEL = 1_000_000;

/**
 * Evaluates a contract predicate in a pure machine (a `call` in it is an error) under fuel.
 * Hosts use this to answer `contract` requests.
 */
export function evaluateContract(rt: Runtime, fn: Value, args: Value[], overdue?: () => boolean): Resolution {
  if (!isFn(fn)) return { error: new RtfsError('contract', `a contract must be a function, got ${prStr(fn)}`) };
  try {
    if (fn instanceof Closure) return { value: runSliced(rt, fn, args, overdue) };
    const b = fn as Builtin;
    if (args.length < b.minArity || args.length > b.maxArity || b.special) throw new RtfsError('arity', `${b.name} cannot be called with ${args.length} arguments as a contract`);
    return { value: b.fn(args) };
  } catch (e) {
    if (e instanceof RtfsError) return { error: new RtfsError(e.code === 'host' ? 'contract/impure' : e.code, `contract evaluation failed: ${e.message}`, e.pos, undefined, e.code === 'host' ? 'contracts must be pure: no calls' : e.hint) };
    throw e;
  }
}

/** Fuel is given in slices so that the host's clock (`overdue`) is consulted between them. */
const CONTRACT_SLICE = 4;

function runSliced(rt: Runtime, fn: Closure, args: Value[], overdue?: () => boolean): Value {
  if (!overdue) return Machine.runPure(rt, fn, args, CONTRACT_FUEL);
  const m = rt.machine();
  m.jit = false; // the interpreter stops at every slice; the fast path would run the whole call
  let spent = 0;
  m.fuel = CONTRACT_SLICE;
  m.start(fn, args);
  for (;;) {
    const out = m.run();
    if (out.status === 'complete') return out.value;
    if (out.status === 'error') throw errorValueToRtfsError(out.error);
    if (out.status === 'suspended') throw new RtfsError('host', 'a contract may not call capabilities or run steps');
    spent += CONTRACT_SLICE;
    if (spent >= CONTRACT_FUEL) throw new RtfsError('fuel-exhausted', `ran out of fuel (${CONTRACT_FUEL} steps)`);
    if (overdue()) throw new RtfsError('contract/timeout', 'the contract took longer than its time limit', undefined, undefined, 'contracts must be quick checks');
    m.fuel = CONTRACT_SLICE;
  }
}

/** The answer the in-process driver gives a request. */
function answer(req: HostRequest, onCall: CallHandler | undefined, rt: Runtime): Resolution {
  switch (req.kind) {
    case 'contract':
      return evaluateContract(rt, req.fn, req.args);
    case 'step-start':
      return { value: null };
    case 'step-end':
      return req.outcome.ok ? { value: req.outcome.value } : { error: req.outcome.error };
    case 'call':
      if (!onCall) {
        return { error: new RtfsError('host', `no host to run capability ${req.capability}`, req.pos, undefined, 'pass --host FILE with a map of mock capabilities, or run the plan with ccos') };
      }
      try {
        return { value: onCall(req.capability, req.args, req) };
      } catch (e) {
        if (e instanceof ErrorValue || e instanceof RtfsError) return { error: e };
        return { error: new RtfsError('host', `capability ${req.capability} failed: ${e instanceof Error ? e.message : String(e)}`, req.pos) };
      }
  }
}

/**
 * Drives a machine to completion with an in-process host. Returns the final value, or throws an
 * `RtfsError` (uncaught RTFS error, fuel exhausted).
 */
export function drive(runtime: Runtime, machine: Machine, opts: EvaluateOptions = {}): Value {
  let rt = runtime;
  let m = machine;
  for (;;) {
    const out: Outcome = m.run();
    if (out.status === 'complete') return out.value;
    if (out.status === 'error') throw errorValueToRtfsError(out.error);
    if (out.status === 'out-of-fuel') throw new RtfsError('fuel-exhausted', `ran out of fuel after ${opts.fuel} steps`, undefined, undefined, 'look for a runaway loop or recursion, or raise the fuel limit');
    opts.onSuspend?.(out.requests);
    if (opts.roundtrip) {
      const json = JSON.stringify(saveMachine(rt, m));
      ({ runtime: rt, machine: m } = restoreMachine(JSON.parse(json)));
      if (opts.jit === false) m.jit = false;
    }
    m.resume(out.requests.map((r) => ({ id: r.id, resolution: answer(r, opts.onCall, rt) })));
  }
}

/** Reads, compiles and runs `source`; returns the value of its last form. */
export function evaluate(source: string, opts: EvaluateOptions = {}): Value {
  const rt = opts.runtime ?? createRuntime();
  const unit = rt.load(source, opts.file ?? '<input>');
  const m = rt.machine();
  if (opts.fuel !== undefined) m.fuel = opts.fuel;
  if (opts.jit === false) m.jit = false;
  m.start(unit.main);
  return drive(rt, m, opts);
}
