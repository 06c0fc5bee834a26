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

/**
 * The keys of `o` in canonical order (UTF-16 code units, as `sort` compares). Sorted only when
 * they are not in order already: objects built with their keys in order, as the hot ones are,
 * skip a sort, which allocates even for a few keys.
 */
export function sortedKeys(o: object): string[] {
  const keys = Object.keys(o);
  for (let i = 1; i < keys.length; i++) if (keys[i - 1] > keys[i]) return keys.sort();
  return keys;
}

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
      // Plain loops and concatenation: every chain action is encoded here, so this is hot.
      if (Array.isArray(v)) {
        let out = '[';
        for (let i = 0; i < v.length; i++) out += (i > 0 ? ',' : '') + canonicalJson(v[i]);
        return out + ']';
      }
      const o = v as Record<string, unknown>;
      const keys = sortedKeys(o);
      let out = '{';
      for (const k of keys) {
        const x = o[k];
        if (x === undefined) continue;
        out += (out.length > 1 ? ',' : '') + JSON.stringify(k) + ':' + canonicalJson(x);
      }
      return out + '}';
    }
    default:
      throw new TypeError(`canonical JSON cannot encode a ${typeof v}`);
  }
}
