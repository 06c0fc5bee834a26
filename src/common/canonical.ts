/**
 * Canonical JSON: one byte sequence per JSON value (object keys sorted by UTF-16 code units,
 * no insignificant white space, numbers as ECMAScript prints them) — the RFC 8785 scheme for the
 * data we hash.
 *
 * Owns: the encoding that the causal chain hashes and signs.
 * Must never: accept values JSON cannot represent (undefined, functions, NaN): they throw.
 */

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Canonical text of a JSON value. */
export function canonicalJson(v: unknown): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`canonical JSON cannot encode ${v}`);
      return JSON.stringify(v);
    case 'string':
      return JSON.stringify(v);
    case 'object': {
      if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o)
        .filter((k) => o[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot encode a ${typeof v}`);
  }
}
