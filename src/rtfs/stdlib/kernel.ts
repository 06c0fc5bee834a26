/**
 * Builtins the compiler and machine rely on: `apply` (run by the machine itself) and the helpers
 * that `match` and the original's `step-if` / `step-loop` expand into.
 *
 * Owns: functions with a name in `rtfs.core/` that user code does not normally call.
 * Must never: call back into RTFS code or perform I/O.
 */
import { prStr } from '../printer.js';
import { ErrorValue, IMap, ISet, List, RList, RtfsError, isFn, kw, EMPTY_MAP, type Builtin, type RMap, type Value } from '../values.js';
import { formatTypeErrors, parseType, validate, type TypeExpr } from '../types.js';
import { defineBuiltin } from './define.js';

/** Parsed type forms, by form identity (forms are constants of compiled code). */
const typeCache = new Map<Value, TypeExpr>();

function checkType(v: Value, typeForm: Value, what: Value, elements: Value): Value {
  let t = typeCache.get(typeForm);
  if (!t) {
    t = parseType(typeForm);
    typeCache.set(typeForm, t);
  }
  const items = elements ? (v === null ? [] : v instanceof RList ? v.toArray() : [v]) : [v];
  for (const item of items) {
    const errors = validate(t, item);
    if (errors.length > 0) throw new RtfsError('type', `${String(what)}: ${formatTypeErrors(errors)}`);
  }
  return null;
}

const apply: Builtin = {
  kind: 'builtin',
  name: 'apply',
  minArity: 2,
  maxArity: Infinity,
  special: 'apply',
  fn: () => {
    throw new RtfsError('internal', 'apply is run by the machine');
  },
  doc: '(apply f a b [c d]) calls f with a, b, c and d.',
};

function count(v: Value): number {
  if (v instanceof RList) return v.count;
  return (v as List<Value>).size;
}

/** Kernel builtins, registered with the natives. */
export const KERNEL_BUILTINS: Builtin[] = [
  apply,
  defineBuiltin(
    'rtfs.core/kwargs-map',
    2,
    2,
    ([v, fromRest]) => {
      // Clojure reads a sequence under a map pattern as key/value pairs; so do `& {:keys [..]}`.
      if (!(v instanceof RList) && !(fromRest && List.isList(v))) return v;
      const items = v instanceof RList ? v.toArray() : (v as List<Value>).toArray();
      if (items.length % 2 !== 0) throw new RtfsError('value', `keyword arguments need key/value pairs, got ${items.length} values`);
      let m: RMap = EMPTY_MAP;
      for (let i = 0; i < items.length; i += 2) m = m.set(items[i], items[i + 1]);
      return m;
    },
    'Reads a sequence of key/value pairs as a map (map destructuring of keyword arguments).',
  ),
  defineBuiltin(
    'rtfs.core/make-capability',
    3,
    3,
    ([id, manifest, impl]) => {
      if (!IMap.isMap(manifest)) throw new RtfsError('type', `capability ${String(id)}: the manifest must be a map`);
      if (!isFn(impl)) throw new RtfsError('type', `capability ${String(id)}: the implementation must be a function`);
      return EMPTY_MAP.set(kw('ccos/capability'), true).set(kw('id'), id).set(kw('manifest'), manifest).set(kw('fn'), impl);
    },
    'Builds the description of a capability defined with (capability ...).',
  ),
  defineBuiltin('rtfs.core/check-type', 4, 4, ([v, t, what, elements]) => checkType(v, t, what, elements), 'Raises a type error when a value does not match an annotated type.'),
  defineBuiltin(
    'rtfs.core/match-error',
    1,
    1,
    ([v]) => new ErrorValue(`no match clause matches ${prStr(v).slice(0, 200)}`, EMPTY_MAP.set(kw('value'), v).set(kw('code'), kw('match')), kw('match')),
    'Builds the error `match` raises when no clause matches.',
  ),
  defineBuiltin(
    'rtfs.core/match-seq?',
    3,
    3,
    ([v, n, open]) => (v instanceof RList || List.isList(v)) && (open ? count(v) >= (n as number) : count(v) === n),
    'Is v a sequence of exactly n items (at least n when open)?',
  ),
  defineBuiltin(
    'rtfs.core/drop-vec',
    2,
    2,
    ([n, v]) => List((v instanceof RList ? v.toArray() : (v as List<Value>).toArray()).slice(n as number)),
    'The items of v after the first n, as a vector.',
  ),
  defineBuiltin(
    'rtfs.core/broad-truthy?',
    1,
    1,
    ([v]) => {
      if (v === null || v === false || v === 0 || v === '') return false;
      if (List.isList(v) || ISet.isSet(v)) return (v as List<Value>).size > 0;
      if (IMap.isMap(v)) return (v as RMap).size > 0;
      if (v instanceof RList) return v.count > 0;
      return true;
    },
    "The original's step-if falsiness: nil, false, 0, \"\" and empty collections are false.",
  ),
];
