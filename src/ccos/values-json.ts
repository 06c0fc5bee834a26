/**
 * RTFS values ⇄ plain JSON, for providers, schemas and command-line input.
 *
 * Owns: the lossy, readable mapping (keywords become strings, maps become objects with string
 * keys; JSON objects come back as maps with keyword keys). Exact encodings for resume live in the
 * RTFS serializer; audit text uses the RTFS printer.
 * Must never: throw on an RTFS value (functions and errors map to descriptive strings).
 */
import type { Json } from '../common/canonical.js';
import { ErrorValue, IMap, ISet, Keyword, Labeled, List, RFloat, RList, Sym, kw, prStr, type RMap, type Value } from '../rtfs/index.js';

/** A readable JSON rendering of an RTFS value. */
export function valueToPlainJson(v: Value): Json {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof RFloat) return Number.isFinite(v.v) ? v.v : String(v.v);
  if (v instanceof Keyword) return v.name;
  if (v instanceof Sym) return v.name;
  if (v instanceof Labeled) return valueToPlainJson(v.value);
  if (List.isList(v) || v instanceof RList || ISet.isSet(v)) return [...(v as Iterable<Value>)].map(valueToPlainJson);
  if (IMap.isMap(v)) {
    const o: Record<string, Json> = {};
    (v as RMap).forEach((x, k) => {
      o[k instanceof Keyword ? k.name : typeof k === 'string' ? k : prStr(k)] = valueToPlainJson(x);
    });
    return o;
  }
  if (v instanceof ErrorValue) return { error: v.message, type: v.type.name };
  return prStr(v);
}

/** Plain JSON → RTFS: objects become maps with keyword keys, integral numbers integers. */
export function plainJsonToValue(j: unknown): Value {
  if (j === null || j === undefined) return null;
  if (typeof j === 'boolean' || typeof j === 'string') return j;
  if (typeof j === 'number') return Number.isInteger(j) && Number.isSafeInteger(j) ? j : new RFloat(j);
  if (Array.isArray(j)) return List(j.map(plainJsonToValue));
  if (typeof j === 'object') {
    let m: RMap = IMap<Value, Value>();
    for (const [k, x] of Object.entries(j as Record<string, unknown>)) m = m.set(kw(k), plainJsonToValue(x));
    return m;
  }
  return String(j);
}
