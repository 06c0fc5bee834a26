/**
 * RTFS runtime values.
 *
 * Owns: the representation of every RTFS value, value equality and hashing, truthiness,
 * type names, and the exact-integer arithmetic helpers.
 * Must never: import `node:*`, read the clock, use randomness or perform I/O.
 *
 * Representation (chosen so that the common case needs no allocation):
 * - nil → `null`; booleans → JS booleans; strings → JS strings.
 * - integers → JS `number` (always integral, within ±2^53) or `bigint` (outside that range,
 *   within the signed 64-bit range). Any arithmetic leaving 64 bits is an error, never a silent loss.
 * - floats → `RFloat` (boxed so that `1` and `1.0` stay distinct, as `=` requires).
 * - keywords → interned `Keyword`; symbols → `Sym` (not interned: the reader attaches positions).
 * - vectors, maps, sets → Immutable.js persistent `List`, `Map`, `Set` (structural sharing, value
 *   equality and hashing through `equals`/`hashCode`).
 * - lists → `RList` cons cells; regexes → `RRegex`; functions → `Closure` | `Builtin`;
 *   errors → `ErrorValue`.
 * - a value carrying data labels → `Labeled` (only ever created by the host; unlabeled code never
 *   sees the wrapper, so it pays nothing for it).
 */
import { List, Map as IMap, Set as ISet, hash as ihash, is as iis } from 'immutable';

export type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | RFloat
  | Keyword
  | Sym
  | RList
  | Vec
  | RMap
  | RSet
  | RRegex
  | Fn
  | ErrorValue
  | Labeled
  | MetaForm;

export type Vec = List<Value>;
export type RMap = IMap<Value, Value>;
export type RSet = ISet<Value>;
export type Fn = Closure | Builtin;

/** A position in source text (1-based line and column). */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

// ---------------------------------------------------------------------------------------------
// Scalars

/** A float, boxed so that it never compares equal to an integer under `=`. */
export class RFloat {
  constructor(readonly v: number) {}
  equals(o: unknown): boolean {
    return o instanceof RFloat && (o.v === this.v || (Number.isNaN(o.v) && Number.isNaN(this.v)));
  }
  hashCode(): number {
    return (ihash(this.v) ^ 0x5f3759df) | 0;
  }
}

const keywordTable = new Map<string, Keyword>();

/** An interned keyword; `name` excludes the leading colon. Compare with `===`. */
export class Keyword {
  private readonly h: number;
  private constructor(readonly name: string) {
    this.h = (ihash(name) ^ 0x2a2a2a2a) | 0;
  }
  static of(name: string): Keyword {
    let k = keywordTable.get(name);
    if (k === undefined) {
      k = new Keyword(name);
      keywordTable.set(name, k);
    }
    return k;
  }
  equals(o: unknown): boolean {
    return o === this;
  }
  hashCode(): number {
    return this.h;
  }
}

/** Shorthand for `Keyword.of`. */
export const kw = (name: string): Keyword => Keyword.of(name);

/** A symbol. Not interned, so that each occurrence read from source can carry its position. */
export class Sym {
  constructor(
    readonly name: string,
    readonly pos?: SourcePos,
  ) {}
  equals(o: unknown): boolean {
    return o instanceof Sym && o.name === this.name;
  }
  hashCode(): number {
    return (ihash(this.name) ^ 0x13579bdf) | 0;
  }
}

/** A compiled regular expression with its RTFS source text. */
export class RRegex {
  readonly re: RegExp;
  constructor(readonly source: string) {
    this.re = new RegExp(source, 'u');
  }
  equals(o: unknown): boolean {
    return o === this;
  }
  hashCode(): number {
    return ihash(this.source);
  }
}

// ---------------------------------------------------------------------------------------------
// Lists

/** A persistent singly linked list. The empty list is `RList.EMPTY`. */
export class RList {
  static readonly EMPTY: RList = new RList(null, null, 0);
  private h: number | undefined;
  private constructor(
    readonly head: Value,
    readonly tail: RList | null,
    readonly count: number,
  ) {}
  /** Prepends a value. */
  cons(v: Value): RList {
    return new RList(v, this, this.count + 1);
  }
  static from(items: readonly Value[]): RList {
    let l = RList.EMPTY;
    for (let i = items.length - 1; i >= 0; i--) l = l.cons(items[i]);
    return l;
  }
  first(): Value {
    return this.count === 0 ? null : this.head;
  }
  rest(): RList {
    return this.tail ?? RList.EMPTY;
  }
  toArray(): Value[] {
    const out: Value[] = [];
    for (let l: RList = this; l.count > 0; l = l.tail as RList) out.push(l.head);
    return out;
  }
  [Symbol.iterator](): Iterator<Value> {
    let l: RList = this;
    return {
      next: (): IteratorResult<Value> => {
        if (l.count === 0) return { done: true, value: undefined };
        const v = l.head;
        l = l.tail as RList;
        return { done: false, value: v };
      },
    };
  }
  equals(o: unknown): boolean {
    return isSequential(o) && seqEquals(this, o);
  }
  hashCode(): number {
    if (this.h === undefined) this.h = orderedHash(this);
    return this.h;
  }
}

// ---------------------------------------------------------------------------------------------
// Functions

/** A native function of the standard library. Serialized by name. */
export interface Builtin {
  readonly kind: 'builtin';
  readonly name: string;
  /** Minimum and maximum argument counts (`max` = Infinity for variadic). */
  readonly minArity: number;
  readonly maxArity: number;
  /** The implementation; throws `RtfsError` on bad input. */
  readonly fn: (args: Value[]) => Value;
  /** Functions the machine implements itself because they call back into RTFS code. */
  readonly special?: 'apply';
  /** One-line description for docs, `:help` and `rtfs check`. */
  readonly doc?: string;
}

/**
 * A closure: compiled code plus the values of its free variables. `code` is opaque here (the
 * machine owns it); it is serialized as a reference to its compilation unit.
 */
export class Closure {
  readonly kind = 'closure';
  constructor(
    readonly code: CodeRef,
    readonly free: Value[],
    readonly name: string | null,
  ) {}
  equals(o: unknown): boolean {
    return o === this;
  }
  hashCode(): number {
    return ihash(this.code.id);
  }
}

/** What a closure needs to know about its code; the machine's `Code` implements it. */
export interface CodeRef {
  /** Stable id: `<unit hash>:<index>`. */
  readonly id: string;
  readonly name: string | null;
}

// ---------------------------------------------------------------------------------------------
// Errors and labels

/**
 * An RTFS error value: what `throw` raises, `ex-info` builds and `catch` binds. `type` is the
 * keyword `catch` dispatches on (`:type` in `data` for `ex-info` errors).
 */
export class ErrorValue {
  constructor(
    readonly message: string,
    readonly data: RMap,
    readonly type: Keyword,
    readonly pos?: SourcePos,
    /** A line naming the fix, shown by diagnostics. */
    readonly hint?: string,
  ) {}
  equals(o: unknown): boolean {
    return (
      o instanceof ErrorValue && o.message === this.message && o.type === this.type && iis(o.data, this.data)
    );
  }
  hashCode(): number {
    return ihash(this.message);
  }
}

/** A value carrying data labels (`:pii`, `:eu_only`, ...). Created by the host only. */
export class Labeled {
  constructor(
    readonly value: Value,
    readonly labels: ReadonlySet<string>,
  ) {}
  equals(o: unknown): boolean {
    return valueEquals(this.value, o instanceof Labeled ? o.value : (o as Value));
  }
  hashCode(): number {
    return hashValue(this.value);
  }
}

/**
 * `^{...} form` as the reader reads it: the metadata map and the form it annotates. It is a value
 * only so that macros can pass annotated forms through; evaluation never produces one.
 */
export class MetaForm {
  constructor(
    readonly meta: RMap,
    readonly form: Value,
    readonly pos: SourcePos,
  ) {}
  equals(o: unknown): boolean {
    return o === this;
  }
  hashCode(): number {
    return 7;
  }
}

/** Removes a label wrapper, if any. */
export function unlabel(v: Value): Value {
  return v instanceof Labeled ? v.value : v;
}

/**
 * Adds the labels `v` carries — its own and those inside it (elements, map keys and values) — to
 * `into`, made when the first label is found; returns it, or null if there were none. Most values
 * carry none, so most calls make no set.
 */
export function collectLabels(v: Value, into: Set<string> | null): Set<string> | null {
  if (v instanceof Labeled) {
    into ??= new Set();
    for (const l of v.labels) into.add(l);
    return collectLabels(v.value, into);
  }
  if (List.isList(v) || ISet.isSet(v) || v instanceof RList) for (const x of v as Iterable<Value>) into = collectLabels(x, into);
  else if (IMap.isMap(v)) (v as RMap).forEach((x, k) => void (into = collectLabels(x, collectLabels(k as Value, into))));
  return into;
}

// ---------------------------------------------------------------------------------------------
// Predicates

export const isVector = (v: unknown): v is Vec => List.isList(v);
export const isMap = (v: unknown): v is RMap => IMap.isMap(v);
export const isSet = (v: unknown): v is RSet => ISet.isSet(v);
export const isList = (v: unknown): v is RList => v instanceof RList;
export const isSequential = (v: unknown): v is Vec | RList => v instanceof RList || List.isList(v);
export const isInt = (v: unknown): v is number | bigint =>
  typeof v === 'bigint' || (typeof v === 'number');
export const isNumber = (v: unknown): v is number | bigint | RFloat => isInt(v) || v instanceof RFloat;
export const isFn = (v: unknown): v is Fn =>
  v instanceof Closure || (typeof v === 'object' && v !== null && (v as Builtin).kind === 'builtin');

/** Only `nil` and `false` are falsy (Clojure). */
export function truthy(v: Value): boolean {
  if (v instanceof Labeled) v = v.value;
  return v !== null && v !== false;
}

// ---------------------------------------------------------------------------------------------
// Equality and hashing

function seqEquals(a: Iterable<Value>, b: Iterable<Value>): boolean {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return !!x.done && !!y.done;
    if (!valueEquals(x.value, y.value)) return false;
  }
}

/**
 * `=`: structural, type-strict for numbers (1 ≠ 1.0), lists and vectors with the same elements are
 * equal (Clojure), maps and sets ignore order.
 */
export function valueEquals(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (a instanceof Labeled) a = a.value;
  if (b instanceof Labeled) b = b.value;
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) {
    return a === b;
  }
  if (a instanceof RFloat && b instanceof RFloat) return a.v === b.v; // NaN ≠ NaN, as in Clojure
  if (isSequential(a)) {
    if (!isSequential(b)) return false;
    const ca = a instanceof RList ? a.count : a.size;
    const cb = b instanceof RList ? b.count : b.size;
    return ca === cb && seqEquals(a, b);
  }
  return iis(a, b);
}

function orderedHash(items: Iterable<Value>): number {
  let h = 1;
  for (const v of items) h = (Math.imul(31, h) + hashValue(v)) | 0;
  return h;
}

/** A hash consistent with `valueEquals`. */
export function hashValue(v: Value): number {
  if (v instanceof Labeled) v = v.value;
  if (List.isList(v)) return orderedHash(v as Vec);
  return ihash(v as unknown as string);
}

// ---------------------------------------------------------------------------------------------
// Integers

const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;

/** Brings an exact integer result back to the canonical representation, or throws on overflow. */
export function normalizeBig(b: bigint, op: string): number | bigint {
  if (b < MIN_I64 || b > MAX_I64) throw new RtfsError('arithmetic', `integer overflow in ${op}: result leaves the 64-bit range`);
  if (b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(b);
  return b;
}

/** Makes an integer from a JS number result that may have left the exact range. */
export function intResult(r: number, a: number | bigint, b: number | bigint, op: string, exact: (x: bigint, y: bigint) => bigint): number | bigint {
  if (Number.isSafeInteger(r)) return r;
  return normalizeBig(exact(BigInt(a), BigInt(b)), op);
}

/** The numeric value of an RTFS number as a JS float. */
export function toJsNumber(v: number | bigint | RFloat): number {
  return v instanceof RFloat ? v.v : Number(v);
}

// ---------------------------------------------------------------------------------------------
// Type names

/** The RTFS type name of a value, as `type-name` returns it. */
export function typeName(v: Value): string {
  if (v === null) return 'nil';
  switch (typeof v) {
    case 'boolean':
      return 'boolean';
    case 'number':
    case 'bigint':
      return 'integer';
    case 'string':
      return 'string';
  }
  if (v instanceof RFloat) return 'float';
  if (v instanceof Keyword) return 'keyword';
  if (v instanceof Sym) return 'symbol';
  if (v instanceof RList) return 'list';
  if (List.isList(v)) return 'vector';
  if (IMap.isMap(v)) return 'map';
  if (ISet.isSet(v)) return 'set';
  if (v instanceof RRegex) return 'regex';
  if (v instanceof ErrorValue) return 'error';
  if (v instanceof Labeled) return typeName(v.value);
  if (v instanceof MetaForm) return typeName(v.form);
  return 'function';
}

// ---------------------------------------------------------------------------------------------
// Errors raised by the kernel

/**
 * Every error the kernel raises. `code` is stable (`parse`, `unbound-symbol`, `arity`, `type`,
 * `arithmetic`, `index`, `fuel-exhausted`, ...); `pos` names the place when known.
 */
export class RtfsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    public pos?: SourcePos,
    /** RTFS data carried by `ex-info` errors and host errors. */
    readonly data?: RMap,
    /** Extra lines for a diagnostic (a hint naming the fix). */
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'RtfsError';
  }
}

/** The empty collections, shared. */
export const EMPTY_VECTOR: Vec = List<Value>();
export const EMPTY_MAP: RMap = IMap<Value, Value>();
export const EMPTY_SET: RSet = ISet<Value>();

/** Builds a map from alternating keys and values. */
export function mapOf(...kvs: Value[]): RMap {
  let m = EMPTY_MAP;
  for (let i = 0; i < kvs.length; i += 2) m = m.set(kvs[i], kvs[i + 1]);
  return m;
}

export { List, IMap, ISet };
