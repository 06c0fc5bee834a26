/**
 * Every native function of the RTFS standard library, in one list.
 *
 * Owns: the registry of natives (the prelude, written in RTFS, adds the higher-order functions).
 * Must never: hold two natives with the same name (checked when this module loads).
 */
import type { Builtin } from '../values.js';
import { collectionsBuiltins } from './collections.js';
import { jsonBuiltins } from './json.js';
import { miscBuiltins } from './misc.js';
import { numbersBuiltins } from './numbers.js';
import { predicatesBuiltins } from './predicates.js';
import { regexBuiltins } from './regex.js';
import { stringsBuiltins } from './strings.js';

export const NATIVES: Builtin[] = [
  ...numbersBuiltins,
  ...predicatesBuiltins,
  ...stringsBuiltins,
  ...collectionsBuiltins,
  ...regexBuiltins,
  ...jsonBuiltins,
  ...miscBuiltins,
];

/** The natives by name. */
export const NATIVES_BY_NAME: ReadonlyMap<string, Builtin> = (() => {
  const m = new Map<string, Builtin>();
  for (const b of NATIVES) {
    if (m.has(b.name)) throw new Error(`stdlib: the native ${b.name} is defined twice`);
    if (!b.doc) throw new Error(`stdlib: the native ${b.name} has no doc`);
    m.set(b.name, b);
  }
  return m;
})();
