/**
 * Native string functions: `str`, `pr-str`, `subs`, names of keywords and symbols, `format`, the
 * `clojure.string/...` functions and the original RTFS string names (`string-length`, `substring`,
 * `split`, `join` with the separator first, ...).
 *
 * Indices and lengths count characters (code points), as `count` does.
 * Must never: import `node:*`, read the clock, use randomness.
 */
import { Keyword, List, RFloat, RRegex, RtfsError, Sym, isInt, isMap, isNumber, kw, type Builtin, type Value } from '../values.js';
import { prStr, strOf } from '../printer.js';
import { defineBuiltin, typeError } from './define.js';
import { charCount, chars, items } from './collections.js';
import { smallInt } from './numbers.js';
import { globalRe, regexArg, skipEmpty } from './regex.js';

const SURROGATE = /[\uD800-\uDFFF]/;

function str(fname: string, v: Value, i: number): string {
  if (typeof v === 'string') return v;
  return typeError(fname, 'a string', v, i);
}

/** Code-point index → UTF-16 index. */
function cpToUnit(s: string, cp: number): number {
  if (!SURROGATE.test(s)) return cp;
  let u = 0;
  for (let k = 0; k < cp && u < s.length; k++) u += (s.codePointAt(u) as number) > 0xffff ? 2 : 1;
  return u;
}

/** UTF-16 index → code-point index. */
function unitToCp(s: string, u: number): number {
  if (!SURROGATE.test(s)) return u;
  return Array.from(s.slice(0, u)).length;
}

function subs(fname: string, a: Value[]): string {
  const s = str(fname, a[0], 0);
  const n = charCount(s);
  const start = smallInt(fname, a[1], 1);
  const end = a.length > 2 && a[2] !== null ? smallInt(fname, a[2], 2) : n;
  if (start < 0 || end > n || start > end) {
    throw new RtfsError('index', `${fname}: range [${start}, ${end}) is out of bounds for a string of ${n} character${n === 1 ? '' : 's'}`);
  }
  if (!SURROGATE.test(s)) return s.slice(start, end);
  return chars(s).slice(start, end).join('');
}

/** Splits like Java's `String.split(regex, limit)`, which Clojure's `split` uses. */
function javaSplit(s: string, r: RRegex, limit: number): string[] {
  if (limit === 1) return [s];
  const re = globalRe(r);
  const out: string[] = [];
  let last = 0;
  let matched = false;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    skipEmpty(re, s, m);
    if (m[0].length === 0 && m.index === 0) continue;
    if (m[0].length === 0 && m.index >= s.length) break;
    matched = true;
    out.push(s.slice(last, m.index));
    last = m.index + m[0].length;
    if (limit > 0 && out.length === limit - 1) break;
  }
  if (!matched) return [s];
  out.push(s.slice(last));
  if (limit === 0) while (out.length > 0 && out[out.length - 1] === '') out.pop();
  return out;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\\/]/g, '\\$&');

/** A separator argument: a regex, or a string taken literally. */
function sepRegex(fname: string, v: Value, i: number): RRegex {
  if (v instanceof RRegex) return v;
  if (typeof v === 'string') return regexArg(fname, escapeRe(v));
  return typeError(fname, 'a regex or a string', v, i);
}

const strVec = (xs: string[]): Value => List<Value>(xs);

function joinImpl(fname: string, sep: Value, coll: Value, ci: number): string {
  return items(fname, coll, ci)
    .map((x) => strOf(x))
    .join(strOf(sep));
}

function replaceImpl(fname: string, a: Value[], all: boolean): string {
  const s = str(fname, a[0], 0);
  const match = a[1];
  const rep = a[2];
  if (typeof rep !== 'string') return typeError(fname, 'a replacement string (a function replacement is not supported)', rep, 2);
  if (typeof match === 'string') {
    if (all) return s.replaceAll(match, () => rep);
    return s.replace(match, () => rep);
  }
  if (match instanceof RRegex) {
    const re = all ? globalRe(match) : match.re;
    return s.replace(re, rep);
  }
  return typeError(fname, 'a string or a regex to match', match, 1);
}

function nameParts(v: Keyword | Sym): [string | null, string] {
  const n = v.name;
  const i = n.indexOf('/');
  if (i > 0 && i < n.length - 1) return [n.slice(0, i), n.slice(i + 1)];
  return [null, n];
}

function capitalize(s: string): string {
  if (s.length === 0) return s;
  const c = String.fromCodePoint(s.codePointAt(0) as number);
  return c.toUpperCase() + s.slice(c.length).toLowerCase();
}

/** `format` with the common Java directives: %s %d %f %.Nf %e %x %% %n (and a width, `-` and `0` flags). */
function format(fmt: string, args: Value[]): string {
  let k = 0;
  const next = (d: string): Value => {
    if (k >= args.length) throw new RtfsError('value', `format: not enough arguments for the directive %${d}`);
    return args[k++];
  };
  return fmt.replace(/%(-)?(0)?(\d+)?(?:\.(\d+))?([sdfexXn%])/g, (_all, left, zero, width, prec, d: string) => {
    let out: string;
    switch (d) {
      case '%':
        return '%';
      case 'n':
        return '\n';
      case 's': {
        const x = next(d);
        out = x === null ? 'nil' : strOf(x);
        if (prec !== undefined) out = out.slice(0, Number(prec));
        break;
      }
      case 'd': {
        const v = next(d);
        if (!isInt(v)) return typeError('format', 'an integer for %d', v);
        out = v.toString();
        break;
      }
      case 'x':
      case 'X': {
        const v = next(d);
        if (!isInt(v)) return typeError('format', `an integer for %${d}`, v);
        out = (BigInt(v) < 0n ? BigInt(v) + 2n ** 64n : BigInt(v)).toString(16);
        if (d === 'X') out = out.toUpperCase();
        break;
      }
      case 'f':
      case 'e': {
        const v = next(d);
        if (!isNumber(v)) return typeError('format', `a number for %${d}`, v);
        const x = v instanceof RFloat ? v.v : Number(v);
        const p = prec === undefined ? 6 : Number(prec);
        out = d === 'f' ? x.toFixed(Math.min(p, 100)) : x.toExponential(Math.min(p, 100)).replace(/e([+-])(\d)$/, 'e$10$2');
        break;
      }
      default:
        throw new RtfsError('value', `format: unsupported directive %${d}`);
    }
    const w = width === undefined ? 0 : Number(width);
    if (out.length < w) {
      if (left) out = out.padEnd(w);
      else if (zero && d !== 's') out = out.startsWith('-') ? '-' + out.slice(1).padStart(w - 1, '0') : out.padStart(w, '0');
      else out = out.padStart(w);
    }
    return out;
  });
}

function indexOfImpl(fname: string, a: Value[], last: boolean): Value {
  const s = str(fname, a[0], 0);
  const v = str(fname, a[1], 1);
  let r: number;
  if (a.length > 2) {
    const from = Math.max(0, smallInt(fname, a[2], 2));
    r = last ? s.lastIndexOf(v, cpToUnit(s, from)) : s.indexOf(v, cpToUnit(s, from));
  } else r = last ? s.lastIndexOf(v) : s.indexOf(v);
  return r < 0 ? null : unitToCp(s, r);
}

const b = defineBuiltin;
const CS = 'clojure.string/';

const trimLeft = (s: string): string => s.trimStart();
const trimRight = (s: string): string => s.trimEnd();

function oneString(name: string, f: (s: string) => Value, doc: string): Builtin {
  return b(name, 1, 1, (a) => f(str(name, a[0], 0)), doc);
}

function twoStrings(name: string, f: (s: string, t: string) => Value, doc: string): Builtin {
  return b(name, 2, 2, (a) => f(str(name, a[0], 0), str(name, a[1], 1)), doc);
}

export const stringsBuiltins: Builtin[] = [
  b('str', 0, Infinity, (a) => a.map((x) => strOf(x)).join(''), '(str & xs): the concatenation of the texts of the arguments (nil → "", strings raw)'),
  b('pr-str', 0, Infinity, (a) => a.map((x) => prStr(x)).join(' '), '(pr-str & xs): the readable printed forms of the arguments, separated by spaces'),
  b('format', 1, Infinity, (a) => format(str('format', a[0], 0), a.slice(1)), '(format fmt & args): text with %s %d %f %.2f %x %% %n directives filled from args'),
  b('subs', 2, 3, (a) => subs('subs', a), '(subs s start [end]): the characters of s from start (inclusive) to end (exclusive)'),
  b('substring', 2, 3, (a) => subs('substring', a), '(substring s start [end]): same as subs (the original RTFS name)'),
  b(
    'name',
    1,
    1,
    (a) => {
      const v = a[0];
      if (typeof v === 'string') return v;
      if (v instanceof Keyword || v instanceof Sym) return nameParts(v)[1];
      return typeError('name', 'a keyword, a symbol or a string', v, 0);
    },
    '(name x): the name of a keyword or symbol without the colon and namespace; a string itself',
  ),
  b(
    'namespace',
    1,
    1,
    (a) => {
      const v = a[0];
      if (v instanceof Keyword || v instanceof Sym) return nameParts(v)[0];
      return typeError('namespace', 'a keyword or a symbol', v, 0);
    },
    '(namespace x): the namespace part of a keyword or symbol (before the /), or nil',
  ),
  b(
    'keyword',
    1,
    2,
    (a) => {
      if (a.length === 2) {
        const ns = a[0] === null ? null : str('keyword', a[0], 0);
        const n = str('keyword', a[1], 1);
        return kw(ns === null ? n : `${ns}/${n}`);
      }
      const v = a[0];
      if (typeof v === 'string') return kw(v);
      if (v instanceof Keyword) return v;
      if (v instanceof Sym) return kw(v.name);
      return null;
    },
    '(keyword name) or (keyword ns name): the keyword with that name (a keyword is returned as is)',
  ),
  b(
    'symbol',
    1,
    2,
    (a) => {
      if (a.length === 2) {
        const ns = a[0] === null ? null : str('symbol', a[0], 0);
        const n = str('symbol', a[1], 1);
        return new Sym(ns === null ? n : `${ns}/${n}`);
      }
      const v = a[0];
      if (typeof v === 'string') return new Sym(v);
      if (v instanceof Sym) return v;
      if (v instanceof Keyword) return new Sym(v.name);
      return typeError('symbol', 'a string, a symbol or a keyword', v, 0);
    },
    '(symbol name) or (symbol ns name): the symbol with that name',
  ),

  // Original RTFS names.
  oneString('string-length', (s) => charCount(s), '(string-length s): the number of characters of s'),
  twoStrings('string-contains', (s, t) => s.includes(t), '(string-contains s sub): true if s contains sub'),
  oneString('string-upper', (s) => s.toUpperCase(), '(string-upper s): s in upper case'),
  oneString('string-lower', (s) => s.toLowerCase(), '(string-lower s): s in lower case'),
  oneString('string-trim', (s) => s.trim(), '(string-trim s): s without leading and trailing whitespace'),
  twoStrings('starts-with?', (s, t) => s.startsWith(t), '(starts-with? s prefix): true if s starts with prefix'),
  twoStrings('ends-with?', (s, t) => s.endsWith(t), '(ends-with? s suffix): true if s ends with suffix'),
  b(
    'split',
    2,
    2,
    (a) => {
      if (a[0] === null) return strVec(['']);
      const s = str('split', a[0], 0);
      if (a[1] === '') return strVec(chars(s));
      if (typeof a[1] === 'string') return strVec(s.split(a[1]));
      return strVec(javaSplit(s, sepRegex('split', a[1], 1), -1));
    },
    '(split s sep): the pieces of s between occurrences of sep (a string, taken literally, or a regex); "" splits into characters',
  ),
  b('join', 1, 2, (a) => (a.length === 1 ? joinImpl('join', '', a[0], 0) : joinImpl('join', a[0], a[1], 1)), '(join [sep] coll): the texts of the elements joined by the separator (separator first)'),
  b('string-join', 1, 2, (a) => (a.length === 1 ? joinImpl('string-join', '', a[0], 0) : joinImpl('string-join', a[0], a[1], 1)), '(string-join [sep] coll): same as join (separator first)'),

  // clojure.string
  b(CS + 'join', 1, 2, (a) => (a.length === 1 ? joinImpl(CS + 'join', '', a[0], 0) : joinImpl(CS + 'join', a[0], a[1], 1)), '(clojure.string/join [sep] coll): the texts of the elements joined by sep'),
  b(
    CS + 'split',
    2,
    3,
    (a) => {
      const s = str(CS + 'split', a[0], 0);
      const limit = a.length > 2 ? smallInt(CS + 'split', a[2], 2) : 0;
      return strVec(javaSplit(s, sepRegex(CS + 'split', a[1], 1), limit));
    },
    '(clojure.string/split s re [limit]): the pieces of s between matches of re (a string is literal); trailing empty pieces dropped',
  ),
  oneString(CS + 'split-lines', (s) => strVec(javaSplit(s, regexArg(CS + 'split-lines', '\\r?\\n'), 0)), '(clojure.string/split-lines s): the lines of s'),
  oneString(CS + 'trim', (s) => s.trim(), '(clojure.string/trim s): s without leading and trailing whitespace'),
  oneString(CS + 'triml', trimLeft, '(clojure.string/triml s): s without leading whitespace'),
  oneString(CS + 'trimr', trimRight, '(clojure.string/trimr s): s without trailing whitespace'),
  oneString(CS + 'trim-newline', (s) => s.replace(/[\r\n]+$/, ''), '(clojure.string/trim-newline s): s without trailing newlines and carriage returns'),
  oneString(CS + 'upper-case', (s) => s.toUpperCase(), '(clojure.string/upper-case s): s in upper case'),
  oneString(CS + 'lower-case', (s) => s.toLowerCase(), '(clojure.string/lower-case s): s in lower case'),
  oneString(CS + 'capitalize', capitalize, '(clojure.string/capitalize s): s with its first character upper case and the rest lower case'),
  b(
    CS + 'blank?',
    1,
    1,
    (a) => (a[0] === null ? true : str(CS + 'blank?', a[0], 0).trim() === ''),
    '(clojure.string/blank? s): true if s is nil, empty or only whitespace',
  ),
  twoStrings(CS + 'starts-with?', (s, t) => s.startsWith(t), '(clojure.string/starts-with? s prefix): true if s starts with prefix'),
  twoStrings(CS + 'ends-with?', (s, t) => s.endsWith(t), '(clojure.string/ends-with? s suffix): true if s ends with suffix'),
  twoStrings(CS + 'includes?', (s, t) => s.includes(t), '(clojure.string/includes? s sub): true if s contains sub'),
  b(CS + 'replace', 3, 3, (a) => replaceImpl(CS + 'replace', a, true), '(clojure.string/replace s match rep): s with every match (string or regex; $1 refers to groups) replaced by rep'),
  b(CS + 'replace-first', 3, 3, (a) => replaceImpl(CS + 'replace-first', a, false), '(clojure.string/replace-first s match rep): s with the first match replaced by rep'),
  b(CS + 'index-of', 2, 3, (a) => indexOfImpl(CS + 'index-of', a, false), '(clojure.string/index-of s sub [from]): the index of the first occurrence of sub, or nil'),
  b(CS + 'last-index-of', 2, 3, (a) => indexOfImpl(CS + 'last-index-of', a, true), '(clojure.string/last-index-of s sub [from]): the index of the last occurrence of sub, or nil'),
  oneString(CS + 'reverse', (s) => chars(s).reverse().join(''), '(clojure.string/reverse s): the characters of s in reverse order'),
  b(
    CS + 'escape',
    2,
    2,
    (a) => {
      const s = str(CS + 'escape', a[0], 0);
      const m = a[1];
      if (!isMap(m)) return typeError(CS + 'escape', 'a map from characters to replacements', m, 1);
      return chars(s)
        .map((c) => {
          const r = m.get(c);
          return r === undefined || r === null ? c : strOf(r);
        })
        .join('');
    },
    '(clojure.string/escape s cmap): s with each character found in the map cmap replaced by its value',
  ),
];
