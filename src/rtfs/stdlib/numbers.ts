/**
 * Native numeric functions: arithmetic, comparison, numeric predicates and conversions.
 *
 * Integers are exact 64-bit (JS number within ±2^53, bigint outside); any result leaving the 64-bit
 * range is an `arithmetic` error. An integer combined with a float gives a float (`RFloat`).
 * Must never: import `node:*`, read the clock, use randomness.
 */
import {
  RFloat,
  RtfsError,
  intResult,
  isInt,
  isNumber,
  normalizeBig,
  toJsNumber,
  type Builtin,
  type Value,
} from '../values.js';
import { defineBuiltin, typeError } from './define.js';

export type Num = number | bigint | RFloat;
type Int = number | bigint;

/** Checks that an argument is a number. */
export function num(fname: string, v: Value, i?: number): Num {
  if (isNumber(v)) return v;
  return typeError(fname, 'a number', v, i);
}

/** Checks that an argument is an integer. */
export function int(fname: string, v: Value, i?: number): Int {
  if (isInt(v)) return v;
  return typeError(fname, 'an integer', v, i);
}

/** Checks that an argument is an integer that fits a JS number (indices, counts). */
export function smallInt(fname: string, v: Value, i?: number): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') throw new RtfsError('index', `${fname}: integer ${v} is too large here`);
  return typeError(fname, 'an integer', v, i);
}

const divByZero = (): never => {
  throw new RtfsError('arithmetic', 'division by zero');
};

export function add(a: Num, b: Num): Num {
  if (typeof a === 'number' && typeof b === 'number') return intResult(a + b, a, b, '+', (x, y) => x + y);
  if (a instanceof RFloat || b instanceof RFloat) return new RFloat(toJsNumber(a) + toJsNumber(b));
  return normalizeBig(BigInt(a) + BigInt(b), '+');
}

export function sub(a: Num, b: Num): Num {
  if (typeof a === 'number' && typeof b === 'number') return intResult(a - b, a, b, '-', (x, y) => x - y);
  if (a instanceof RFloat || b instanceof RFloat) return new RFloat(toJsNumber(a) - toJsNumber(b));
  return normalizeBig(BigInt(a) - BigInt(b), '-');
}

export function mul(a: Num, b: Num): Num {
  if (typeof a === 'number' && typeof b === 'number') return intResult(a * b, a, b, '*', (x, y) => x * y);
  if (a instanceof RFloat || b instanceof RFloat) return new RFloat(toJsNumber(a) * toJsNumber(b));
  return normalizeBig(BigInt(a) * BigInt(b), '*');
}

const isNaNNum = (v: Num): boolean => v instanceof RFloat && Number.isNaN(v.v);
const isZero = (v: Num): boolean => (v instanceof RFloat ? v.v === 0 : v == 0);

export function div(a: Num, b: Num): Num {
  if (isZero(b)) divByZero();
  if (a instanceof RFloat || b instanceof RFloat) return new RFloat(toJsNumber(a) / toJsNumber(b));
  if (typeof a === 'number' && typeof b === 'number') {
    if (a % b === 0) return intResult(a / b, a, b, '/', (x, y) => x / y);
    return new RFloat(a / b);
  }
  const x = BigInt(a);
  const y = BigInt(b);
  if (x % y === 0n) return normalizeBig(x / y, '/');
  return new RFloat(Number(x) / Number(y));
}

/** Numeric three-way comparison; exact between bigints and floats. NaN compares as unordered (NaN). */
export function numCmp(a: Num, b: Num): number {
  const x = a instanceof RFloat ? a.v : a;
  const y = b instanceof RFloat ? b.v : b;
  if (x < y) return -1;
  if (x > y) return 1;
  if (x == y) return 0;
  return NaN;
}

/** Truncating integer division of two numbers (`quot`), and remainders (`rem`, `mod`). */
function quotRem(fname: string, a: Num, b: Num, op: 'quot' | 'rem' | 'mod'): Num {
  if (isZero(b)) divByZero();
  if (a instanceof RFloat || b instanceof RFloat) {
    const x = toJsNumber(a);
    const y = toJsNumber(b);
    if (op === 'quot') return new RFloat(Math.trunc(x / y));
    const r = x % y;
    if (op === 'mod' && r !== 0 && r < 0 !== y < 0) return new RFloat(r + y);
    return new RFloat(r);
  }
  if (typeof a === 'number' && typeof b === 'number') {
    if (op === 'quot') return intResult(Math.trunc(a / b), a, b, fname, (x, y) => x / y);
    const r = a % b;
    if (op === 'mod' && r !== 0 && r < 0 !== b < 0) return r + b;
    return r === 0 ? 0 : r; // no -0
  }
  const x = BigInt(a);
  const y = BigInt(b);
  if (op === 'quot') return normalizeBig(x / y, fname);
  let r = x % y;
  if (op === 'mod' && r !== 0n && r < 0n !== y < 0n) r += y;
  return normalizeBig(r, fname);
}

function neg(a: Num): Num {
  if (a instanceof RFloat) return new RFloat(-a.v);
  if (typeof a === 'number') return a === 0 ? 0 : -a;
  return normalizeBig(-a, '-');
}

/** Converts a JS float to an exact integer (truncating); NaN, infinities and out-of-range values fail. */
export function floatToInt(fname: string, x: number): Int {
  if (!Number.isFinite(x)) throw new RtfsError('arithmetic', `${fname}: cannot convert ${x} to an integer`);
  const t = Math.trunc(x);
  if (Number.isSafeInteger(t)) return t === 0 ? 0 : t;
  return normalizeBig(BigInt(t), fname);
}

function variadicCompare(fname: string, ok: (c: number) => boolean): Builtin {
  return defineBuiltin(
    fname,
    1,
    Infinity,
    (args) => {
      if (args.length === 1) {
        const a = args[0];
        if (!isNumber(a) && typeof a !== 'string') typeError(fname, 'a number or a string', a, 0);
        return true;
      }
      for (let i = 0; i + 1 < args.length; i++) {
        const a = args[i];
        const b = args[i + 1];
        let c: number;
        if (typeof a === 'string' && typeof b === 'string') c = a < b ? -1 : a > b ? 1 : 0;
        else if (isNumber(a) && isNumber(b)) c = numCmp(a, b);
        else if (!isNumber(a) && typeof a !== 'string') return typeError(fname, 'numbers or strings', a, i);
        else return typeError(fname, typeof a === 'string' ? 'a string (to compare with a string)' : 'a number (to compare with a number)', b, i + 1);
        if (!ok(c)) return false;
      }
      return true;
    },
    `(${fname} x y & more): true if the numbers (or strings) are ordered by ${fname}`,
  );
}

function fold(fname: string, args: Value[], op: (a: Num, b: Num) => Num): Num {
  let acc = num(fname, args[0], 0);
  for (let i = 1; i < args.length; i++) acc = op(acc, num(fname, args[i], i));
  return acc;
}

function bigPow(fname: string, base: Int, exp: Int): Int {
  const b = BigInt(base);
  const e = BigInt(exp);
  if (b === 0n || b === 1n) return e === 0n ? 1 : Number(b);
  if (b === -1n) return e % 2n === 0n ? 1 : -1;
  if (e > 64n) throw new RtfsError('arithmetic', `integer overflow in ${fname}: result leaves the 64-bit range`);
  return normalizeBig(b ** e, fname);
}

function intPred(fname: string, pred: (x: Int) => boolean): Builtin {
  return defineBuiltin(fname, 1, 1, (args) => pred(int(fname, args[0], 0)), `(${fname} n): true if the integer n is ${fname.slice(0, -1)}`);
}

const INT_RE = /^[+-]?\d+$/;
const FLOAT_RE = /^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|NaN|Infinity)$/;

/** Parses an integer from text (surrounding whitespace allowed); null when not an integer or out of range. */
export function parseIntText(s: string): Int | null {
  const t = s.trim();
  if (!INT_RE.test(t)) return null;
  const b = BigInt(t);
  if (b < -(2n ** 63n) || b > 2n ** 63n - 1n) return null;
  return normalizeBig(b, 'parse-long');
}

function parseFloatText(s: string): RFloat | null {
  const t = s.trim();
  if (!FLOAT_RE.test(t)) return null;
  return new RFloat(Number(t));
}

/**
 * A parser of numbers from strings. `fromNumber`, for the original RTFS names `parse-int` and
 * `parse-float`, also converts a number argument (the original accepted them); Clojure's
 * `parse-long` and `parse-double` take strings only.
 */
function parser(fname: string, p: (s: string) => Value, what: string, fromNumber?: (n: Num) => Value): Builtin {
  return defineBuiltin(
    fname,
    1,
    1,
    (args) => {
      const s = args[0];
      if (fromNumber && isNumber(s)) return fromNumber(s);
      if (typeof s !== 'string') return typeError(fname, fromNumber ? 'a string or a number' : 'a string', s, 0);
      return p(s);
    },
    `(${fname} s): parses ${what} from the string s (whitespace trimmed), or nil if it is not one${fromNumber ? '; a number is converted' : ''}`,
  );
}

function toInt(fname: string, v: Value): Int {
  if (isInt(v)) return v;
  if (v instanceof RFloat) return floatToInt(fname, v.v);
  if (typeof v === 'string') {
    const r = parseIntText(v);
    if (r !== null) return r;
    const f = parseFloatText(v);
    if (f !== null) return floatToInt(fname, f.v);
    throw new RtfsError('value', `${fname}: cannot convert the string ${JSON.stringify(v)} to an integer`);
  }
  return typeError(fname, 'a number or a numeric string', v, 0);
}

function toFloat(fname: string, v: Value): RFloat {
  if (v instanceof RFloat) return v;
  if (isInt(v)) return new RFloat(Number(v));
  if (typeof v === 'string') {
    const f = parseFloatText(v);
    if (f !== null) return f;
    throw new RtfsError('value', `${fname}: cannot convert the string ${JSON.stringify(v)} to a float`);
  }
  return typeError(fname, 'a number or a numeric string', v, 0);
}

export const numbersBuiltins: Builtin[] = [
  defineBuiltin('+', 0, Infinity, (args) => (args.length === 0 ? 0 : fold('+', args, add)), '(+ & xs): the sum of the numbers; 0 with no arguments'),
  defineBuiltin('*', 0, Infinity, (args) => (args.length === 0 ? 1 : fold('*', args, mul)), '(* & xs): the product of the numbers; 1 with no arguments'),
  defineBuiltin('-', 1, Infinity, (args) => (args.length === 1 ? neg(num('-', args[0], 0)) : fold('-', args, sub)), '(- x & ys): x minus the ys, or the negation of x'),
  defineBuiltin(
    '/',
    1,
    Infinity,
    (args) => (args.length === 1 ? div(1, num('/', args[0], 0)) : fold('/', args, div)),
    '(/ x & ys): x divided by the ys (an integer when exact, else a float), or 1/x',
  ),
  defineBuiltin('quot', 2, 2, (a) => quotRem('quot', num('quot', a[0], 0), num('quot', a[1], 1), 'quot'), '(quot n d): n divided by d, truncated toward zero'),
  defineBuiltin('rem', 2, 2, (a) => quotRem('rem', num('rem', a[0], 0), num('rem', a[1], 1), 'rem'), '(rem n d): remainder of truncated division (sign of n)'),
  defineBuiltin('mod', 2, 2, (a) => quotRem('mod', num('mod', a[0], 0), num('mod', a[1], 1), 'mod'), '(mod n d): modulus of floored division (sign of d)'),
  defineBuiltin('inc', 1, 1, (a) => add(num('inc', a[0], 0), 1), '(inc x): x plus one'),
  defineBuiltin('dec', 1, 1, (a) => sub(num('dec', a[0], 0), 1), '(dec x): x minus one'),
  defineBuiltin(
    'abs',
    1,
    1,
    (a) => {
      const x = num('abs', a[0], 0);
      if (x instanceof RFloat) return new RFloat(Math.abs(x.v));
      return numCmp(x, 0) < 0 ? neg(x) : x;
    },
    '(abs x): the absolute value of x',
  ),
  defineBuiltin(
    'max',
    1,
    Infinity,
    (args) => {
      let best = num('max', args[0], 0);
      for (let i = 1; i < args.length; i++) {
        const x = num('max', args[i], i);
        if (isNaNNum(best)) continue;
        if (isNaNNum(x) || numCmp(x, best) > 0) best = x;
      }
      return best;
    },
    '(max x & more): the greatest of the numbers',
  ),
  defineBuiltin(
    'min',
    1,
    Infinity,
    (args) => {
      let best = num('min', args[0], 0);
      for (let i = 1; i < args.length; i++) {
        const x = num('min', args[i], i);
        if (isNaNNum(best)) continue;
        if (isNaNNum(x) || numCmp(x, best) < 0) best = x;
      }
      return best;
    },
    '(min x & more): the least of the numbers',
  ),
  defineBuiltin(
    '==',
    1,
    Infinity,
    (args) => {
      for (let i = 0; i < args.length; i++) num('==', args[i], i);
      for (let i = 0; i + 1 < args.length; i++) if (numCmp(args[i] as Num, args[i + 1] as Num) !== 0) return false;
      return true;
    },
    '(== x & more): true if the numbers are numerically equal (1 == 1.0)',
  ),
  variadicCompare('<', (c) => c < 0),
  variadicCompare('>', (c) => c > 0),
  variadicCompare('<=', (c) => c <= 0),
  variadicCompare('>=', (c) => c >= 0),
  defineBuiltin('zero?', 1, 1, (a) => numCmp(num('zero?', a[0], 0), 0) === 0, '(zero? x): true if the number x is zero'),
  defineBuiltin('pos?', 1, 1, (a) => numCmp(num('pos?', a[0], 0), 0) > 0, '(pos? x): true if the number x is greater than zero'),
  defineBuiltin('neg?', 1, 1, (a) => numCmp(num('neg?', a[0], 0), 0) < 0, '(neg? x): true if the number x is less than zero'),
  intPred('even?', (x) => (typeof x === 'number' ? x % 2 === 0 : x % 2n === 0n)),
  intPred('odd?', (x) => (typeof x === 'number' ? x % 2 !== 0 : x % 2n !== 0n)),
  defineBuiltin('int', 1, 1, (a) => toInt('int', a[0]), '(int x): x as an integer (floats truncate toward zero; numeric strings parse)'),
  defineBuiltin('long', 1, 1, (a) => toInt('long', a[0]), '(long x): x as an integer (same as int)'),
  defineBuiltin('float', 1, 1, (a) => toFloat('float', a[0]), '(float x): x as a float (numeric strings parse)'),
  defineBuiltin('double', 1, 1, (a) => toFloat('double', a[0]), '(double x): x as a float (same as float)'),
  defineBuiltin('num', 1, 1, (a) => num('num', a[0], 0), '(num x): x itself if it is a number, else a type error'),
  parser('parse-int', parseIntText, 'an integer', (n) => (n instanceof RFloat ? floatToInt('parse-int', n.v) : n)),
  parser('parse-long', parseIntText, 'an integer'),
  parser('parse-double', parseFloatText, 'a float'),
  parser('parse-float', parseFloatText, 'a float', (n) => (n instanceof RFloat ? n : new RFloat(Number(n)))),
  defineBuiltin(
    'sqrt',
    1,
    1,
    (a) => {
      const x = toJsNumber(num('sqrt', a[0], 0));
      if (x < 0) throw new RtfsError('arithmetic', `sqrt: expected a non-negative number, got ${x}`);
      return new RFloat(Math.sqrt(x));
    },
    '(sqrt x): the square root of x, as a float; negative x is an error',
  ),
  defineBuiltin(
    'pow',
    2,
    2,
    (a) => {
      const b = num('pow', a[0], 0);
      const e = num('pow', a[1], 1);
      if (isInt(b) && isInt(e) && e >= 0) return bigPow('pow', b, e);
      return new RFloat(Math.pow(toJsNumber(b), toJsNumber(e)));
    },
    '(pow base exp): base to the power exp; exact integer for integer base and non-negative integer exp, else a float',
  ),
  defineBuiltin(
    'factorial',
    1,
    1,
    (a) => {
      const n = int('factorial', a[0], 0);
      if (n < 0) throw new RtfsError('value', `factorial: expected a non-negative integer, got ${n}`);
      if (n > 20) throw new RtfsError('arithmetic', `integer overflow in factorial: ${n}! leaves the 64-bit range`);
      let r = 1n;
      for (let i = 2n; i <= BigInt(n); i++) r *= i;
      return normalizeBig(r, 'factorial');
    },
    '(factorial n): n! for 0 <= n <= 20',
  ),
];
