/**
 * The RTFS printer: values → text.
 *
 * Owns: `pr-str` (readable: reads back to an equal value for every data value) and `str`
 * (human) renderings. Map and set order is the collection's own iteration order, which is
 * deterministic across processes (hashes of keywords, strings and numbers do not depend on the
 * process).
 * Must never: evaluate, import `node:*`, or throw for any value.
 */
import { MetaForm } from './reader.js';
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
  Sym,
  type RMap,
  type Value,
} from './values.js';

/** Prints a float so that it reads back as a float (always a decimal point or exponent). */
export function printFloat(v: number): string {
  if (Number.isNaN(v)) return '##NaN';
  if (v === Infinity) return '##Inf';
  if (v === -Infinity) return '##-Inf';
  if (v === 0 && 1 / v < 0) return '-0.0';
  const s = String(v);
  if (/[.eE]/.test(s)) return s;
  return `${s}.0`;
}

const ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\t': '\\t', '\r': '\\r', '\b': '\\b', '\f': '\\f', '\0': '\\0' };

/** Prints a string as an RTFS string literal. */
export function printString(s: string): string {
  return `"${s.replace(/["\\\n\t\r\b\f\0]/g, (c) => ESCAPES[c])}"`;
}

/** The readable printed form of a value (`pr-str`). */
export function prStr(v: Value | MetaForm): string {
  const out: string[] = [];
  pr(v, out);
  return out.join('');
}

function prSeq(items: Iterable<Value>, open: string, close: string, out: string[]): void {
  out.push(open);
  let first = true;
  for (const x of items) {
    if (!first) out.push(' ');
    first = false;
    pr(x, out);
  }
  out.push(close);
}

function pr(v: Value | MetaForm, out: string[]): void {
  if (v === null) return void out.push('nil');
  switch (typeof v) {
    case 'boolean':
    case 'number':
      return void out.push(String(v));
    case 'bigint':
      return void out.push(v.toString());
    case 'string':
      return void out.push(printString(v));
  }
  if (v instanceof Keyword) return void out.push(`:${v.name}`);
  if (v instanceof Sym) return void out.push(v.name);
  if (v instanceof RFloat) return void out.push(printFloat(v.v));
  if (v instanceof RList) return prSeq(v, '(', ')', out);
  if (List.isList(v)) return prSeq(v as List<Value>, '[', ']', out);
  if (IMap.isMap(v)) {
    out.push('{');
    let first = true;
    (v as RMap).forEach((val, key) => {
      if (!first) out.push(' ');
      first = false;
      pr(key, out);
      out.push(' ');
      pr(val, out);
    });
    return void out.push('}');
  }
  if (ISet.isSet(v)) return prSeq(v as ISet<Value>, '#{', '}', out);
  if (v instanceof RRegex) return void out.push(`#"${v.source}"`);
  if (v instanceof ErrorValue) return void out.push(`#<error ${printString(v.message)}>`);
  if (v instanceof Labeled) return pr(v.value, out);
  if (v instanceof MetaForm) {
    out.push('^');
    pr(v.meta, out);
    out.push(' ');
    return pr(v.form, out);
  }
  if (v instanceof Closure) return void out.push(v.name ? `#<fn ${v.name}>` : '#<fn>');
  return void out.push(`#<builtin ${(v as { name: string }).name}>`);
}

/** The human rendering of one value, as `str` uses it: strings raw, nil empty. */
export function strOf(v: Value): string {
  if (v === null) return '';
  if (typeof v === 'string') return v;
  if (v instanceof Labeled) return strOf(v.value);
  return prStr(v);
}
