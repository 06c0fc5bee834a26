/**
 * Machine state ⇄ JSON.
 *
 * Owns: the JSON encoding of every RTFS value and of a machine's complete state (fibers, frames,
 * handlers, scopes, pending requests, globals), and restoring it into a fresh runtime in any
 * process. Code is referenced by id (`<unit hash>:<index>`); the state carries the source of its
 * units, which recompile to the same ids.
 * Must never: import `node:*`; lose information (a restored machine behaves exactly as the saved
 * one would have).
 */
import { Box, type Proto } from './code.js';
import { Fiber, Machine, type Frame, type Handler, type HostRequest, type Resolution, type Scope } from './machine.js';
import { MetaForm } from './reader.js';
import { Runtime } from './runtime.js';
import {
  Closure,
  ErrorValue,
  IMap,
  ISet,
  Keyword,
  Labeled,
  List,
  RFloat,
  RList,
  RRegex,
  RtfsError,
  Sym,
  EMPTY_MAP,
  type Builtin,
  type RMap,
  type SourcePos,
  type Value,
} from './values.js';

/** The format tag of saved machine states. */
export const STATE_FORMAT = 'rtfs-machine/1';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A saved machine: plain JSON, safe to store and to move between processes. */
export interface MachineState {
  format: typeof STATE_FORMAT;
  prelude: string;
  units: { id: string; file: string; source: string }[];
  globals: [string, Json][];
  fuel: number | null;
  requestSeq: number;
  labelsActive: boolean;
  objects: Json[];
  fibers: Json[];
  nextFiberId: number;
}

// -------------------------------------------------------------------------------------------------
// Encoding

class Encoder {
  readonly objects: Json[] = [];
  private readonly ids = new Map<object, number>();

  value(v: Value | MetaForm): Json {
    if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
    if (typeof v === 'number') return v;
    if (typeof v === 'bigint') return { $: 'big', v: v.toString() };
    if (v instanceof Keyword) return { $: 'k', n: v.name };
    if (List.isList(v)) {
      const out: Json[] = [];
      for (const x of v as List<Value>) out.push(this.value(x));
      return out;
    }
    if (IMap.isMap(v)) {
      const e: Json[] = [];
      (v as RMap).forEach((x, k) => e.push(this.value(k), this.value(x)));
      return { $: 'm', e };
    }
    if (v instanceof RFloat) return { $: 'f', v: Number.isFinite(v.v) ? v.v : String(v.v) };
    if (v instanceof RList) return { $: 'l', i: v.toArray().map((x) => this.value(x)) };
    if (ISet.isSet(v)) return { $: 's', i: (v as ISet<Value>).toArray().map((x) => this.value(x)) };
    if (v instanceof Sym) return { $: 'y', n: v.name };
    if (v instanceof RRegex) return { $: 're', s: v.source };
    if (v instanceof ErrorValue) return { $: 'err', m: v.message, d: this.value(v.data), t: v.type.name, p: pos(v.pos), h: v.hint ?? null };
    if (v instanceof Labeled) return { $: 'lab', v: this.value(v.value), l: [...v.labels] };
    if (v instanceof Closure) return { $: 'c', r: this.object(v) };
    if (v instanceof MetaForm) return { $: 'meta', m: this.value(v.meta), f: this.value(v.form) };
    if ((v as unknown) instanceof Box) return { $: 'box', r: this.object(v as unknown as Box) };
    if ((v as Builtin).kind === 'builtin') return { $: 'b', n: (v as Builtin).name };
    throw new RtfsError('internal', `cannot serialize ${String(v)}`);
  }

  private object(o: Closure | Box): number {
    const known = this.ids.get(o);
    if (known !== undefined) return known;
    const id = this.objects.length;
    this.ids.set(o, id);
    this.objects.push(null);
    if (o instanceof Closure) this.objects[id] = { $: 'closure', p: o.code.id, n: o.name, f: o.free.map((x) => this.value(x)) };
    else this.objects[id] = { $: 'box', v: this.value(o.value) };
    return id;
  }
}

function pos(p: SourcePos | undefined): Json {
  return p ? [p.file, p.line, p.col] : null;
}

function encodeScope(e: Encoder, s: Scope): Json {
  return { k: s.kind, n: s.name, m: e.value(s.meta), o: e.value(s.opts), fd: s.frameDepth, sp: s.sp, rp: s.retryPc, hd: s.handlerDepth, at: s.attempt ?? 0 };
}

function encodeRequest(e: Encoder, r: HostRequest): Json {
  const base = { kind: r.kind, id: r.id, fiber: r.fiber, scopes: r.scopes.map((s) => encodeScope(e, s)), stepPath: [...r.stepPath], pos: pos(r.pos) };
  switch (r.kind) {
    case 'call':
      return { ...base, capability: r.capability, args: r.args.map((a) => e.value(a)), meta: e.value(r.meta) };
    case 'step-start':
      return { ...base, name: r.name, opts: e.value(r.opts), meta: e.value(r.meta) };
    case 'contract':
      return { ...base, phase: r.phase, fn: e.value(r.fn), args: r.args.map((a) => e.value(a)) };
    case 'step-end':
      return { ...base, name: r.name, ok: r.outcome.ok, v: r.outcome.ok ? e.value(r.outcome.value) : e.value(r.outcome.error) };
  }
}

function encodeResolution(e: Encoder, r: Resolution): Json {
  if ('retry' in r) return { retry: true };
  if ('error' in r) return { error: e.value(r.error instanceof ErrorValue ? r.error : new ErrorValue(r.error.message, r.error.data ?? EMPTY_MAP, Keyword.of(r.error.code), r.error.pos, r.error.hint)) };
  return { value: e.value(r.value) };
}

/** Saves the complete state of `m`, whose code was loaded into `rt`. */
export function saveMachine(rt: Runtime, m: Machine): MachineState {
  const e = new Encoder();
  const globals: [string, Json][] = [];
  // Over the values, not the entries: a state is saved at every pause and step boundary, and
  // each entry of the ~250 core cells would be an array allocated only to be skipped.
  for (const cell of rt.cells.values()) if (!cell.core && cell.defined) globals.push([cell.name, e.value(cell.value)]);
  const fibers = [...m.fibers.values()].map((f) => ({
    id: f.id,
    parent: f.parent,
    status: f.status,
    stack: f.stack.map((v) => e.value(v)),
    frames: f.frames.map((fr) => ({ c: e.value(fr.closure), a: (fr.closure.code as Proto).arities.indexOf(fr.arity), pc: fr.pc, bp: fr.bp })),
    handlers: f.handlers.map((h) => [h.frameDepth, h.sp, h.pc, h.scopeDepth]),
    scopes: f.scopes.map((s) => encodeScope(e, s)),
    request: f.request ? encodeRequest(e, f.request) : null,
    inbox: f.inbox ? encodeResolution(e, f.inbox) : null,
    result: e.value(f.result),
    error: f.error ? e.value(f.error) : null,
    children: f.children,
    sagas: f.sagas.map((g) => ({ p: g.primary, t: e.value(g.thunk) })),
    pendingCancel: f.pendingCancel ? e.value(f.pendingCancel) : null,
    branchFail: f.onBranchFail,
  }));
  return {
    format: STATE_FORMAT,
    prelude: rt.preludeId,
    units: rt.units.map((u) => ({ id: u.id, file: u.file, source: u.source })),
    globals,
    fuel: Number.isFinite(m.fuel) ? m.fuel : null,
    requestSeq: m.requestSeq,
    labelsActive: m.labelsActive,
    objects: e.objects,
    fibers: fibers as unknown as Json[],
    nextFiberId: m.nextFiberId,
  };
}

// -------------------------------------------------------------------------------------------------
// Decoding

type J = { [k: string]: Json };

class Decoder {
  private readonly made: (Closure | Box | undefined)[] = [];
  constructor(
    private readonly rt: Runtime,
    private readonly objects: Json[],
  ) {}

  value(j: Json): Value {
    if (j === null || typeof j === 'boolean' || typeof j === 'string' || typeof j === 'number') return j;
    if (Array.isArray(j)) return List(j.map((x) => this.value(x)));
    const o = j as J;
    switch (o.$) {
      case 'big':
        return BigInt(o.v as string);
      case 'k':
        return Keyword.of(o.n as string);
      case 'm': {
        const e = o.e as Json[];
        let m = EMPTY_MAP;
        for (let i = 0; i < e.length; i += 2) m = m.set(this.value(e[i]), this.value(e[i + 1]));
        return m;
      }
      case 'f':
        return new RFloat(typeof o.v === 'string' ? Number(o.v) : (o.v as number));
      case 'l':
        return RList.from((o.i as Json[]).map((x) => this.value(x)));
      case 's':
        return ISet((o.i as Json[]).map((x) => this.value(x)));
      case 'y':
        return new Sym(o.n as string);
      case 're':
        return new RRegex(o.s as string);
      case 'err':
        return new ErrorValue(o.m as string, this.value(o.d) as RMap, Keyword.of(o.t as string), unpos(o.p), (o.h as string | null) ?? undefined);
      case 'lab':
        return new Labeled(this.value(o.v), new Set(o.l as string[]));
      case 'c':
      case 'box':
        return this.object(o.r as number) as unknown as Value;
      case 'meta':
        return this.value(o.f);
      case 'b': {
        const c = this.rt.findCell(o.n as string);
        if (!c || !c.defined) throw new RtfsError('state', `saved state refers to unknown builtin ${String(o.n)}`);
        return c.value;
      }
      default:
        throw new RtfsError('state', `unknown value tag ${String(o.$)} in saved state`);
    }
  }

  private object(i: number): Closure | Box {
    const known = this.made[i];
    if (known) return known;
    const o = this.objects[i] as J;
    if (!o) throw new RtfsError('state', `saved state refers to missing object ${i}`);
    if (o.$ === 'box') {
      const b = new Box(null);
      this.made[i] = b;
      b.value = this.value(o.v);
      return b;
    }
    const proto = this.rt.proto(o.p as string);
    if (!proto) throw new RtfsError('state', `saved state refers to code ${String(o.p)} that is not loaded`, undefined, undefined, 'the program source in the state does not match this version of RTFS');
    const free: Value[] = [];
    const c = new Closure(proto, free, (o.n as string | null) ?? null);
    this.made[i] = c;
    for (const x of o.f as Json[]) free.push(this.value(x));
    return c;
  }
}

function unpos(p: Json): SourcePos | undefined {
  return Array.isArray(p) ? { file: p[0] as string, line: p[1] as number, col: p[2] as number } : undefined;
}

function decodeScope(d: Decoder, s: J): Scope {
  return { kind: s.k as 'plan' | 'step' | 'saga', name: s.n as string | null, meta: d.value(s.m), opts: d.value(s.o), frameDepth: s.fd as number, sp: s.sp as number, retryPc: s.rp as number, handlerDepth: s.hd as number, attempt: (s.at as number | undefined) ?? 0 };
}

function decodeRequest(d: Decoder, r: J): HostRequest {
  const base = { id: r.id as string, fiber: r.fiber as number, scopes: (r.scopes as J[]).map((s) => decodeScope(d, s)), stepPath: r.stepPath as string[], pos: unpos(r.pos) };
  switch (r.kind) {
    case 'call':
      return { kind: 'call', ...base, capability: r.capability as string, args: (r.args as Json[]).map((a) => d.value(a)), meta: d.value(r.meta) };
    case 'step-start':
      return { kind: 'step-start', ...base, name: r.name as string, opts: d.value(r.opts), meta: d.value(r.meta) };
    case 'contract':
      return { kind: 'contract', ...base, phase: r.phase as 'pre' | 'post' | 'invariant', fn: d.value(r.fn), args: (r.args as Json[]).map((a) => d.value(a)) };
    case 'step-end':
      return { kind: 'step-end', ...base, name: r.name as string, outcome: r.ok ? { ok: true, value: d.value(r.v) } : { ok: false, error: d.value(r.v) as ErrorValue } };
    default:
      throw new RtfsError('state', `unknown request kind ${String(r.kind)}`);
  }
}

function decodeResolution(d: Decoder, r: J): Resolution {
  if (r.retry) return { retry: true };
  if ('error' in r) return { error: d.value(r.error) as ErrorValue };
  return { value: d.value(r.value) };
}

/**
 * Restores a saved machine into a fresh runtime: recompiles its units (same ids), restores the
 * globals, then the fibers. Throws `RtfsError` (code `state`) for a state it cannot trust.
 */
export function restoreMachine(state: MachineState, rt: Runtime = new Runtime()): { runtime: Runtime; machine: Machine } {
  if (!state || state.format !== STATE_FORMAT) throw new RtfsError('state', `not a saved RTFS machine (format ${String(state?.format)})`);
  if (state.prelude !== rt.preludeId) {
    throw new RtfsError('state', `saved with a different standard library (${state.prelude}, this runtime has ${rt.preludeId})`, undefined, undefined, 'resume with the same version of RTFS that saved the state');
  }
  for (const u of state.units) {
    const loaded = rt.load(u.source, u.file, u.id);
    if (loaded.id !== u.id) throw new RtfsError('state', `unit ${u.id} did not recompile to the same id`);
  }
  const d = new Decoder(rt, state.objects);
  for (const [name, v] of state.globals) {
    const cell = rt.cell(name);
    cell.value = d.value(v);
    cell.defined = true;
  }
  const m = new Machine(rt);
  m.fuel = state.fuel ?? Infinity;
  m.requestSeq = state.requestSeq;
  m.labelsActive = state.labelsActive;
  const list = (state.fibers as J[]).map((fj) => {
    const f = new Fiber(fj.id as number, fj.parent as number);
    f.status = fj.status as Fiber['status'];
    f.stack = (fj.stack as Json[]).map((x) => d.value(x));
    f.frames = (fj.frames as J[]).map((fr): Frame => {
      const closure = d.value(fr.c) as unknown as Closure;
      const arity = (closure.code as Proto).arities[fr.a as number];
      if (!arity) throw new RtfsError('state', 'saved frame refers to a missing arity');
      return { arity, closure, pc: fr.pc as number, bp: fr.bp as number };
    });
    f.handlers = (fj.handlers as number[][]).map((h): Handler => ({ frameDepth: h[0], sp: h[1], pc: h[2], scopeDepth: h[3] }));
    f.scopes = (fj.scopes as J[]).map((s) => decodeScope(d, s));
    f.request = fj.request ? decodeRequest(d, fj.request as J) : null;
    f.inbox = fj.inbox ? decodeResolution(d, fj.inbox as J) : null;
    f.result = d.value(fj.result);
    f.error = fj.error ? (d.value(fj.error) as ErrorValue) : null;
    f.children = fj.children as number[];
    f.sagas = ((fj.sagas as J[] | undefined) ?? []).map((g) => ({ primary: g.p as string, thunk: d.value(g.t) }));
    f.onBranchFail = (fj.branchFail as 'await' | 'cancel' | undefined) ?? 'await';
    f.pendingCancel = fj.pendingCancel ? (d.value(fj.pendingCancel) as ErrorValue) : null;
    return f;
  });
  m.fibers = new Map(list.map((f) => [f.id, f]));
  m.nextFiberId = state.nextFiberId ?? Math.max(0, ...list.map((f) => f.id)) + 1;
  return { runtime: rt, machine: m };
}

/**
 * Encodes one value as self-contained JSON (the encoding states use). Functions are kept by
 * reference to their compiled code, so decoding them needs a runtime that loaded that code.
 */
export function valueToJson(v: Value): Json {
  const e = new Encoder();
  const j = e.value(v);
  return e.objects.length === 0 ? j : { $: 'doc', v: j, o: e.objects };
}

/** Decodes `valueToJson` output; `rt` resolves functions' code (a fresh runtime otherwise). */
export function valueFromJson(j: Json, rt?: Runtime): Value {
  if (j !== null && typeof j === 'object' && !Array.isArray(j) && (j as J).$ === 'doc') {
    const doc = j as J;
    return new Decoder(rt ?? new Runtime(), doc.o as Json[]).value(doc.v);
  }
  return new Decoder(rt ?? sharedDecoderRuntime(), []).value(j);
}

let decoderRuntime: Runtime | null = null;
function sharedDecoderRuntime(): Runtime {
  decoderRuntime ??= new Runtime();
  return decoderRuntime;
}

/** Encodes an error (an RTFS error value or a kernel error) as JSON. */
export function errorToJson(e: ErrorValue | RtfsError): Json {
  const ev = e instanceof ErrorValue ? e : new ErrorValue(e.message, (e.data ?? EMPTY_MAP).set(Keyword.of('code'), Keyword.of(e.code)), Keyword.of(e.code), e.pos, e.hint);
  return new Encoder().value(ev);
}
