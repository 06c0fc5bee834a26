/**
 * Native regular-expression functions (`re-pattern`, `re-find`, `re-matches`, `re-seq`) with
 * Clojure semantics: a match is the matched string, or the vector `[whole g1 g2 ...]` when the
 * pattern has groups (an unmatched group is nil); no match is nil. A pattern may be a regex or a
 * string (compiled as a regex). Patterns are JavaScript regular expressions with the `u` flag.
 * Must never: import `node:*`, read the clock, use randomness.
 */
import { List, RRegex, RtfsError, type Builtin, type Value } from '../values.js';
import { defineBuiltin, typeError } from './define.js';

/** Compiles a pattern, turning a syntax error into an RTFS `value` error naming the function. */
export function compileRegex(fname: string, source: string): RRegex {
  try {
    return new RRegex(source);
  } catch (e) {
    throw new RtfsError('value', `${fname}: invalid regular expression ${JSON.stringify(source)}: ${(e as Error).message}`);
  }
}

const stringPatterns = new Map<string, RRegex>();

/** A regex argument: an `RRegex`, or a string compiled as a pattern. */
export function regexArg(fname: string, v: Value, argIndex?: number): RRegex {
  if (v instanceof RRegex) return v;
  if (typeof v === 'string') {
    let r = stringPatterns.get(v);
    if (r === undefined) {
      r = compileRegex(fname, v);
      if (stringPatterns.size > 256) stringPatterns.clear();
      stringPatterns.set(v, r);
    }
    return r;
  }
  return typeError(fname, 'a regex or a pattern string', v, argIndex);
}

const globals = new WeakMap<RRegex, RegExp>();
const anchored = new WeakMap<RRegex, RegExp>();

/** The pattern with the `g` flag, for iterating over matches (reset `lastIndex` before use). */
export function globalRe(r: RRegex): RegExp {
  let g = globals.get(r);
  if (g === undefined) {
    g = new RegExp(r.re.source, 'gu');
    globals.set(r, g);
  }
  g.lastIndex = 0;
  return g;
}

function anchoredRe(r: RRegex): RegExp {
  let a = anchored.get(r);
  if (a === undefined) {
    a = new RegExp(`^(?:${r.re.source})$`, 'u');
    anchored.set(r, a);
  }
  return a;
}

/** Advances a global regex past an empty match so iteration always progresses. */
export function skipEmpty(re: RegExp, s: string, m: RegExpExecArray): void {
  if (m[0].length === 0) {
    const c = s.codePointAt(m.index);
    re.lastIndex = m.index + (c !== undefined && c > 0xffff ? 2 : 1);
  }
}

/** A match as RTFS returns it: the string, or `[whole g1 ...]` when the pattern has groups. */
export function matchValue(m: RegExpExecArray): Value {
  if (m.length === 1) return m[0];
  return List<Value>(Array.from(m, (g) => (g === undefined ? null : g)));
}

function strArg(fname: string, v: Value, i: number): string {
  if (typeof v === 'string') return v;
  return typeError(fname, 'a string', v, i);
}

/** All matches of a pattern in a string, in order. */
export function allMatches(r: RRegex, s: string): RegExpExecArray[] {
  const re = globalRe(r);
  const out: RegExpExecArray[] = [];
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    out.push(m);
    skipEmpty(re, s, m);
  }
  return out;
}

export const regexBuiltins: Builtin[] = [
  defineBuiltin('re-pattern', 1, 1, (a) => regexArg('re-pattern', a[0], 0), '(re-pattern s): the regex with source s (a regex is returned as is)'),
  defineBuiltin(
    're-find',
    2,
    2,
    (a) => {
      const r = regexArg('re-find', a[0], 0);
      const m = r.re.exec(strArg('re-find', a[1], 1));
      return m === null ? null : matchValue(m);
    },
    '(re-find re s): the first match of re in s (string, or [whole & groups]), or nil',
  ),
  defineBuiltin(
    're-matches',
    2,
    2,
    (a) => {
      const r = regexArg('re-matches', a[0], 0);
      const m = anchoredRe(r).exec(strArg('re-matches', a[1], 1));
      return m === null ? null : matchValue(m);
    },
    '(re-matches re s): the match if re matches the whole of s (string, or [whole & groups]), else nil',
  ),
  defineBuiltin(
    're-seq',
    2,
    2,
    (a) => {
      const ms = allMatches(regexArg('re-seq', a[0], 0), strArg('re-seq', a[1], 1));
      return ms.length === 0 ? null : List<Value>(ms.map(matchValue));
    },
    '(re-seq re s): a vector of all successive matches of re in s, or nil when none',
  ),
];
