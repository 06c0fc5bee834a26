/**
 * Native miscellany: errors as values (`ex-info`, `ex-message`, `ex-data`, `getMessage`,
 * `Exception.`) and the original RTFS scaffolding names that are harmless (`process-data`).
 *
 * Deliberately NOT provided (names of the original or of Clojure):
 * - `read-file`, `deftype`: I/O and test scaffolding of the original;
 * - `println`, `print`, `prn`, `log`, `tool/log`: I/O (a plan logs through a capability call);
 * - `rand`, `rand-int`, `shuffle`, `current-time-millis`, `tool/time-ms`: randomness and clock;
 * - `apply`: implemented by the machine (it calls back into RTFS code);
 * - `and`, `or`: the original's eager functions; here they are short-circuiting macros;
 * - `call`, `context/get`, `context/set`: host boundary, not natives of the pure library;
 * - the 2-argument `(some? pred coll)` of the original: `some?` is Clojure's 1-argument form.
 * Must never: import `node:*`, read the clock, use randomness.
 */
import { EMPTY_MAP, ErrorValue, Keyword, isMap, kw, type Builtin, type RMap, type Value } from '../values.js';
import { strOf } from '../printer.js';
import { defineBuiltin, typeError } from './define.js';

/** Builds an error value; its `type` is the `:type` keyword of `data`, else `:error`. */
export function makeError(message: string, data: RMap): ErrorValue {
  const t = data.get(kw('type'));
  return new ErrorValue(message, data, t instanceof Keyword ? t : kw('error'));
}

function getMessage(name: string): Builtin {
  return defineBuiltin(
    name,
    1,
    1,
    (a): Value => {
      const v = a[0];
      if (v instanceof ErrorValue) return v.message;
      if (v === null) return null;
      return typeError(name, 'an error value', v, 0);
    },
    `(${name} e): the message of an error value (an original RTFS name of ex-message)`,
  );
}

export const miscBuiltins: Builtin[] = [
  defineBuiltin(
    'ex-info',
    2,
    3,
    (a) => {
      const msg = a[0];
      if (typeof msg !== 'string') return typeError('ex-info', 'a message string', msg, 0);
      const data = a[1] === null ? EMPTY_MAP : a[1];
      if (!isMap(data)) return typeError('ex-info', 'a map of data', a[1], 1);
      if (a.length > 2 && a[2] !== null && !(a[2] instanceof ErrorValue)) return typeError('ex-info', 'an error value as the cause', a[2], 2);
      return makeError(msg, data);
    },
    '(ex-info msg data [cause]): an error value with a message and a data map (its :type is the catch type)',
  ),
  defineBuiltin('ex-message', 1, 1, (a) => (a[0] instanceof ErrorValue ? a[0].message : null), '(ex-message e): the message of an error value, or nil for anything else'),
  defineBuiltin('ex-data', 1, 1, (a) => (a[0] instanceof ErrorValue ? a[0].data : null), '(ex-data e): the data map of an error value, or nil for anything else'),
  getMessage('getMessage'),
  getMessage('.getMessage'),
  defineBuiltin(
    'Exception.',
    1,
    2,
    (a) => {
      if (a.length > 1 && a[1] !== null && !(a[1] instanceof ErrorValue) && !isMap(a[1])) return typeError('Exception.', 'a cause error or a data map', a[1], 1);
      const data = a.length > 1 && isMap(a[1]) ? a[1] : EMPTY_MAP;
      return makeError(strOf(a[0]), data);
    },
    '(Exception. msg [data]): an error value with the message msg (the original RTFS constructor)',
  ),
  defineBuiltin('process-data', 1, 1, (a) => a[0], '(process-data x): x (identity; scaffolding name of the original RTFS)'),
  defineBuiltin('doall', 1, 2, (a) => a[a.length - 1], '(doall coll): coll (sequences are already eager)'),
  defineBuiltin('dorun', 1, 2, () => null, '(dorun coll): nil (sequences are already eager)'),
];
