/**
 * RTFS type expressions: parsing the data form of a type, validating values against it, printing
 * it back, and rendering it as JSON Schema.
 *
 * Owns: the type grammar (§8.2 of the notes on the original), the validator with paths into the
 * value, the readable error lines, and the JSON Schema rendering used for tool schemas.
 * Must never: import `node:*`, evaluate code, or perform I/O.
 *
 * Divergences from the original, on purpose:
 * - `:integer` and `:number` are real types (`:number` accepts an int or a float), not failing aliases.
 * - numeric refinements compare numerically across int and float (`[:and :float [:> 0]]` accepts 1.5).
 * - length refinements count characters (code points), not bytes.
 * - `[:* T]` in a record checks the values of the keys it does not list.
 * - an unknown type name is a syntax error when the type is parsed, not a failure at validation.
 */
import { MetaForm } from './reader.js';
import { prStr } from './printer.js';
import {
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
  isFn,
  kw,
  unlabel,
  valueEquals,
  type RMap,
  type Value,
} from './values.js';

// ---------------------------------------------------------------------------------------------
// Type expressions

/** Every spelling of a primitive type (the spelling is kept so that printing round-trips). */
export type PrimName =
  | 'int'
  | 'integer'
  | 'float'
  | 'number'
  | 'string'
  | 'bool'
  | 'boolean'
  | 'nil'
  | 'keyword'
  | 'symbol'
  | 'any'
  | 'never'
  | 'map'
  | 'vector'
  | 'list'
  | 'set'
  | 'fn'
  | 'function'
  | 'regex';

const PRIM_NAMES: ReadonlySet<string> = new Set<PrimName>([
  'int', 'integer', 'float', 'number', 'string', 'bool', 'boolean', 'nil', 'keyword', 'symbol',
  'any', 'never', 'map', 'vector', 'list', 'set', 'fn', 'function', 'regex',
]);

/** The refinement predicates (usable inside `[:and Base ...]`, and on their own). */
export type RefinementName =
  | '>'
  | '>='
  | '<'
  | '<='
  | '='
  | '!='
  | 'in-range'
  | 'min-length'
  | 'max-length'
  | 'length'
  | 'matches-regex'
  | 'min-count'
  | 'max-count'
  | 'count'
  | 'non-empty'
  | 'has-key'
  | 'required-keys'
  | 'is-url'
  | 'is-email';

/** One field of a record type `[:map ...]`. */
export interface MapField {
  /** The key as written (a keyword, or a string); values may use either spelling. */
  readonly key: Keyword | string;
  /** The key's name (keyword name without the colon, or the string). */
  readonly name: string;
  readonly type: TypeExpr;
  readonly optional: boolean;
}

/** A parsed type. */
export type TypeExpr =
  | { readonly kind: 'prim'; readonly name: PrimName }
  | { readonly kind: 'named'; readonly name: string; readonly display: string; readonly type: TypeExpr }
  | { readonly kind: 'optional'; readonly type: TypeExpr }
  | { readonly kind: 'vector' | 'list' | 'set'; readonly elem: TypeExpr }
  | { readonly kind: 'tuple'; readonly items: readonly TypeExpr[] }
  | {
      readonly kind: 'map';
      readonly fields: readonly MapField[];
      /** `[:* T]`: the type of the values of unlisted keys, if given. */
      readonly rest: TypeExpr | null;
      /** Written as `[:map {:k T ...}]`. */
      readonly braces: boolean;
    }
  | { readonly kind: 'map-of'; readonly key: TypeExpr; readonly val: TypeExpr }
  | { readonly kind: 'union'; readonly members: readonly TypeExpr[] }
  | { readonly kind: 'and'; readonly base: TypeExpr; readonly parts: readonly TypeExpr[] }
  | { readonly kind: 'enum'; readonly values: readonly Value[] }
  | { readonly kind: 'val'; readonly value: Value }
  | { readonly kind: 'fn'; readonly form: Value }
  | {
      readonly kind: 'refine';
      readonly pred: RefinementName;
      readonly args: readonly Value[];
      /** Compiled pattern for `matches-regex`. */
      readonly re?: RegExp;
    };

/** One validation failure. */
export interface TypeError {
  /** From the root value: map keys (as written in the value or the type), vector indices. */
  path: Value[];
  /** The printed type that did not hold (`:float`, `[:enum :a :b]`, `[:> 0]`). */
  expected: string;
  /** The offending value (`nil` for a missing key). */
  got: Value;
  /** The full line: `[:items 3 :price] expected :float, got "12"`. */
  message: string;
}

/** At most this many errors are collected by `validate`. */
export const MAX_TYPE_ERRORS = 50;

// ---------------------------------------------------------------------------------------------
// Parsing

const REFINEMENTS: ReadonlySet<string> = new Set<RefinementName>([
  '>', '>=', '<', '<=', '=', '!=', 'in-range', 'min-length', 'max-length', 'length',
  'matches-regex', 'min-count', 'max-count', 'count', 'non-empty', 'has-key', 'required-keys',
  'is-url', 'is-email',
]);

function syntax(message: string): never {
  throw new RtfsError('type-syntax', message);
}

function show(form: unknown): string {
  return prStr(form as Value);
}

function isNum(v: Value): v is number | bigint | RFloat {
  return typeof v === 'number' || typeof v === 'bigint' || v instanceof RFloat;
}

function isNatural(v: Value): v is number | bigint {
  return (typeof v === 'number' || typeof v === 'bigint') && v >= 0;
}

/** The primitive a name denotes (`int`, `Int`, `INT` is not accepted), or null. */
function primOf(name: string): PrimName | null {
  if (PRIM_NAMES.has(name)) return name as PrimName;
  if (name.length > 1 && name[0] >= 'A' && name[0] <= 'Z') {
    const lower = name[0].toLowerCase() + name.slice(1);
    if (lower === lower.toLowerCase() && PRIM_NAMES.has(lower)) return lower as PrimName;
  }
  return null;
}

function resolveName(
  name: string,
  display: string,
  form: unknown,
  aliases: ReadonlyMap<string, TypeExpr> | undefined,
): TypeExpr {
  const prim = primOf(name);
  if (prim !== null) return { kind: 'prim', name: prim };
  const alias = aliases?.get(name);
  if (alias !== undefined) return { kind: 'named', name, display, type: alias };
  if (name.length > 1 && name.endsWith('?')) {
    const base = name.slice(0, -1);
    return { kind: 'optional', type: resolveName(base, display.slice(0, -1), form, aliases) };
  }
  return syntax(`unknown type ${show(form)}`);
}

/**
 * Parses the data form of a type. `aliases` maps names (without a colon) to already parsed types
 * (`deftype` and capability schemas). Throws `RtfsError('type-syntax')` naming the bad sub-form.
 */
export function parseType(form: Value | unknown, aliases?: ReadonlyMap<string, TypeExpr>): TypeExpr {
  if (form instanceof MetaForm) form = form.form;
  if (form instanceof Labeled) form = form.value;
  if (form instanceof Keyword) return resolveName(form.name, `:${form.name}`, form, aliases);
  if (form instanceof Sym) return resolveName(form.name, form.name, form, aliases);
  if (List.isList(form)) return parseCompound(form as List<Value>, aliases);
  return syntax(`not a type: ${show(form)} (expected a keyword, a symbol or a vector)`);
}

function headName(v: Value): string | null {
  if (v instanceof Keyword) return v.name;
  if (v instanceof Sym) return v.name;
  return null;
}

function parseCompound(form: List<Value>, aliases: ReadonlyMap<string, TypeExpr> | undefined): TypeExpr {
  const head = form.size > 0 ? headName(unlabel(form.get(0) as Value)) : null;
  if (head === null) return syntax(`not a type: ${show(form)} (a type vector starts with a keyword such as :vector)`);
  const args = form.rest().toArray();
  const sub = (f: Value): TypeExpr => parseType(f, aliases);
  const arity = (n: number): void => {
    if (args.length !== n) syntax(`${show(form)}: [:${head} ...] takes ${n} argument${n === 1 ? '' : 's'}, got ${args.length}`);
  };
  switch (head) {
    case 'vector':
    case 'list':
    case 'set':
      arity(1);
      return { kind: head, elem: sub(args[0]) };
    case 'tuple':
      return { kind: 'tuple', items: args.map(sub) };
    case 'map':
    case 'record':
      return parseRecord(form, args, aliases);
    case 'map-of':
    case 'dict':
      arity(2);
      return { kind: 'map-of', key: sub(args[0]), val: sub(args[1]) };
    case 'union':
    case 'or':
      if (args.length === 0) syntax(`${show(form)}: [:${head} ...] needs at least one member type`);
      return { kind: 'union', members: args.map(sub) };
    case 'and': {
      if (args.length === 0) syntax(`${show(form)}: [:and Base ...] needs a base type`);
      const base = sub(args[0]);
      const parts = args.slice(1).map((a) => parseAndPart(a, aliases));
      return { kind: 'and', base, parts };
    }
    case 'enum':
      if (args.length === 0) syntax(`${show(form)}: [:enum ...] needs at least one literal`);
      return { kind: 'enum', values: args.map(unlabel) };
    case 'val':
    case '=':
      arity(1);
      return { kind: 'val', value: unlabel(args[0]) };
    case 'fn':
    case '=>':
      return { kind: 'fn', form };
    case 'maybe':
    case 'optional':
      arity(1);
      return { kind: 'optional', type: sub(args[0]) };
    case 'array':
      // `[:array T [d ...]]`: a vector of T (the dimensions are not checked).
      if (args.length < 1 || args.length > 2) syntax(`${show(form)}: [:array T dims] takes 1 or 2 arguments`);
      return { kind: 'vector', elem: sub(args[0]) };
  }
  if (REFINEMENTS.has(head)) return parseRefinement(head as RefinementName, args, form);
  return syntax(`unknown type constructor :${head} in ${show(form)}`);
}

function parseAndPart(f: Value, aliases: ReadonlyMap<string, TypeExpr> | undefined): TypeExpr {
  let g: unknown = f instanceof MetaForm ? (f as MetaForm).form : f;
  g = unlabel(g as Value);
  if (List.isList(g)) {
    const v = g as List<Value>;
    const head = v.size > 0 ? headName(unlabel(v.get(0) as Value)) : null;
    if (head !== null && REFINEMENTS.has(head)) {
      return parseRefinement(head as RefinementName, v.rest().toArray(), v);
    }
    if (head !== null && !TYPE_CONSTRUCTORS.has(head)) syntax(`unknown refinement ${show(v)}`);
  }
  return parseType(g, aliases);
}

const TYPE_CONSTRUCTORS: ReadonlySet<string> = new Set([
  'vector', 'list', 'set', 'tuple', 'map', 'record', 'map-of', 'dict', 'union', 'or', 'and',
  'enum', 'val', 'fn', '=>', 'maybe', 'optional', 'array',
]);

function parseRefinement(pred: RefinementName, rawArgs: Value[], form: Value): TypeExpr {
  const args = rawArgs.map(unlabel);
  const need = (n: number): void => {
    if (args.length !== n) syntax(`refinement ${show(form)} takes ${n} argument${n === 1 ? '' : 's'}, got ${args.length}`);
  };
  switch (pred) {
    case '>':
    case '>=':
    case '<':
    case '<=':
      need(1);
      if (!isNum(args[0])) syntax(`refinement ${show(form)} needs a number`);
      break;
    case '=':
    case '!=':
      need(1);
      break;
    case 'in-range':
      need(2);
      if (!isNum(args[0]) || !isNum(args[1])) syntax(`refinement ${show(form)} needs two numbers`);
      break;
    case 'min-length':
    case 'max-length':
    case 'length':
    case 'min-count':
    case 'max-count':
    case 'count':
      need(1);
      if (!isNatural(args[0])) syntax(`refinement ${show(form)} needs a non-negative integer`);
      break;
    case 'matches-regex': {
      need(1);
      const src = args[0] instanceof RRegex ? args[0].source : args[0];
      if (typeof src !== 'string') syntax(`refinement ${show(form)} needs a regex string`);
      let re: RegExp;
      try {
        re = new RegExp(src, 'u');
      } catch (e) {
        return syntax(`refinement ${show(form)}: bad regex: ${(e as Error).message}`);
      }
      return { kind: 'refine', pred, args, re };
    }
    case 'non-empty':
    case 'is-url':
    case 'is-email':
      need(0);
      break;
    case 'has-key':
      need(1);
      break;
    case 'required-keys':
      need(1);
      if (!List.isList(args[0])) syntax(`refinement ${show(form)} needs a vector of keys`);
      break;
  }
  return { kind: 'refine', pred, args };
}

function parseRecord(form: List<Value>, args: Value[], aliases: ReadonlyMap<string, TypeExpr> | undefined): TypeExpr {
  const fields: MapField[] = [];
  let rest: TypeExpr | null = null;
  const seen = new Set<string>();
  const keyOf = (k: Value, where: Value): { key: Keyword | string; name: string } => {
    k = unlabel(k);
    if (k instanceof Keyword) return { key: k, name: k.name };
    if (typeof k === 'string') return { key: k, name: k };
    return syntax(`record key must be a keyword or a string: ${show(k)} in ${show(where)}`);
  };
  const add = (f: MapField, where: Value): void => {
    if (seen.has(f.name)) syntax(`duplicate key ${show(f.key)} in ${show(where)}`);
    seen.add(f.name);
    fields.push(f);
  };
  const first = args.length > 0 ? unlabel(args[0]) : null;
  if (args.length === 1 && IMap.isMap(first)) {
    // `[:map {:k T :k2 T2?}]`: a key whose type is optional may be absent.
    (first as RMap).forEach((t, k) => {
      const { key, name } = keyOf(k, form);
      const type = parseType(t, aliases);
      add({ key, name, type, optional: type.kind === 'optional' }, form);
    });
    return { kind: 'map', fields, rest, braces: true };
  }
  for (const a of args) {
    let e: unknown = unlabel(a);
    if (e instanceof MetaForm) e = e.form;
    if (!List.isList(e)) syntax(`${show(form)}: record entry must be [:key Type], got ${show(e)}`);
    const entry = (e as List<Value>).toArray().map(unlabel);
    if (entry.length === 2 && entry[0] instanceof Keyword && entry[0].name === '*') {
      rest = parseType(entry[1], aliases);
      continue;
    }
    if (entry.length < 2 || entry.length > 3) syntax(`${show(form)}: record entry must be [:key Type], got ${show(e)}`);
    const { key, name } = keyOf(entry[0], e as Value);
    if (entry.length === 2) {
      add({ key, name, type: parseType(entry[1], aliases), optional: false }, form);
    } else if (IMap.isMap(entry[1])) {
      const opts = entry[1] as RMap;
      const opt = opts.get(kw('optional'));
      add({ key, name, type: parseType(entry[2], aliases), optional: opt === true }, form);
    } else if (entry[2] instanceof Sym && entry[2].name === '?') {
      add({ key, name, type: parseType(entry[1], aliases), optional: true }, form);
    } else if (entry[1] instanceof Sym && entry[1].name === '?') {
      add({ key, name, type: parseType(entry[2], aliases), optional: true }, form);
    } else {
      syntax(`${show(form)}: bad record entry ${show(e)} (expected [:k T], [:k T ?] or [:k {:optional true} T])`);
    }
  }
  return { kind: 'map', fields, rest, braces: false };
}

// ---------------------------------------------------------------------------------------------
// Printing

/** The readable RTFS form of a type. */
export function printType(t: TypeExpr): string {
  switch (t.kind) {
    case 'prim':
      return `:${t.name}`;
    case 'named':
      return t.display;
    case 'optional': {
      const inner = t.type;
      if (inner.kind === 'prim' || inner.kind === 'named') return `${printType(inner)}?`;
      return `[:maybe ${printType(inner)}]`;
    }
    case 'vector':
    case 'list':
    case 'set':
      return `[:${t.kind} ${printType(t.elem)}]`;
    case 'tuple':
      return bracket('tuple', t.items.map(printType));
    case 'map': {
      if (t.braces) {
        return `[:map {${t.fields.map((f) => `${show(f.key)} ${printType(f.type)}`).join(' ')}}]`;
      }
      const parts = t.fields.map((f) => `[${show(f.key)} ${f.optional ? '{:optional true} ' : ''}${printType(f.type)}]`);
      if (t.rest) parts.push(`[:* ${printType(t.rest)}]`);
      return bracket('map', parts);
    }
    case 'map-of':
      return `[:map-of ${printType(t.key)} ${printType(t.val)}]`;
    case 'union':
      return bracket('union', t.members.map(printType));
    case 'and':
      return bracket('and', [printType(t.base), ...t.parts.map(printType)]);
    case 'enum':
      return bracket('enum', t.values.map(show));
    case 'val':
      return `[:val ${show(t.value)}]`;
    case 'fn':
      return show(t.form);
    case 'refine':
      return bracket(t.pred, t.args.map(show));
  }
}

function bracket(head: string, parts: string[]): string {
  return parts.length === 0 ? `[:${head}]` : `[:${head} ${parts.join(' ')}]`;
}

// ---------------------------------------------------------------------------------------------
// Validation

const URL_RE = /^[a-z][a-z0-9+.-]*:\/\/[^\s/?#]+[^\s]*$/i;
const EMAIL_RE = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;

/** Numeric comparison across int (number | bigint) and float; NaN compares as unordered. */
function cmp(a: number | bigint | RFloat, b: number | bigint | RFloat): number {
  const x = a instanceof RFloat ? a.v : a;
  const y = b instanceof RFloat ? b.v : b;
  if (typeof x === 'number' && Number.isNaN(x)) return NaN;
  if (typeof y === 'number' && Number.isNaN(y)) return NaN;
  // JS compares number and bigint exactly.
  return x < y ? -1 : x > y ? 1 : 0;
}

function numEq(a: Value, b: Value): boolean {
  if (isNum(a) && isNum(b)) return cmp(a, b) === 0;
  return valueEquals(a, b);
}

function charCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** The element count of a collection (strings count characters), or -1 if not countable. */
function countOf(v: Value): number {
  if (typeof v === 'string') return charCount(v);
  if (v instanceof RList) return v.count;
  if (List.isList(v) || IMap.isMap(v) || ISet.isSet(v)) return (v as { size: number }).size;
  return -1;
}

/** Looks up a map entry by keyword or string name; returns the key actually present, or undefined. */
function findKey(m: RMap, key: Keyword | string, name: string): Value | undefined {
  if (m.has(key)) return key;
  const other: Value = key instanceof Keyword ? name : kw(name);
  if (m.has(other)) return other;
  return undefined;
}

function hasKeyLoose(m: RMap, k: Value): boolean {
  if (m.has(k)) return true;
  if (k instanceof Keyword) return m.has(k.name);
  if (typeof k === 'string') return m.has(kw(k));
  return false;
}

function checkPrim(name: PrimName, v: Value): boolean {
  switch (name) {
    case 'int':
    case 'integer':
      return typeof v === 'number' || typeof v === 'bigint';
    case 'float':
    case 'number':
      return typeof v === 'number' || typeof v === 'bigint' || v instanceof RFloat;
    case 'string':
      return typeof v === 'string';
    case 'bool':
    case 'boolean':
      return typeof v === 'boolean';
    case 'nil':
      return v === null;
    case 'keyword':
      return v instanceof Keyword;
    case 'symbol':
      return v instanceof Sym;
    case 'any':
      return true;
    case 'never':
      return false;
    case 'map':
      return IMap.isMap(v);
    case 'vector':
      return List.isList(v);
    case 'list':
      return v instanceof RList;
    case 'set':
      return ISet.isSet(v);
    case 'fn':
    case 'function':
      return isFn(v);
    case 'regex':
      return v instanceof RRegex;
  }
}

function checkRefine(t: Extract<TypeExpr, { kind: 'refine' }>, v: Value): boolean {
  const a = t.args;
  switch (t.pred) {
    case '>':
      return isNum(v) && cmp(v, a[0] as RFloat) > 0;
    case '>=':
      return isNum(v) && cmp(v, a[0] as RFloat) >= 0;
    case '<':
      return isNum(v) && cmp(v, a[0] as RFloat) < 0;
    case '<=':
      return isNum(v) && cmp(v, a[0] as RFloat) <= 0;
    case '=':
      return numEq(v, a[0]);
    case '!=':
      return !numEq(v, a[0]);
    case 'in-range':
      return isNum(v) && cmp(v, a[0] as RFloat) >= 0 && cmp(v, a[1] as RFloat) <= 0;
    case 'min-length':
      return typeof v === 'string' && charCount(v) >= Number(a[0]);
    case 'max-length':
      return typeof v === 'string' && charCount(v) <= Number(a[0]);
    case 'length':
      return typeof v === 'string' && charCount(v) === Number(a[0]);
    case 'matches-regex':
      return typeof v === 'string' && (t.re as RegExp).test(v);
    case 'min-count': {
      const n = countOf(v);
      return n >= 0 && n >= Number(a[0]);
    }
    case 'max-count': {
      const n = countOf(v);
      return n >= 0 && n <= Number(a[0]);
    }
    case 'count':
      return countOf(v) === Number(a[0]);
    case 'non-empty':
      return countOf(v) > 0;
    case 'has-key':
      return IMap.isMap(v) && hasKeyLoose(v as RMap, a[0]);
    case 'required-keys': {
      if (!IMap.isMap(v)) return false;
      for (const k of a[0] as List<Value>) if (!hasKeyLoose(v as RMap, unlabel(k))) return false;
      return true;
    }
    case 'is-url':
      return typeof v === 'string' && URL_RE.test(v);
    case 'is-email':
      return typeof v === 'string' && EMAIL_RE.test(v);
  }
}

/** Whether `value` has type `type` (no allocation on the common paths). */
export function isValid(type: TypeExpr, value: Value): boolean {
  const v = value instanceof Labeled ? value.value : value;
  switch (type.kind) {
    case 'prim':
      return checkPrim(type.name, v);
    case 'named':
      return isValid(type.type, v);
    case 'optional':
      return v === null || isValid(type.type, v);
    case 'vector':
      if (!List.isList(v)) return false;
      for (const x of v as List<Value>) if (!isValid(type.elem, x)) return false;
      return true;
    case 'list':
      if (!(v instanceof RList)) return false;
      for (let l: RList = v; l.count > 0; l = l.rest()) if (!isValid(type.elem, l.first())) return false;
      return true;
    case 'set':
      if (!ISet.isSet(v)) return false;
      for (const x of v as ISet<Value>) if (!isValid(type.elem, x)) return false;
      return true;
    case 'tuple': {
      if (!List.isList(v)) return false;
      const l = v as List<Value>;
      if (l.size !== type.items.length) return false;
      for (let i = 0; i < type.items.length; i++) if (!isValid(type.items[i], l.get(i) as Value)) return false;
      return true;
    }
    case 'map': {
      if (!IMap.isMap(v)) return false;
      const m = v as RMap;
      for (const f of type.fields) {
        const k = findKey(m, f.key, f.name);
        if (k === undefined) {
          if (!f.optional) return false;
        } else if (!isValid(f.type, m.get(k) as Value)) return false;
      }
      if (type.rest !== null) {
        for (const [k, x] of m) if (!isListedKey(type.fields, k) && !isValid(type.rest, x)) return false;
      }
      return true;
    }
    case 'map-of': {
      if (!IMap.isMap(v)) return false;
      for (const [k, x] of v as RMap) if (!isValid(type.key, k) || !isValid(type.val, x)) return false;
      return true;
    }
    case 'union':
      for (const m of type.members) if (isValid(m, v)) return true;
      return false;
    case 'and':
      if (!isValid(type.base, v)) return false;
      for (const p of type.parts) if (!isValid(p, v)) return false;
      return true;
    case 'enum':
      for (const x of type.values) if (valueEquals(x, v)) return true;
      return false;
    case 'val':
      return valueEquals(type.value, v);
    case 'fn':
      return isFn(v);
    case 'refine':
      return checkRefine(type, v);
  }
}

function isListedKey(fields: readonly MapField[], k: Value): boolean {
  k = unlabel(k);
  const name = k instanceof Keyword ? k.name : typeof k === 'string' ? k : null;
  if (name === null) return false;
  for (const f of fields) if (f.name === name) return true;
  return false;
}

const MAX_SHOWN = 200;

function showGot(v: Value): string {
  const s = prStr(v);
  return s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN)}...` : s;
}

class Collector {
  readonly errors: TypeError[] = [];
  readonly path: Value[] = [];
  get full(): boolean {
    return this.errors.length >= MAX_TYPE_ERRORS;
  }
  mismatch(t: TypeExpr, got: Value): void {
    if (this.full) return;
    const path = this.path.slice();
    const expected = printType(t);
    this.errors.push({ path, expected, got, message: `${path.length ? prStr(List(path)) + ' ' : ''}expected ${expected}, got ${showGot(got)}` });
  }
  missing(f: MapField): void {
    if (this.full) return;
    const path = [...this.path, f.key];
    const expected = printType(f.type);
    this.errors.push({ path, expected, got: null, message: `${prStr(List(path))} missing required key (expected ${expected})` });
  }
}

function walk(t: TypeExpr, value: Value, c: Collector): void {
  if (c.full) return;
  const v = value instanceof Labeled ? value.value : value;
  if (isValid(t, v)) return;
  switch (t.kind) {
    case 'named':
      return walk(t.type, v, c);
    case 'optional':
      return walk(t.type, v, c);
    case 'vector':
    case 'set':
    case 'list': {
      if (!checkPrim(t.kind, v)) return c.mismatch(t, v);
      let i = 0;
      for (const x of v as Iterable<Value>) {
        // Set elements have no index; the path names the element itself.
        c.path.push(t.kind === 'set' ? x : i);
        walk(t.elem, x, c);
        c.path.pop();
        i++;
      }
      return;
    }
    case 'tuple': {
      if (!List.isList(v) || (v as List<Value>).size !== t.items.length) return c.mismatch(t, v);
      const l = v as List<Value>;
      for (let i = 0; i < t.items.length; i++) {
        c.path.push(i);
        walk(t.items[i], l.get(i) as Value, c);
        c.path.pop();
      }
      return;
    }
    case 'map': {
      if (!IMap.isMap(v)) return c.mismatch(t, v);
      const m = v as RMap;
      for (const f of t.fields) {
        const k = findKey(m, f.key, f.name);
        if (k === undefined) {
          if (!f.optional) c.missing(f);
          continue;
        }
        c.path.push(k);
        walk(f.type, m.get(k) as Value, c);
        c.path.pop();
      }
      if (t.rest !== null) {
        for (const [k, x] of m) {
          if (isListedKey(t.fields, k)) continue;
          c.path.push(k);
          walk(t.rest, x, c);
          c.path.pop();
        }
      }
      return;
    }
    case 'map-of': {
      if (!IMap.isMap(v)) return c.mismatch(t, v);
      for (const [k, x] of v as RMap) {
        c.path.push(k);
        walk(t.key, k, c);
        walk(t.val, x, c);
        c.path.pop();
      }
      return;
    }
    case 'and':
      if (!isValid(t.base, v)) return walk(t.base, v, c);
      for (const p of t.parts) walk(p, v, c);
      return;
    default:
      // prim, union, enum, val, fn, refine: one error for the value as a whole.
      return c.mismatch(t, v);
  }
}

/** Every way `value` fails `type` (at most `MAX_TYPE_ERRORS`), each with its path from the root. */
export function validate(type: TypeExpr, value: Value): TypeError[] {
  if (isValid(type, value)) return [];
  const c = new Collector();
  walk(type, value, c);
  return c.errors;
}

/** One line per error. */
export function formatTypeErrors(errors: TypeError[]): string {
  return errors.map((e) => e.message).join('\n');
}

// ---------------------------------------------------------------------------------------------
// JSON Schema (draft 2020-12)

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = { [k: string]: Json };

/** An RTFS value as JSON (keywords and symbols become their names). */
function toJson(v: Value): Json {
  v = unlabel(v);
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof RFloat) return v.v;
  if (v instanceof Keyword || v instanceof Sym) return v.name;
  if (v instanceof RList || List.isList(v) || ISet.isSet(v)) return [...(v as Iterable<Value>)].map(toJson);
  if (IMap.isMap(v)) {
    const o: { [k: string]: Json } = {};
    (v as RMap).forEach((x, k) => {
      const kk = unlabel(k);
      o[kk instanceof Keyword ? kk.name : typeof kk === 'string' ? kk : prStr(kk)] = toJson(x);
    });
    return o;
  }
  return prStr(v);
}

function keyName(k: Value): string {
  k = unlabel(k);
  return k instanceof Keyword ? k.name : typeof k === 'string' ? k : prStr(k);
}

function primSchema(name: PrimName): Schema {
  switch (name) {
    case 'int':
    case 'integer':
      return { type: 'integer' };
    case 'float':
    case 'number':
      return { type: 'number' };
    case 'string':
    case 'keyword':
    case 'symbol':
      return { type: 'string' };
    case 'regex':
      return { type: 'string', format: 'regex' };
    case 'bool':
    case 'boolean':
      return { type: 'boolean' };
    case 'nil':
      return { type: 'null' };
    case 'any':
    case 'fn':
    case 'function':
      return {};
    case 'never':
      return { not: {} };
    case 'map':
      return { type: 'object' };
    case 'vector':
    case 'list':
      return { type: 'array' };
    case 'set':
      return { type: 'array', uniqueItems: true };
  }
}

/** Adds the keywords of a refinement to `s` (which describes the base type). */
function addRefinement(s: Schema, t: Extract<TypeExpr, { kind: 'refine' }>): void {
  const a = t.args;
  const n = (i: number): number => Number(toJson(a[i]));
  const kind = s.type;
  const countKey = (which: 'min' | 'max'): string =>
    kind === 'string' ? `${which}Length` : kind === 'object' ? `${which}Properties` : `${which}Items`;
  switch (t.pred) {
    case '>':
      s.exclusiveMinimum = n(0);
      return;
    case '>=':
      s.minimum = n(0);
      return;
    case '<':
      s.exclusiveMaximum = n(0);
      return;
    case '<=':
      s.maximum = n(0);
      return;
    case 'in-range':
      s.minimum = n(0);
      s.maximum = n(1);
      return;
    case '=':
      s.const = toJson(a[0]);
      return;
    case '!=':
      s.not = { const: toJson(a[0]) };
      return;
    case 'min-length':
      s.minLength = n(0);
      return;
    case 'max-length':
      s.maxLength = n(0);
      return;
    case 'length':
      s.minLength = n(0);
      s.maxLength = n(0);
      return;
    case 'matches-regex':
      s.pattern = (t.re as RegExp).source;
      return;
    case 'min-count':
      s[countKey('min')] = n(0);
      return;
    case 'max-count':
      s[countKey('max')] = n(0);
      return;
    case 'count':
      s[countKey('min')] = n(0);
      s[countKey('max')] = n(0);
      return;
    case 'non-empty':
      s[countKey('min')] = 1;
      return;
    case 'has-key':
    case 'required-keys': {
      const keys = t.pred === 'has-key' ? [keyName(a[0])] : [...(a[0] as List<Value>)].map(keyName);
      const prev = Array.isArray(s.required) ? (s.required as string[]) : [];
      s.required = [...prev, ...keys.filter((k) => !prev.includes(k))];
      return;
    }
    case 'is-url':
      s.format = 'uri';
      return;
    case 'is-email':
      s.format = 'email';
      return;
  }
}

function schemaOf(t: TypeExpr): Schema {
  switch (t.kind) {
    case 'prim':
      return primSchema(t.name);
    case 'named':
      return schemaOf(t.type);
    case 'optional':
      return { anyOf: [schemaOf(t.type), { type: 'null' }] };
    case 'vector':
    case 'list':
      return { type: 'array', items: schemaOf(t.elem) };
    case 'set':
      return { type: 'array', items: schemaOf(t.elem), uniqueItems: true };
    case 'tuple':
      return {
        type: 'array',
        prefixItems: t.items.map(schemaOf),
        items: false,
        minItems: t.items.length,
        maxItems: t.items.length,
      };
    case 'map': {
      const properties: Schema = {};
      const required: string[] = [];
      for (const f of t.fields) {
        properties[f.name] = schemaOf(f.type);
        if (!f.optional) required.push(f.name);
      }
      const s: Schema = { type: 'object', properties };
      if (required.length > 0) s.required = required;
      if (t.rest !== null) s.additionalProperties = schemaOf(t.rest);
      return s;
    }
    case 'map-of':
      return { type: 'object', additionalProperties: schemaOf(t.val) };
    case 'union':
      return { anyOf: t.members.map(schemaOf) };
    case 'and': {
      const s: Schema = { ...schemaOf(t.base) };
      const all: Json[] = [];
      for (const p of t.parts) {
        if (p.kind === 'refine') addRefinement(s, p);
        else all.push(schemaOf(p));
      }
      if (all.length > 0) s.allOf = all;
      return s;
    }
    case 'enum':
      return { enum: t.values.map(toJson) };
    case 'val':
      return { const: toJson(t.value) };
    case 'fn':
      return {};
    case 'refine': {
      const s: Schema = {};
      addRefinement(s, t);
      return s;
    }
  }
}

/**
 * A best-effort JSON Schema (draft 2020-12) for a type; what JSON cannot say is left out. No
 * `$schema` key is added (callers embedding the schema add it if they want it).
 */
export function typeToJsonSchema(t: TypeExpr): object {
  return schemaOf(t);
}
