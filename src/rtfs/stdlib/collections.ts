/**
 * Native collection functions: sequences, vectors, lists, maps, sets, and the total order `sort`
 * and `compare` use.
 *
 * Sequence functions are eager: where Clojure returns a lazy seq we return a vector (`rest` of a
 * list stays a list). `nil` acts as the empty collection where Clojure says so. Strings are
 * sequences of one-character strings (code points). Map entries are 2-element vectors `[k v]`.
 * Must never: call back into RTFS code, import `node:*`, read the clock, use randomness.
 */
import {
  EMPTY_MAP,
  EMPTY_SET,
  EMPTY_VECTOR,
  ErrorValue,
  ISet,
  Keyword,
  List,
  RFloat,
  RList,
  RRegex,
  RtfsError,
  Sym,
  hashValue,
  isInt,
  isMap,
  isNumber,
  isSet,
  isVector,
  typeName,
  valueEquals,
  type Builtin,
  type RMap,
  type RSet,
  type Value,
  type Vec,
} from '../values.js';
import { prStr } from '../printer.js';
import { defineBuiltin, typeError } from './define.js';
import { numCmp, smallInt, type Num } from './numbers.js';

/** The largest collection `range`, `repeat` and friends will build. */
export const MAX_BUILD = 10_000_000;

const SURROGATE = /[\uD800-\uDFFF]/;

/** The characters (code points) of a string, as 1-character strings. */
export function chars(s: string): string[] {
  return SURROGATE.test(s) ? Array.from(s) : s.split('');
}

/** The number of characters (code points) of a string. */
export function charCount(s: string): number {
  return SURROGATE.test(s) ? Array.from(s).length : s.length;
}

/** A map entry as RTFS sees it: the vector `[k v]`. */
export const entry = (k: Value, v: Value): Vec => List<Value>([k, v]);

/** True for values `seq` accepts: nil, vectors, lists, maps, sets, strings. */
export function isSeqable(v: Value): boolean {
  return v === null || typeof v === 'string' || v instanceof RList || isVector(v) || isMap(v) || isSet(v);
}

/** The elements of a seqable value as an array; anything else is a type error naming `fname`. */
export function items(fname: string, v: Value, argIndex?: number): Value[] {
  if (v === null) return [];
  if (isVector(v)) return v.toArray();
  if (v instanceof RList) return v.toArray();
  if (typeof v === 'string') return chars(v);
  if (isMap(v)) {
    const out: Value[] = [];
    v.forEach((val, k) => void out.push(entry(k, val)));
    return out;
  }
  if (isSet(v)) return v.toArray();
  return typeError(fname, 'a collection (vector, list, map, set, string or nil)', v, argIndex);
}

/** The elements of a seqable value as a vector (the vector itself when it is one). */
export function toVec(fname: string, v: Value, argIndex?: number): Vec {
  if (isVector(v)) return v;
  return List<Value>(items(fname, v, argIndex));
}

/** The number of elements of a collection (or characters of a string); nil → 0. */
export function countOf(fname: string, v: Value, argIndex?: number): number {
  if (v === null) return 0;
  if (typeof v === 'string') return charCount(v);
  if (isVector(v) || isMap(v) || isSet(v)) return v.size;
  if (v instanceof RList) return v.count;
  return typeError(fname, 'a collection (vector, list, map, set, string or nil)', v, argIndex);
}

const vec = (xs: Value[]): Vec => List<Value>(xs);

function nonNegCount(fname: string, v: Value, i: number): number {
  if (isInt(v)) return v < 0 ? 0 : typeof v === 'bigint' ? Number.MAX_SAFE_INTEGER : v;
  if (v instanceof RFloat) return v.v < 0 ? 0 : Math.ceil(v.v);
  return typeError(fname, 'a number', v, i);
}

function buildLimit(fname: string, n: number): void {
  if (n > MAX_BUILD) throw new RtfsError('value', `${fname}: would build ${n} elements; the limit is ${MAX_BUILD}`);
}

// ---------------------------------------------------------------------------------------------
// Total order

function rank(v: Value): number {
  if (v === null) return 0;
  if (typeof v === 'boolean') return 1;
  if (isNumber(v)) return 2;
  if (typeof v === 'string') return 3;
  if (v instanceof Keyword) return 4;
  if (v instanceof Sym) return 5;
  if (isVector(v)) return 6;
  if (v instanceof RList) return 7;
  if (isMap(v)) return 8;
  if (isSet(v)) return 9;
  if (v instanceof RRegex) return 10;
  if (v instanceof ErrorValue) return 11;
  return 12;
}

const strCmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function seqCmp(a: Value[], b: Value[]): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  for (let i = 0; i < a.length; i++) {
    const c = compareValues(a[i], b[i]);
    if (c !== 0) return c;
  }
  return 0;
}

/**
 * A total order over all values: nil < booleans < numbers < strings < keywords < symbols < vectors
 * < lists < maps < sets < others. Numbers compare numerically (int and float mixed; NaN last);
 * strings, keywords and symbols by name; vectors and lists by length, then elementwise (Clojure);
 * maps and sets by size, then by their sorted entries.
 */
export function compareValues(a: Value, b: Value): number {
  if (a === b) return 0;
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 0:
      return 0;
    case 1:
      return a === b ? 0 : a === false ? -1 : 1;
    case 2: {
      const c = numCmp(a as Num, b as Num);
      if (!Number.isNaN(c)) return c;
      const an = a instanceof RFloat && Number.isNaN(a.v);
      const bn = b instanceof RFloat && Number.isNaN(b.v);
      return an === bn ? 0 : an ? 1 : -1;
    }
    case 3:
      return strCmp(a as string, b as string);
    case 4:
      return strCmp((a as Keyword).name, (b as Keyword).name);
    case 5:
      return strCmp((a as Sym).name, (b as Sym).name);
    case 6:
    case 7:
      return seqCmp(items('compare', a), items('compare', b));
    case 8:
    case 9:
      return seqCmp(items('compare', a).sort(compareValues), items('compare', b).sort(compareValues));
    default: {
      const c = strCmp(typeName(a), typeName(b));
      return c !== 0 ? c : strCmp(prStr(a), prStr(b));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers for individual functions

const NOT_FOUND = Symbol('not-found') as unknown as Value;

function nthOf(fname: string, coll: Value, idx: Value, dflt: Value | typeof NOT_FOUND): Value {
  if (!isInt(idx)) return typeError(fname, 'an integer index', idx, 1);
  const i = typeof idx === 'bigint' ? -1 : idx;
  let n: number;
  let get: (i: number) => Value;
  if (coll === null) return dflt === NOT_FOUND ? null : dflt;
  if (isVector(coll)) {
    n = coll.size;
    get = (i) => coll.get(i) as Value;
  } else if (typeof coll === 'string') {
    const cs = chars(coll);
    n = cs.length;
    get = (i) => cs[i];
  } else if (coll instanceof RList) {
    n = coll.count;
    get = (i) => {
      let l = coll;
      for (let k = 0; k < i; k++) l = l.rest();
      return l.first();
    };
  } else return typeError(fname, 'a vector, list, string or nil', coll, 0);
  if (i >= 0 && i < n) return get(i);
  if (dflt !== NOT_FOUND) return dflt;
  throw new RtfsError('index', `${fname}: index ${idx} is out of range for a ${typeName(coll)} of ${n} element${n === 1 ? '' : 's'}`);
}

function getOf(coll: Value, k: Value, dflt: Value): Value {
  if (isMap(coll)) {
    const v = coll.get(k, NOT_FOUND);
    return v === NOT_FOUND ? dflt : v;
  }
  if (isVector(coll)) {
    if (typeof k === 'number' && k >= 0 && k < coll.size) return coll.get(k) as Value;
    return dflt;
  }
  if (isSet(coll)) return coll.has(k) ? k : dflt;
  if (typeof coll === 'string') {
    if (typeof k === 'number' && k >= 0) {
      const cs = chars(coll);
      if (k < cs.length) return cs[k];
    }
    return dflt;
  }
  return dflt;
}

function assocOne(fname: string, coll: Value, k: Value, v: Value): Value {
  if (coll === null) return EMPTY_MAP.set(k, v);
  if (isMap(coll)) return coll.set(k, v);
  if (isVector(coll)) {
    if (!isInt(k)) return typeError(fname, 'an integer index for a vector', k, 1);
    if (typeof k === 'number' && k >= 0 && k <= coll.size) return coll.set(k, v);
    throw new RtfsError('index', `${fname}: index ${k} is out of range for a vector of ${coll.size} element${coll.size === 1 ? '' : 's'} (at most ${coll.size})`);
  }
  return typeError(fname, 'a map, a vector or nil', coll, 0);
}

function conjOne(fname: string, coll: Value, x: Value): Value {
  if (coll === null) return RList.EMPTY.cons(x);
  if (isVector(coll)) return coll.push(x);
  if (coll instanceof RList) return coll.cons(x);
  if (isSet(coll)) return coll.add(x);
  if (isMap(coll)) {
    if (isVector(x) && x.size === 2) return coll.set(x.get(0) as Value, x.get(1) as Value);
    if (isMap(x)) return coll.merge(x);
    if (x === null) return coll;
    return typeError(fname, 'a [key value] vector or a map to add to a map', x, 1);
  }
  return typeError(fname, 'a collection (vector, list, map, set or nil)', coll, 0);
}

function mapArg(fname: string, v: Value, i: number): RMap | null {
  if (v === null) return null;
  if (isMap(v)) return v;
  return typeError(fname, 'a map or nil', v, i);
}

function setArg(fname: string, v: Value, i: number): RSet {
  if (v === null) return EMPTY_SET;
  if (isSet(v)) return v;
  return typeError(fname, 'a set', v, i);
}

function seqOf(v: Value): Value {
  if (v === null) return null;
  if (isVector(v)) return v.size === 0 ? null : v;
  if (v instanceof RList) return v.count === 0 ? null : v;
  const xs = items('seq', v, 0);
  return xs.length === 0 ? null : vec(xs);
}

function restOf(fname: string, v: Value): Value {
  if (v instanceof RList) return v.rest();
  if (isVector(v)) return v.size === 0 ? EMPTY_VECTOR : v.rest();
  return vec(items(fname, v, 0).slice(1));
}

function partitionImpl(fname: string, n: number, step: number, pad: Value[] | null, all: boolean, xs: Value[]): Vec {
  if (n <= 0) throw new RtfsError('value', `${fname}: expected a positive partition size, got ${n}`);
  if (step <= 0) throw new RtfsError('value', `${fname}: expected a positive step, got ${step}`);
  const out: Value[] = [];
  for (let i = 0; i < xs.length; i += step) {
    const chunk = xs.slice(i, i + n);
    if (chunk.length < n) {
      if (all) out.push(vec(chunk));
      else if (pad !== null) out.push(vec(chunk.concat(pad.slice(0, n - chunk.length))));
      break;
    }
    out.push(vec(chunk));
  }
  return vec(out);
}

function flattenInto(v: Value, out: Value[]): void {
  if (isVector(v) || v instanceof RList) for (const x of v) flattenInto(x, out);
  else out.push(v);
}

function rangeOf(fname: string, args: Value[]): Vec {
  const ns = args.map((a, i) => {
    if (!isNumber(a)) return typeError(fname, 'a number', a, i);
    return a;
  });
  const [start, end, step]: Num[] = ns.length === 1 ? [0, ns[0], 1] : ns.length === 2 ? [ns[0], ns[1], 1] : [ns[0], ns[1], ns[2]];
  const anyFloat = ns.some((x) => x instanceof RFloat);
  const s = anyFloat ? Number(start instanceof RFloat ? start.v : start) : start;
  const e = anyFloat ? Number(end instanceof RFloat ? end.v : end) : end;
  const st = anyFloat ? Number(step instanceof RFloat ? step.v : step) : step;
  if (st == 0) {
    if (s == e) return EMPTY_VECTOR;
    throw new RtfsError('value', `${fname}: a step of 0 would never reach the end`);
  }
  if (anyFloat) {
    const a = s as number;
    const b = e as number;
    const d = st as number;
    if (!Number.isFinite(a) || !Number.isFinite(b) || !Number.isFinite(d)) throw new RtfsError('value', `${fname}: expected finite numbers`);
    buildLimit(fname, Math.max(0, Math.ceil((b - a) / d)));
    // As Clojure: the first item is start itself, later items add the step repeatedly (an integer
    // start and step stay integers even when the end is a float).
    const intSteps = !(start instanceof RFloat) && !(step instanceof RFloat);
    const out: Value[] = [];
    let x = a;
    for (let i = 0; d > 0 ? x < b : x > b; i++) {
      out.push(i === 0 ? start : intSteps ? x : new RFloat(x));
      x += d;
    }
    return vec(out);
  }
  const a = BigInt(s as number | bigint);
  const b = BigInt(e as number | bigint);
  const d = BigInt(st as number | bigint);
  let nb = (b - a) / d;
  if ((b - a) % d !== 0n) nb += 1n;
  if (nb < 0n) nb = 0n;
  if (nb > BigInt(MAX_BUILD)) buildLimit(fname, Number(nb));
  const n = Number(nb);
  const out: Value[] = new Array(n);
  if (typeof s === 'number' && typeof e === 'number' && typeof st === 'number') {
    for (let i = 0; i < n; i++) out[i] = s + i * st;
  } else {
    for (let i = 0; i < n; i++) {
      const x = a + BigInt(i) * d;
      out[i] = x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x;
    }
  }
  return vec(out);
}

/** Stable sort by the total order. */
export function sortNatural(xs: Value[]): Value[] {
  return xs.slice().sort(compareValues);
}

function emptyOf(v: Value): Value {
  if (isVector(v)) return EMPTY_VECTOR;
  if (v instanceof RList) return RList.EMPTY;
  if (isMap(v)) return EMPTY_MAP;
  if (isSet(v)) return EMPTY_SET;
  return null;
}

function keyOrVal(fname: string, which: 0 | 1, e: Value): Value {
  if (isVector(e) && e.size === 2) return e.get(which) as Value;
  return typeError(fname, 'a map entry [key value]', e, 0);
}

function getIn(m: Value, ks: Value, dflt: Value): Value {
  let cur = m;
  for (const k of items('get-in', ks, 1)) {
    cur = getOf(cur, k, NOT_FOUND);
    if (cur === NOT_FOUND) return dflt;
  }
  return cur;
}

function assocIn(m: Value, ks: Value[], v: Value): Value {
  if (ks.length === 0) throw new RtfsError('value', 'assoc-in: expected a non-empty key path');
  const [k, ...more] = ks;
  if (more.length === 0) return assocOne('assoc-in', m, k, v);
  return assocOne('assoc-in', m, k, assocIn(getOf(m, k, null), more, v));
}

// ---------------------------------------------------------------------------------------------

const COLL = 'a collection';
const b = defineBuiltin;

export const collectionsBuiltins: Builtin[] = [
  b('count', 1, 1, (a) => countOf('count', a[0], 0), '(count coll): the number of elements (characters of a string); nil → 0'),
  b('length', 1, 1, (a) => countOf('length', a[0], 0), '(length coll): same as count (the original RTFS name)'),
  b(
    'first',
    1,
    1,
    (a) => {
      const c = a[0];
      if (isVector(c)) return c.size === 0 ? null : (c.first() as Value);
      if (c instanceof RList) return c.first();
      if (typeof c === 'string') return c.length === 0 ? null : String.fromCodePoint(c.codePointAt(0) as number);
      const xs = items('first', c, 0);
      return xs.length === 0 ? null : xs[0];
    },
    '(first coll): the first element, or nil when empty',
  ),
  b(
    'second',
    1,
    1,
    (a) => {
      const c = a[0];
      if (isVector(c)) return c.size < 2 ? null : (c.get(1) as Value);
      const xs = items('second', c, 0);
      return xs.length < 2 ? null : xs[1];
    },
    '(second coll): the second element, or nil',
  ),
  b(
    'last',
    1,
    1,
    (a) => {
      const c = a[0];
      if (isVector(c)) return c.size === 0 ? null : (c.last() as Value);
      const xs = items('last', c, 0);
      return xs.length === 0 ? null : xs[xs.length - 1];
    },
    '(last coll): the last element, or nil when empty',
  ),
  b('rest', 1, 1, (a) => restOf('rest', a[0]), '(rest coll): all but the first element, as a vector (a list stays a list); empty when none'),
  b(
    'next',
    1,
    1,
    (a) => {
      const r = restOf('next', a[0]);
      return countOf('next', r) === 0 ? null : r;
    },
    '(next coll): all but the first element, or nil when nothing is left',
  ),
  b('nth', 2, 3, (a) => nthOf('nth', a[0], a[1], a.length > 2 ? a[2] : NOT_FOUND), '(nth coll index [default]): the element at index; out of range is an error unless a default is given'),
  b('nthrest', 2, 2, (a) => vec(items('nthrest', a[0], 0).slice(nonNegCount('nthrest', a[1], 1))), '(nthrest coll n): the elements after the first n, as a vector'),
  b(
    'nthnext',
    2,
    2,
    (a) => {
      const xs = items('nthnext', a[0], 0).slice(nonNegCount('nthnext', a[1], 1));
      return xs.length === 0 ? null : vec(xs);
    },
    '(nthnext coll n): the elements after the first n, or nil when none',
  ),
  b(
    'butlast',
    1,
    1,
    (a) => {
      const xs = items('butlast', a[0], 0);
      return xs.length <= 1 ? null : vec(xs.slice(0, -1));
    },
    '(butlast coll): all but the last element as a vector, or nil when that is empty',
  ),
  b('take', 2, 2, (a) => vec(items('take', a[1], 1).slice(0, nonNegCount('take', a[0], 0))), '(take n coll): the first n elements, as a vector'),
  b('drop', 2, 2, (a) => vec(items('drop', a[1], 1).slice(nonNegCount('drop', a[0], 0))), '(drop n coll): all but the first n elements, as a vector'),
  b(
    'take-last',
    2,
    2,
    (a) => {
      const xs = items('take-last', a[1], 1);
      const n = nonNegCount('take-last', a[0], 0);
      return vec(n === 0 ? [] : xs.slice(Math.max(0, xs.length - n)));
    },
    '(take-last n coll): the last n elements, as a vector',
  ),
  b(
    'drop-last',
    1,
    2,
    (a) => {
      const n = a.length === 1 ? 1 : nonNegCount('drop-last', a[0], 0);
      const xs = items('drop-last', a[a.length - 1], a.length - 1);
      return vec(xs.slice(0, Math.max(0, xs.length - n)));
    },
    '(drop-last [n] coll): all but the last n (default 1) elements, as a vector',
  ),
  b(
    'split-at',
    2,
    2,
    (a) => {
      const xs = items('split-at', a[1], 1);
      const n = nonNegCount('split-at', a[0], 0);
      return vec([vec(xs.slice(0, n)), vec(xs.slice(n))]);
    },
    '(split-at n coll): [(take n coll) (drop n coll)]',
  ),
  b('reverse', 1, 1, (a) => vec(items('reverse', a[0], 0).reverse()), '(reverse coll): the elements in reverse order, as a vector'),
  b(
    'distinct',
    1,
    1,
    (a) => {
      const seen = ISet<Value>().asMutable();
      const out: Value[] = [];
      for (const x of items('distinct', a[0], 0)) {
        if (!seen.has(x)) {
          seen.add(x);
          out.push(x);
        }
      }
      return vec(out);
    },
    '(distinct coll): the elements without duplicates, first occurrences kept, as a vector',
  ),
  b(
    'dedupe',
    1,
    1,
    (a) => {
      const out: Value[] = [];
      for (const x of items('dedupe', a[0], 0)) if (out.length === 0 || !valueEquals(out[out.length - 1], x)) out.push(x);
      return vec(out);
    },
    '(dedupe coll): the elements with consecutive duplicates removed, as a vector',
  ),
  b(
    'distinct?',
    1,
    Infinity,
    (a) => {
      const s = ISet<Value>(a);
      return s.size === a.length;
    },
    '(distinct? x & more): true if no two arguments are equal',
  ),
  b('rtfs.core/sort-natural', 1, 1, (a) => vec(sortNatural(items('sort', a[0], 0))), '(sort coll): the elements sorted by the natural total order, as a vector (stable)'),
  b(
    'rtfs.core/sort-by-keys',
    2,
    2,
    (a) => {
      const ks = items('sort-by', a[0], 0);
      const xs = items('sort-by', a[1], 1);
      const idx = xs.map((_, i) => i);
      idx.sort((i, j) => compareValues(ks[i], ks[j]) || i - j);
      return vec(idx.map((i) => xs[i]));
    },
    '(rtfs.core/sort-by-keys keys coll): coll sorted by the parallel keys in the natural order (helper of sort-by)',
  ),
  b('compare', 2, 2, (a) => compareValues(a[0], a[1]), '(compare x y): -1, 0 or 1 as x sorts before, with or after y in the natural total order'),
  b(
    'concat',
    0,
    Infinity,
    (a) => {
      const out: Value[] = [];
      a.forEach((c, i) => {
        for (const x of items('concat', c, i)) out.push(x);
      });
      return vec(out);
    },
    '(concat & colls): the elements of all the collections in order, as a vector',
  ),
  b(
    'cons',
    2,
    2,
    (a) => {
      const c = a[1];
      if (c instanceof RList) return c.cons(a[0]);
      return RList.from(items('cons', c, 1)).cons(a[0]);
    },
    '(cons x coll): a list of x followed by the elements of coll',
  ),
  b(
    'conj',
    0,
    Infinity,
    (a) => {
      if (a.length === 0) return EMPTY_VECTOR;
      let c = a[0];
      if (a.length === 1) return c;
      for (let i = 1; i < a.length; i++) c = conjOne('conj', c, a[i]);
      return c;
    },
    '(conj coll & xs): coll with the xs added (end of a vector, front of a list, into a set or map); nil → list',
  ),
  b(
    'into',
    0,
    2,
    (a) => {
      if (a.length === 0) return EMPTY_VECTOR;
      let c = a[0];
      if (a.length === 1) return c;
      const xs = items('into', a[1], 1);
      if (isVector(c)) return c.concat(xs);
      for (const x of xs) c = conjOne('into', c, x);
      return c;
    },
    '(into to from): the collection `to` with every element of `from` conj-ed onto it',
  ),
  b('vec', 1, 1, (a) => toVec('vec', a[0], 0), '(vec coll): a vector of the elements of coll'),
  b('vector', 0, Infinity, (a) => vec(a), '(vector & xs): a vector of the arguments'),
  b('list', 0, Infinity, (a) => RList.from(a), '(list & xs): a list of the arguments'),
  b(
    'hash-map',
    0,
    Infinity,
    (a) => {
      if (a.length % 2 !== 0) throw new RtfsError('value', `hash-map: expected an even number of arguments (key value pairs), got ${a.length}`);
      const m = EMPTY_MAP.asMutable();
      for (let i = 0; i < a.length; i += 2) m.set(a[i], a[i + 1]);
      return m.asImmutable();
    },
    '(hash-map & kvs): a map of the key value pairs',
  ),
  b('hash-set', 0, Infinity, (a) => ISet<Value>(a), '(hash-set & xs): a set of the arguments'),
  b('set', 1, 1, (a) => (isSet(a[0]) ? a[0] : ISet<Value>(items('set', a[0], 0))), '(set coll): a set of the elements of coll'),
  b('sorted?', 1, 1, () => false, '(sorted? x): false; RTFS has no sorted collections'),
  b(
    'subvec',
    2,
    3,
    (a) => {
      const v = a[0];
      if (!isVector(v)) return typeError('subvec', 'a vector', v, 0);
      const s = smallInt('subvec', a[1], 1);
      const e = a.length > 2 ? smallInt('subvec', a[2], 2) : v.size;
      if (s < 0 || e > v.size || s > e) throw new RtfsError('index', `subvec: range [${s}, ${e}) is out of bounds for a vector of ${v.size} elements`);
      return v.slice(s, e);
    },
    '(subvec v start [end]): the elements of vector v from start (inclusive) to end (exclusive)',
  ),
  b('range', 1, 3, (a) => rangeOf('range', a), '(range end), (range start end [step]): the numbers from start (default 0) up to end exclusive, as a vector'),
  b(
    'numbers',
    2,
    2,
    (a) => {
      if (!isInt(a[0])) return typeError('numbers', 'an integer', a[0], 0);
      if (!isInt(a[1])) return typeError('numbers', 'an integer', a[1], 1);
      return rangeOf('numbers', [a[0], BigInt(a[1]) + 1n]);
    },
    '(numbers start end): the integers from start to end inclusive, as a vector',
  ),
  b(
    'repeat',
    2,
    2,
    (a) => {
      const n = nonNegCount('repeat', a[0], 0);
      buildLimit('repeat', n);
      return vec(new Array<Value>(n).fill(a[1]));
    },
    '(repeat n x): a vector of n copies of x',
  ),
  b(
    'partition',
    2,
    4,
    (a) => {
      const n = smallInt('partition', a[0], 0);
      const step = a.length > 2 ? smallInt('partition', a[1], 1) : n;
      const pad = a.length > 3 ? items('partition', a[2], 2) : null;
      return partitionImpl('partition', n, step, pad, false, items('partition', a[a.length - 1], a.length - 1));
    },
    '(partition n [step [pad]] coll): vectors of n elements, step apart; an incomplete tail is dropped (or padded from pad)',
  ),
  b(
    'partition-all',
    2,
    3,
    (a) => {
      const n = smallInt('partition-all', a[0], 0);
      const step = a.length > 2 ? smallInt('partition-all', a[1], 1) : n;
      return partitionImpl('partition-all', n, step, null, true, items('partition-all', a[a.length - 1], a.length - 1));
    },
    '(partition-all n [step] coll): vectors of n elements, step apart; the tail may be shorter',
  ),
  b(
    'interleave',
    0,
    Infinity,
    (a) => {
      const cs = a.map((c, i) => items('interleave', c, i));
      const out: Value[] = [];
      if (cs.length === 0) return EMPTY_VECTOR;
      const n = Math.min(...cs.map((c) => c.length));
      for (let i = 0; i < n; i++) for (const c of cs) out.push(c[i]);
      return vec(out);
    },
    '(interleave & colls): the first of each collection, then the second of each..., as a vector',
  ),
  b(
    'interpose',
    2,
    2,
    (a) => {
      const out: Value[] = [];
      items('interpose', a[1], 1).forEach((x, i) => {
        if (i > 0) out.push(a[0]);
        out.push(x);
      });
      return vec(out);
    },
    '(interpose sep coll): the elements of coll separated by sep, as a vector',
  ),
  b(
    'flatten',
    1,
    1,
    (a) => {
      const out: Value[] = [];
      const c = a[0];
      if (isVector(c) || c instanceof RList) flattenInto(c, out);
      return vec(out);
    },
    '(flatten coll): the non-sequential things nested in vectors and lists, as a flat vector',
  ),
  b(
    'frequencies',
    1,
    1,
    (a) => {
      const m = EMPTY_MAP.asMutable();
      for (const x of items('frequencies', a[0], 0)) m.set(x, ((m.get(x) as number | undefined) ?? 0) + 1);
      return m.asImmutable();
    },
    '(frequencies coll): a map from each distinct element to the number of times it occurs',
  ),
  b(
    'zipmap',
    2,
    2,
    (a) => {
      const ks = items('zipmap', a[0], 0);
      const vs = items('zipmap', a[1], 1);
      const m = EMPTY_MAP.asMutable();
      for (let i = 0; i < Math.min(ks.length, vs.length); i++) m.set(ks[i], vs[i]);
      return m.asImmutable();
    },
    '(zipmap keys vals): a map pairing each key with the corresponding value',
  ),
  b('get', 2, 3, (a) => getOf(a[0], a[1], a.length > 2 ? a[2] : null), '(get coll key [default]): the value at key (map key, vector index, set element), or default/nil'),
  b('get-in', 2, 3, (a) => getIn(a[0], a[1], a.length > 2 ? a[2] : null), '(get-in m keys [default]): the value at the key path, or default/nil'),
  b(
    'assoc',
    3,
    Infinity,
    (a) => {
      if (a.length % 2 === 0) throw new RtfsError('arity', `assoc: expected a collection followed by key value pairs, got ${a.length - 1} arguments after it`);
      let c = a[0];
      for (let i = 1; i < a.length; i += 2) c = assocOne('assoc', c, a[i], a[i + 1]);
      return c;
    },
    '(assoc coll k v & kvs): coll with k mapped to v (a vector index may be at most its count)',
  ),
  b('assoc-in', 3, 3, (a) => assocIn(a[0], items('assoc-in', a[1], 1), a[2]), '(assoc-in m keys v): m with the value at the key path set to v, creating maps as needed'),
  b(
    'dissoc',
    1,
    Infinity,
    (a) => {
      const m = mapArg('dissoc', a[0], 0);
      if (m === null) return null;
      return m.deleteAll(a.slice(1));
    },
    '(dissoc m & keys): m without the keys',
  ),
  b(
    'merge',
    0,
    Infinity,
    (a) => {
      let acc: RMap | null = null;
      a.forEach((x, i) => {
        const m = mapArg('merge', x, i);
        if (m !== null) acc = acc === null ? m : acc.merge(m);
      });
      return acc;
    },
    '(merge & maps): one map with the entries of all maps, later ones winning; nil when all are nil',
  ),
  b(
    'select-keys',
    2,
    2,
    (a) => {
      const m = mapArg('select-keys', a[0], 0);
      const out = EMPTY_MAP.asMutable();
      for (const k of items('select-keys', a[1], 1)) {
        const v = m === null ? NOT_FOUND : m.get(k, NOT_FOUND);
        if (v !== NOT_FOUND) out.set(k, v);
      }
      return out.asImmutable();
    },
    '(select-keys m keys): the map of the entries of m whose key is in keys',
  ),
  b(
    'keys',
    1,
    1,
    (a) => {
      const m = mapArg('keys', a[0], 0);
      return m === null || m.size === 0 ? null : List<Value>(m.keys());
    },
    '(keys m): the keys of the map as a vector, or nil when empty',
  ),
  b(
    'vals',
    1,
    1,
    (a) => {
      const m = mapArg('vals', a[0], 0);
      return m === null || m.size === 0 ? null : List<Value>(m.values());
    },
    '(vals m): the values of the map as a vector, or nil when empty',
  ),
  b(
    'find',
    2,
    2,
    (a) => {
      const c = a[0];
      const k = a[1];
      if (c === null) return null;
      if (isMap(c)) {
        const v = c.get(k, NOT_FOUND);
        return v === NOT_FOUND ? null : entry(k, v);
      }
      if (isVector(c)) return typeof k === 'number' && k >= 0 && k < c.size ? entry(k, c.get(k) as Value) : null;
      return typeError('find', 'a map, a vector or nil', c, 0);
    },
    '(find m key): the entry [key value] for key, or nil',
  ),
  b(
    'contains?',
    2,
    2,
    (a) => {
      const c = a[0];
      const k = a[1];
      if (c === null) return false;
      if (isMap(c) || isSet(c)) return c.has(k);
      if (isVector(c)) return typeof k === 'number' && k >= 0 && k < c.size;
      if (typeof c === 'string') return typeof k === 'number' && k >= 0 && k < charCount(c);
      return typeError('contains?', 'a map, set, vector, string or nil (use `some` to search a list)', c, 0);
    },
    '(contains? coll key): true if coll has the key (map key, set element, vector or string index)',
  ),
  b(
    'disj',
    1,
    Infinity,
    (a) => {
      if (a[0] === null) return null;
      return setArg('disj', a[0], 0).subtract(a.slice(1));
    },
    '(disj set & xs): the set without the xs',
  ),
  b('key', 1, 1, (a) => keyOrVal('key', 0, a[0]), '(key entry): the key of a map entry [k v]'),
  b('val', 1, 1, (a) => keyOrVal('val', 1, a[0]), '(val entry): the value of a map entry [k v]'),
  b('seq', 1, 1, (a) => seqOf(a[0]), '(seq coll): nil when coll is empty, else its elements (map entries [k v], string characters)'),
  b(
    'empty',
    1,
    1,
    (a) => {
      if (!isSeqable(a[0])) return typeError('empty', COLL, a[0], 0);
      return emptyOf(a[0]);
    },
    '(empty coll): an empty collection of the same kind, or nil',
  ),
  b('empty?', 1, 1, (a) => countOf('empty?', a[0], 0) === 0, '(empty? coll): true if coll has no elements (nil is empty)'),
  b('not-empty', 1, 1, (a) => (countOf('not-empty', a[0], 0) === 0 ? null : a[0]), '(not-empty coll): coll, or nil when it is empty'),
  b(
    'peek',
    1,
    1,
    (a) => {
      const c = a[0];
      if (c === null) return null;
      if (isVector(c)) return c.size === 0 ? null : (c.last() as Value);
      if (c instanceof RList) return c.first();
      return typeError('peek', 'a vector, a list or nil', c, 0);
    },
    '(peek coll): the last element of a vector, the first of a list',
  ),
  b(
    'pop',
    1,
    1,
    (a) => {
      const c = a[0];
      if (c === null) return null;
      if (isVector(c)) {
        if (c.size === 0) throw new RtfsError('value', 'pop: cannot pop an empty vector');
        return c.pop();
      }
      if (c instanceof RList) {
        if (c.count === 0) throw new RtfsError('value', 'pop: cannot pop an empty list');
        return c.rest();
      }
      return typeError('pop', 'a vector, a list or nil', c, 0);
    },
    '(pop coll): a vector without its last element, a list without its first',
  ),
  b('hash', 1, 1, (a) => hashValue(a[0]), '(hash x): the hash code of x (consistent with =)'),
  b(
    'clojure.set/union',
    0,
    Infinity,
    (a) => {
      let acc = EMPTY_SET;
      a.forEach((s, i) => {
        const x = setArg('clojure.set/union', s, i);
        acc = acc.size === 0 ? x : acc.union(x);
      });
      return acc;
    },
    '(clojure.set/union & sets): the set of elements in any of the sets',
  ),
  b(
    'clojure.set/intersection',
    1,
    Infinity,
    (a) => {
      let acc = setArg('clojure.set/intersection', a[0], 0);
      for (let i = 1; i < a.length; i++) acc = acc.intersect(setArg('clojure.set/intersection', a[i], i));
      return acc;
    },
    '(clojure.set/intersection set & sets): the set of elements in every set',
  ),
  b(
    'clojure.set/difference',
    1,
    Infinity,
    (a) => {
      let acc = setArg('clojure.set/difference', a[0], 0);
      for (let i = 1; i < a.length; i++) acc = acc.subtract(setArg('clojure.set/difference', a[i], i));
      return acc;
    },
    '(clojure.set/difference set & sets): the elements of the first set that are in none of the others',
  ),
];
