/**
 * Native predicates and type functions: `nil?`, `string?`, `=`, `not`, `type`, `type-name`, ...
 * Must never: import `node:*`, read the clock, use randomness.
 */
import {
  ErrorValue,
  Keyword,
  RFloat,
  RList,
  RRegex,
  Sym,
  isFn,
  isInt,
  isMap,
  isNumber,
  isSequential,
  isSet,
  isVector,
  kw,
  truthy,
  typeName,
  valueEquals,
  type Builtin,
  type Value,
} from '../values.js';
import { defineBuiltin } from './define.js';

function pred(name: string, test: (v: Value) => boolean, what: string): Builtin {
  return defineBuiltin(name, 1, 1, (a) => test(a[0]), `(${name} x): true if x is ${what}`);
}

function allEqual(a: Value[]): boolean {
  for (let i = 0; i + 1 < a.length; i++) if (!valueEquals(a[i], a[i + 1])) return false;
  return true;
}

const isString = (v: Value): boolean => typeof v === 'string';
const isBool = (v: Value): boolean => typeof v === 'boolean';
const isFloat = (v: Value): boolean => v instanceof RFloat;

export const predicatesBuiltins: Builtin[] = [
  defineBuiltin('=', 1, Infinity, allEqual, '(= x & more): true if all arguments are equal (type-strict: 1 is not 1.0; [1] equals (1))'),
  defineBuiltin('not=', 1, Infinity, (a) => !allEqual(a), '(not= x & more): (not (= x & more))'),
  defineBuiltin('!=', 1, Infinity, (a) => !allEqual(a), '(!= x & more): same as not= (the original RTFS name)'),
  defineBuiltin('identical?', 2, 2, (a) => a[0] === a[1], '(identical? x y): true if x and y are the same object'),
  defineBuiltin('not', 1, 1, (a) => !truthy(a[0]), '(not x): true if x is nil or false'),
  defineBuiltin('identity', 1, 1, (a) => a[0], '(identity x): x'),
  defineBuiltin('boolean', 1, 1, (a) => truthy(a[0]), '(boolean x): false for nil and false, true otherwise'),
  pred('nil?', (v) => v === null, 'nil'),
  pred('some?', (v) => v !== null, 'not nil'),
  pred('true?', (v) => v === true, 'the value true'),
  pred('false?', (v) => v === false, 'the value false'),
  pred('boolean?', isBool, 'a boolean'),
  pred('bool?', isBool, 'a boolean'),
  pred('number?', isNumber, 'a number (integer or float)'),
  pred('integer?', isInt, 'an integer'),
  pred('int?', isInt, 'an integer'),
  pred('float?', isFloat, 'a float'),
  pred('double?', isFloat, 'a float'),
  pred('string?', isString, 'a string'),
  pred('string-p', isString, 'a string (the original RTFS name of string?)'),
  pred('keyword?', (v) => v instanceof Keyword, 'a keyword'),
  pred('symbol?', (v) => v instanceof Sym, 'a symbol'),
  pred('map?', isMap, 'a map'),
  pred('vector?', isVector, 'a vector'),
  pred('list?', (v) => v instanceof RList, 'a list'),
  pred('set?', isSet, 'a set'),
  pred('seq?', (v) => v instanceof RList, 'a list (a sequence)'),
  pred('coll?', (v) => isSequential(v) || isMap(v) || isSet(v), 'a collection (vector, list, map or set)'),
  pred('sequential?', isSequential, 'a vector or a list'),
  pred('associative?', (v) => isMap(v) || isVector(v), 'a map or a vector'),
  pred('seqable?', (v) => v === null || typeof v === 'string' || isSequential(v) || isMap(v) || isSet(v), 'nil, a string or a collection'),
  pred('fn?', isFn, 'a function'),
  pred('regex?', (v) => v instanceof RRegex, 'a regex'),
  pred('error?', (v) => v instanceof ErrorValue, 'an error value'),
  defineBuiltin('type-name', 1, 1, (a) => typeName(a[0]), '(type-name x): the type of x as a string ("integer", "string", "vector", ...)'),
  defineBuiltin('type', 1, 1, (a) => kw(typeName(a[0])), '(type x): the type of x as a keyword (:integer, :string, :vector, ...)'),
];
