/**
 * How native (TypeScript) functions of the RTFS standard library are declared.
 *
 * Owns: the `defineBuiltin` helper and the argument-checking helpers natives share.
 * Must never: call back into RTFS code (a native cannot suspend; functions that take RTFS
 * functions as arguments live in the RTFS prelude), import `node:*`, or do I/O.
 */
import { RtfsError, typeName, type Builtin, type Value } from '../values.js';
import { prStr } from '../printer.js';

/** Declares a native function. `max` = Infinity for variadic functions. */
export function defineBuiltin(name: string, min: number, max: number, fn: (args: Value[]) => Value, doc: string): Builtin {
  return { kind: 'builtin', name, minArity: min, maxArity: max, fn, doc };
}

/** Raises a type error naming the function, the argument position and what was expected. */
export function typeError(fnName: string, expected: string, got: Value, argIndex?: number): never {
  const where = argIndex === undefined ? '' : ` (argument ${argIndex + 1})`;
  let shown = prStr(got);
  if (shown.length > 60) shown = shown.slice(0, 57) + '...';
  throw new RtfsError('type', `${fnName}${where}: expected ${expected}, got ${typeName(got)} ${shown}`);
}
