/**
 * Tests of the native standard library (called directly, without the compiler) and of the prelude
 * source. Expected values are Clojure's answers (with RTFS's eager vectors), written by hand.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NATIVES, NATIVES_BY_NAME } from '../src/rtfs/stdlib/natives.js';
import { PRELUDE_NAMES, PRELUDE_SOURCE } from '../src/rtfs/stdlib/prelude.js';
import { compareValues } from '../src/rtfs/stdlib/collections.js';
import { readAll, readOne } from '../src/rtfs/reader.js';
import { prStr } from '../src/rtfs/printer.js';
import { ErrorValue, RFloat, RList, RRegex, RtfsError, Sym, kw, valueEquals, type Value } from '../src/rtfs/values.js';

/** Reads a literal RTFS value. */
const v = (src: string): Value => readOne(src) as Value;

function call(name: string, ...args: Value[]): Value {
  const b = NATIVES_BY_NAME.get(name);
  assert.ok(b, `no native named ${name}`);
  assert.ok(args.length >= b.minArity && args.length <= b.maxArity, `${name}: bad arity ${args.length} in the test`);
  return b.fn(args);
}

/** `(name args...)` printed, with args written as RTFS source. */
function ev(name: string, ...srcArgs: string[]): string {
  return prStr(call(name, ...srcArgs.map(v)));
}

function throwsCode(f: () => unknown, code: string, re?: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof RtfsError, `expected an RtfsError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (re) assert.match(e.message, re);
    return true;
  });
}

const errs = (name: string, code: string, ...srcArgs: string[]): void => throwsCode(() => call(name, ...srcArgs.map(v)), code);

describe('registry', () => {
  it('has unique names and a doc for every native', () => {
    const names = NATIVES.map((b) => b.name);
    assert.equal(new Set(names).size, names.length);
    for (const b of NATIVES) assert.ok(b.doc && b.doc.length > 5 && !b.doc.includes('\n'), `doc of ${b.name}`);
  });

  it('provides the Clojure core names plans use', () => {
    const wanted =
      '+ - * / quot rem mod inc dec abs max min == = not= < > <= >= compare zero? pos? neg? even? odd? number? integer? int? float? double? string? keyword? symbol? map? vector? list? set? seq? coll? sequential? associative? fn? nil? some? true? false? boolean? bool? empty? not-empty not identity int float double num parse-int parse-long parse-double parse-float str pr-str subs name keyword symbol count first second last rest next nth nthrest nthnext butlast take drop take-last drop-last reverse distinct concat cons conj into vec vector list hash-map hash-set set sorted? subvec range repeat partition partition-all interleave interpose flatten frequencies zipmap get get-in assoc assoc-in dissoc merge select-keys keys vals find contains? disj key val seq empty peek pop hash ex-info ex-message ex-data type-name type dedupe distinct? split-at error? re-pattern re-find re-matches re-seq parse-json to-json serialize-json serialize-json-pretty rtfs.core/sort-natural';
    for (const n of wanted.split(' ')) assert.ok(NATIVES_BY_NAME.has(n), `missing ${n}`);
    for (const n of 'union intersection difference'.split(' ')) assert.ok(NATIVES_BY_NAME.has(`clojure.set/${n}`), n);
    for (const n of 'join split split-lines trim triml trimr upper-case lower-case capitalize blank? starts-with? ends-with? includes? replace replace-first index-of last-index-of reverse'.split(' ')) {
      assert.ok(NATIVES_BY_NAME.has(`clojure.string/${n}`), `clojure.string/${n}`);
    }
  });

  it("provides the original RTFS names, but no I/O, clock or randomness", () => {
    for (const n of 'string-length substring string-contains string-upper string-lower string-trim split join string-join length numbers getMessage Exception. string-p process-data factorial pow sqrt starts-with? != tool/parse-json tool/serialize-json'.split(' ')) {
      assert.ok(NATIVES_BY_NAME.has(n), `missing ${n}`);
    }
    for (const n of ['read-file', 'deftype', 'println', 'print', 'prn', 'rand', 'shuffle', 'sort', 'apply', 'map', 'reduce']) {
      assert.ok(!NATIVES_BY_NAME.has(n), `${n} must not be a native`);
    }
  });
});

describe('numbers', () => {
  it('adds, subtracts and multiplies exactly, failing on 64-bit overflow', () => {
    assert.equal(ev('+'), '0');
    assert.equal(ev('+', '1', '2', '3'), '6');
    assert.equal(ev('+', '1', '2.5'), '3.5');
    assert.equal(ev('+', '9007199254740991', '1'), '9007199254740992');
    assert.equal(call('+', 9007199254740991, 2), 9007199254740993n);
    assert.equal(ev('+', '9223372036854775806', '1'), '9223372036854775807');
    errs('+', 'arithmetic', '9223372036854775807', '1');
    assert.equal(ev('-', '5'), '-5');
    assert.equal(ev('-', '10', '1', '2'), '7');
    errs('-', 'arithmetic', '-9223372036854775808', '1');
    errs('-', 'arithmetic', '-9223372036854775808');
    assert.equal(ev('*'), '1');
    assert.equal(ev('*', '4294967296', '1073741824'), '4611686018427387904');
    assert.equal(ev('*', '-4294967296', '2147483648'), '-9223372036854775808');
    errs('*', 'arithmetic', '4294967296', '2147483648');
    errs('*', 'arithmetic', '4294967296', '4294967296');
    assert.equal(ev('*', '3037000499', '3037000499'), '9223372030926249001');
    errs('+', 'type', '1', '"a"');
  });

  it('divides to an integer when exact and to a float otherwise', () => {
    assert.equal(ev('/', '6', '3'), '2');
    assert.equal(ev('/', '5', '2'), '2.5');
    assert.equal(ev('/', '6.0', '3'), '2.0');
    assert.equal(ev('/', '4'), '0.25');
    assert.equal(ev('/', '100', '2', '5'), '10');
    throwsCode(() => call('/', 1, 0), 'arithmetic', /division by zero/);
    throwsCode(() => call('/', 1, new RFloat(0)), 'arithmetic', /division by zero/);
    throwsCode(() => call('/', new RFloat(1.5), 0), 'arithmetic', /division by zero/);
    errs('/', 'arithmetic', '-9223372036854775808', '-1');
  });

  it('has quot, rem and mod with Clojure signs', () => {
    assert.equal(ev('quot', '-7', '2'), '-3');
    assert.equal(ev('rem', '-7', '2'), '-1');
    assert.equal(ev('mod', '-7', '2'), '1');
    assert.equal(ev('mod', '7', '-2'), '-1');
    assert.equal(ev('mod', '6', '3'), '0');
    assert.equal(ev('mod', '-7.5', '2'), '0.5');
    errs('mod', 'arithmetic', '1', '0');
    errs('quot', 'arithmetic', '1', '0');
  });

  it('compares numerically and type-strictly', () => {
    assert.equal(call('=', 1, new RFloat(1)), false);
    assert.equal(call('==', 1, new RFloat(1)), true);
    assert.equal(ev('=', '[1 2]', '(1 2)'), 'true');
    assert.equal(ev('=', '{:a [1]}', '{:a [1]}', '{:a [1]}'), 'true');
    assert.equal(ev('not=', '1', '2'), 'true');
    assert.equal(ev('<', '1', '2', '3'), 'true');
    assert.equal(ev('<', '1', '3', '2'), 'false');
    assert.equal(ev('<=', '1', '1', '2'), 'true');
    assert.equal(ev('>', '3', '2.5', '1'), 'true');
    assert.equal(ev('>=', '1'), 'true');
    assert.equal(ev('<', '"a"', '"b"'), 'true');
    assert.equal(call('<', 9007199254740993n, new RFloat(9007199254740992)), false);
    assert.equal(call('>', 9007199254740993n, new RFloat(9007199254740992)), true);
    errs('<', 'type', '1', '"a"');
    errs('<', 'type', ':a', ':b');
  });

  it('has numeric predicates', () => {
    assert.equal(ev('zero?', '0.0'), 'true');
    assert.equal(ev('pos?', '-1'), 'false');
    assert.equal(ev('neg?', '-0.5'), 'true');
    assert.equal(ev('even?', '-4'), 'true');
    assert.equal(ev('odd?', '-3'), 'true');
    assert.equal(call('odd?', 9007199254740993n), true);
    errs('even?', 'type', '2.0');
  });

  it('has inc, dec, abs, max, min', () => {
    assert.equal(ev('inc', '1'), '2');
    assert.equal(ev('inc', '1.5'), '2.5');
    errs('inc', 'arithmetic', '9223372036854775807');
    assert.equal(ev('dec', '0'), '-1');
    assert.equal(ev('abs', '-3'), '3');
    assert.equal(ev('abs', '-3.5'), '3.5');
    errs('abs', 'arithmetic', '-9223372036854775808');
    assert.equal(ev('max', '1', '5', '3'), '5');
    assert.equal(ev('max', '1', '2.5', '2'), '2.5');
    assert.equal(ev('min', '4', '-1', '3'), '-1');
  });

  it('converts and parses', () => {
    assert.equal(ev('int', '3.9'), '3');
    assert.equal(ev('int', '-3.9'), '-3');
    assert.equal(ev('int', '"42"'), '42');
    assert.equal(ev('float', '2'), '2.0');
    assert.equal(ev('double', '"2.5"'), '2.5');
    assert.equal(ev('num', '7'), '7');
    errs('num', 'type', '"7"');
    assert.equal(ev('parse-int', '" 42 "'), '42');
    assert.equal(ev('parse-long', '"-9223372036854775808"'), '-9223372036854775808');
    assert.equal(ev('parse-long', '"9223372036854775808"'), 'nil');
    assert.equal(ev('parse-int', '"4x"'), 'nil');
    assert.equal(ev('parse-int', '"1.5"'), 'nil');
    assert.equal(ev('parse-double', '"1e3"'), '1000.0');
    assert.equal(ev('parse-double', '"-.5"'), '-0.5');
    assert.equal(ev('parse-float', '"abc"'), 'nil');
    assert.equal(ev('parse-float', '"3"'), '3.0');
    assert.equal(ev('parse-int', '3.7'), '3');
    assert.equal(ev('parse-float', '3'), '3.0');
    errs('parse-long', 'type', '42');
    errs('parse-int', 'type', 'nil');
  });

  it('has pow, sqrt and factorial', () => {
    assert.equal(ev('pow', '2', '10'), '1024');
    assert.equal(ev('pow', '2', '62'), '4611686018427387904');
    errs('pow', 'arithmetic', '2', '63');
    assert.equal(ev('pow', '-1', '1001'), '-1');
    assert.equal(ev('pow', '2', '-2'), '0.25');
    assert.equal(ev('pow', '2.0', '3'), '8.0');
    assert.equal(ev('sqrt', '16'), '4.0');
    errs('sqrt', 'arithmetic', '-1');
    assert.equal(ev('factorial', '0'), '1');
    assert.equal(ev('factorial', '20'), '2432902008176640000');
    errs('factorial', 'arithmetic', '21');
    errs('factorial', 'value', '-1');
  });
});

describe('predicates', () => {
  it('classifies values', () => {
    const cases: [string, string, boolean][] = [
      ['nil?', 'nil', true],
      ['some?', 'false', true],
      ['some?', 'nil', false],
      ['true?', '1', false],
      ['boolean?', 'false', true],
      ['number?', '1.5', true],
      ['integer?', '1.0', false],
      ['int?', '1', true],
      ['float?', '1.0', true],
      ['string?', ':a', false],
      ['keyword?', ':a', true],
      ['map?', '{}', true],
      ['vector?', '(1)', false],
      ['list?', '(1)', true],
      ['set?', '#{}', true],
      ['seq?', '[1]', false],
      ['coll?', '"abc"', false],
      ['coll?', '#{1}', true],
      ['sequential?', '(1)', true],
      ['associative?', '[1]', true],
      ['associative?', '#{1}', false],
      ['fn?', ':a', false],
      ['empty?', 'nil', true],
      ['empty?', '""', true],
      ['empty?', '(1)', false],
      ['not', 'nil', true],
      ['not', '0', false],
    ];
    for (const [f, x, want] of cases) assert.equal(call(f, v(x)), want, `(${f} ${x})`);
    assert.equal(call('fn?', NATIVES_BY_NAME.get('inc')!), true);
    assert.equal(call('symbol?', new Sym('x')), true);
  });

  it('names types', () => {
    assert.equal(ev('type', '1'), ':integer');
    assert.equal(ev('type', '1.0'), ':float');
    assert.equal(ev('type', '{}'), ':map');
    assert.equal(ev('type-name', '"s"'), '"string"');
    assert.equal(ev('type-name', 'nil'), '"nil"');
  });
});

describe('strings', () => {
  it('str and pr-str', () => {
    assert.equal(ev('str'), '""');
    assert.equal(ev('str', 'nil'), '""');
    assert.equal(ev('str', '"a"', '1', ':k', 'nil', '1.0', '[1 "b"]'), '"a1:k1.0[1 \\"b\\"]"');
    assert.equal(ev('pr-str', '"a"', 'nil', '[1]'), '"\\"a\\" nil [1]"');
  });

  it('subs, name, keyword, symbol', () => {
    assert.equal(ev('subs', '"hello"', '1', '3'), '"el"');
    assert.equal(ev('subs', '"hello"', '2'), '"llo"');
    assert.equal(call('subs', 'a😀b', 1, 2), '😀');
    errs('subs', 'index', '"abc"', '2', '5');
    errs('subs', 'index', '"abc"', '-1');
    assert.equal(ev('substring', '"hello"', '0', '1'), '"h"');
    assert.equal(ev('name', ':foo'), '"foo"');
    assert.equal(ev('name', ':a.b/c'), '"c"');
    assert.equal(ev('namespace', ':a.b/c'), '"a.b"');
    assert.equal(ev('namespace', ':c'), 'nil');
    assert.equal(ev('name', '"s"'), '"s"');
    assert.equal(call('keyword', 'abc'), kw('abc'));
    assert.equal(call('keyword', 'ns', 'abc'), kw('ns/abc'));
    assert.equal(call('keyword', kw('x')), kw('x'));
    assert.ok(valueEquals(call('symbol', 'x'), new Sym('x')));
  });

  it('original names', () => {
    assert.equal(ev('string-length', '"héllo"'), '5');
    assert.equal(ev('string-contains', '"hello"', '"ell"'), 'true');
    assert.equal(ev('string-upper', '"abc"'), '"ABC"');
    assert.equal(ev('string-lower', '"ABC"'), '"abc"');
    assert.equal(ev('string-trim', '"  a b  "'), '"a b"');
    assert.equal(ev('join', '", "', '["a" 1 :b]'), '"a, 1, :b"');
    assert.equal(ev('string-join', '"-"', '["x" "y"]'), '"x-y"');
    assert.equal(ev('split', '"a,b,,"', '","'), '["a" "b" "" ""]');
    assert.equal(ev('split', '"abc"', '""'), '["a" "b" "c"]');
    assert.equal(ev('split', 'nil', '","'), '[""]');
    assert.equal(ev('starts-with?', '"hello"', '"he"'), 'true');
  });

  it('clojure.string', () => {
    const S = 'clojure.string/';
    assert.equal(ev(S + 'join', '[1 2 3]'), '"123"');
    assert.equal(ev(S + 'join', '", "', '[1 nil "x"]'), '"1, , x"');
    assert.equal(ev(S + 'split', '"a,b,,c,,"', '#","'), '["a" "b" "" "c"]');
    assert.equal(ev(S + 'split', '"a1b22c"', '#"\\d+"'), '["a" "b" "c"]');
    assert.equal(ev(S + 'split', '"abc"', '#""'), '["a" "b" "c"]');
    assert.equal(ev(S + 'split', '"a.b.c"', '"."'), '["a" "b" "c"]');
    assert.equal(ev(S + 'split', '"a b c"', '#" "', '2'), '["a" "b c"]');
    assert.equal(ev(S + 'split', '""', '#","'), '[""]');
    assert.equal(ev(S + 'split', '","', '#","'), '[]');
    assert.equal(ev(S + 'split-lines', '"a\\nb\\r\\nc\\n"'), '["a" "b" "c"]');
    assert.equal(ev(S + 'trim', '" \\t x \\n"'), '"x"');
    assert.equal(ev(S + 'triml', '"  x "'), '"x "');
    assert.equal(ev(S + 'trimr', '"  x "'), '"  x"');
    assert.equal(ev(S + 'upper-case', '"abc"'), '"ABC"');
    assert.equal(ev(S + 'lower-case', '"ÀB"'), '"àb"');
    assert.equal(ev(S + 'capitalize', '"hELLO wORLD"'), '"Hello world"');
    assert.equal(ev(S + 'blank?', 'nil'), 'true');
    assert.equal(ev(S + 'blank?', '" \\n"'), 'true');
    assert.equal(ev(S + 'blank?', '" x"'), 'false');
    assert.equal(ev(S + 'starts-with?', '"abc"', '"ab"'), 'true');
    assert.equal(ev(S + 'ends-with?', '"abc"', '"bc"'), 'true');
    assert.equal(ev(S + 'includes?', '"abc"', '"d"'), 'false');
    assert.equal(ev(S + 'replace', '"a.b.c"', '"."', '"$1"'), '"a$1b$1c"');
    assert.equal(ev(S + 'replace', '"a1b22"', '#"(\\d+)"', '"<$1>"'), '"a<1>b<22>"');
    assert.equal(ev(S + 'replace-first', '"aaa"', '"a"', '"b"'), '"baa"');
    assert.equal(ev(S + 'replace-first', '"x1y2"', '#"\\d"', '"_"'), '"x_y2"');
    assert.equal(ev(S + 'index-of', '"abcabc"', '"c"'), '2');
    assert.equal(ev(S + 'index-of', '"abcabc"', '"c"', '3'), '5');
    assert.equal(ev(S + 'index-of', '"abc"', '"z"'), 'nil');
    assert.equal(ev(S + 'last-index-of', '"abcabc"', '"b"'), '4');
    assert.equal(call(S + 'index-of', '😀a', 'a'), 1);
    assert.equal(ev(S + 'reverse', '"abc"'), '"cba"');
    assert.equal(ev(S + 'escape', '"a<b"', '{"<" "&lt;"}'), '"a&lt;b"');
    errs(S + 'upper-case', 'type', 'nil');
  });

  it('format', () => {
    assert.equal(ev('format', '"%s has %d items, %.2f%%"', '"cart"', '3', '12.345'), '"cart has 3 items, 12.35%"');
    assert.equal(ev('format', '"[%5d|%-3s|%03d]"', '42', '"a"', '7'), '"[   42|a  |007]"');
    assert.equal(ev('format', '"%s|%s|%s"', 'nil', '[1 "a"]', ':k'), '"nil|[1 \\"a\\"]|:k"');
    errs('format', 'value', '"%s %s"', '1');
  });
});

describe('collections', () => {
  it('count, first, second, last, rest, next', () => {
    assert.equal(ev('count', 'nil'), '0');
    assert.equal(ev('count', '"héllo"'), '5');
    assert.equal(ev('count', '{:a 1 :b 2}'), '2');
    assert.equal(ev('count', '(1 2 3)'), '3');
    errs('count', 'type', '5');
    assert.equal(ev('first', 'nil'), 'nil');
    assert.equal(ev('first', '[]'), 'nil');
    assert.equal(ev('first', '"abc"'), '"a"');
    assert.equal(ev('first', '{:a 1}'), '[:a 1]');
    assert.equal(ev('first', '#{7}'), '7');
    assert.equal(ev('second', '(1 2 3)'), '2');
    assert.equal(ev('second', '[1]'), 'nil');
    assert.equal(ev('last', '[1 2 3]'), '3');
    assert.equal(ev('last', '[]'), 'nil');
    assert.equal(ev('rest', '[1 2 3]'), '[2 3]');
    assert.equal(ev('rest', '(1 2 3)'), '(2 3)');
    assert.equal(ev('rest', 'nil'), '[]');
    assert.equal(ev('rest', '"abc"'), '["b" "c"]');
    assert.equal(ev('next', '[1]'), 'nil');
    assert.equal(ev('next', '[1 2]'), '[2]');
  });

  it('nth and friends', () => {
    assert.equal(ev('nth', '[1 2 3]', '1'), '2');
    assert.equal(ev('nth', '(1 2 3)', '2'), '3');
    assert.equal(ev('nth', '"abc"', '0'), '"a"');
    assert.equal(ev('nth', '[1]', '5', ':none'), ':none');
    assert.equal(ev('nth', 'nil', '0'), 'nil');
    throwsCode(() => call('nth', v('[1 2]'), 2), 'index', /nth.*2/);
    errs('nth', 'index', '[1 2]', '-1');
    errs('nth', 'type', '{:a 1}', '0');
    assert.equal(ev('nthrest', '[1 2 3]', '2'), '[3]');
    assert.equal(ev('nthnext', '[1 2 3]', '3'), 'nil');
    assert.equal(ev('butlast', '[1 2 3]'), '[1 2]');
    assert.equal(ev('butlast', '[1]'), 'nil');
  });

  it('take, drop and other slicing', () => {
    assert.equal(ev('take', '2', '[1 2 3]'), '[1 2]');
    assert.equal(ev('take', '5', '(1 2)'), '[1 2]');
    assert.equal(ev('take', '-1', '[1 2]'), '[]');
    assert.equal(ev('take', '2', 'nil'), '[]');
    assert.equal(ev('drop', '1', '"abc"'), '["b" "c"]');
    assert.equal(ev('drop', '5', '[1 2]'), '[]');
    assert.equal(ev('take-last', '2', '[1 2 3]'), '[2 3]');
    assert.equal(ev('drop-last', '[1 2 3]'), '[1 2]');
    assert.equal(ev('drop-last', '2', '[1 2 3]'), '[1]');
    assert.equal(ev('split-at', '2', '[1 2 3]'), '[[1 2] [3]]');
    assert.equal(ev('reverse', '(1 2 3)'), '[3 2 1]');
    assert.equal(ev('distinct', '[1 2 1 1.0 3 2]'), '[1 2 1.0 3]');
    assert.equal(ev('dedupe', '[1 1 2 2 1]'), '[1 2 1]');
    assert.equal(ev('distinct?', '1', '2', '3'), 'true');
    assert.equal(ev('distinct?', '1', '2', '1'), 'false');
    assert.equal(ev('subvec', '[1 2 3 4]', '1', '3'), '[2 3]');
    errs('subvec', 'index', '[1 2]', '1', '3');
  });

  it('cons, conj, into and constructors', () => {
    assert.ok(call('cons', 0, v('[1 2]')) instanceof RList);
    assert.equal(ev('cons', '0', '[1 2]'), '(0 1 2)');
    assert.equal(ev('cons', '0', 'nil'), '(0)');
    assert.equal(ev('conj', '[1]', '2', '3'), '[1 2 3]');
    assert.equal(ev('conj', '(1)', '2', '3'), '(3 2 1)');
    assert.equal(ev('conj', 'nil', '1'), '(1)');
    assert.equal(ev('conj', '#{1}', '1', '2'), prStr(v('#{1 2}')));
    assert.equal(ev('conj', '{:a 1}', '[:b 2]'), '{:a 1 :b 2}');
    assert.equal(ev('conj'), '[]');
    errs('conj', 'type', '{:a 1}', '[:b]');
    assert.equal(ev('into', '{}', '[[:a 1] [:b 2]]'), '{:a 1 :b 2}');
    assert.equal(ev('into', '[0]', '(1 2)'), '[0 1 2]');
    assert.equal(ev('into', '()', '[1 2]'), '(2 1)');
    assert.equal(ev('vec', '"ab"'), '["a" "b"]');
    assert.equal(ev('vec', 'nil'), '[]');
    assert.equal(ev('vector', '1', '2'), '[1 2]');
    assert.equal(ev('list', '1', '2'), '(1 2)');
    assert.equal(ev('hash-map', ':a', '1'), '{:a 1}');
    errs('hash-map', 'value', ':a');
    assert.equal(ev('count', prStr(call('hash-set', 1, 1, 2))), '2');
    assert.equal(ev('set', '[1 1]'), '#{1}');
    assert.equal(ev('sorted?', '[1]'), 'false');
    assert.equal(ev('concat', '[1]', 'nil', '(2)', '"ab"'), '[1 2 "a" "b"]');
    assert.equal(ev('concat'), '[]');
  });

  it('range, repeat, numbers', () => {
    assert.equal(ev('range', '4'), '[0 1 2 3]');
    assert.equal(ev('range', '2', '5'), '[2 3 4]');
    assert.equal(ev('range', '10', '0', '-3'), '[10 7 4 1]');
    assert.equal(ev('range', '0', '1', '0.25'), '[0 0.25 0.5 0.75]');
    assert.equal(ev('range', '5', '2'), '[]');
    assert.equal(ev('range', '0'), '[]');
    throwsCode(() => call('range', 100_000_000), 'value', /limit/);
    errs('range', 'value', '0', '10', '0');
    assert.equal(ev('numbers', '1', '3'), '[1 2 3]');
    assert.equal(ev('repeat', '3', ':x'), '[:x :x :x]');
    throwsCode(() => call('repeat', 1e12, 1), 'value', /limit/);
  });

  it('partition, interleave, interpose, flatten', () => {
    assert.equal(ev('partition', '2', '[1 2 3 4 5]'), '[[1 2] [3 4]]');
    assert.equal(ev('partition', '3', '1', '[1 2 3 4]'), '[[1 2 3] [2 3 4]]');
    assert.equal(ev('partition', '2', '3', '[1 2 3 4 5 6 7]'), '[[1 2] [4 5]]');
    assert.equal(ev('partition', '3', '3', '[:p :q]', '[1 2 3 4]'), '[[1 2 3] [4 :p :q]]');
    assert.equal(ev('partition-all', '2', '[1 2 3 4 5]'), '[[1 2] [3 4] [5]]');
    assert.equal(ev('partition-all', '2', '1', '[1 2 3]'), '[[1 2] [2 3] [3]]');
    errs('partition', 'value', '0', '[1]');
    assert.equal(ev('interleave', '[1 2 3]', '[:a :b]'), '[1 :a 2 :b]');
    assert.equal(ev('interpose', '0', '[1 2 3]'), '[1 0 2 0 3]');
    assert.equal(ev('flatten', '[1 [2 (3 [4])] {:a 1} #{5}]'), '[1 2 3 4 {:a 1} #{5}]');
    assert.equal(ev('flatten', 'nil'), '[]');
  });

  it('frequencies, zipmap', () => {
    const f = call('frequencies', 'abca');
    assert.ok(valueEquals(f, v('{"a" 2 "b" 1 "c" 1}')));
    assert.ok(valueEquals(call('zipmap', v('[:a :b :c]'), v('[1 2]')), v('{:a 1 :b 2}')));
  });

  it('get, get-in, assoc, assoc-in, dissoc', () => {
    assert.equal(ev('get', '{:a 1}', ':a'), '1');
    assert.equal(ev('get', '{:a nil}', ':a', '5'), 'nil');
    assert.equal(ev('get', '{:a 1}', ':b', '5'), '5');
    assert.equal(ev('get', '[1 2]', '1'), '2');
    assert.equal(ev('get', '[1 2]', '-1'), 'nil');
    assert.equal(ev('get', 'nil', ':a'), 'nil');
    assert.equal(ev('get', '#{:a}', ':a'), ':a');
    assert.equal(ev('get', '{[1 2] :v}', '[1 2]'), ':v');
    assert.equal(ev('get', '{1 :int}', '1.0'), 'nil');
    assert.equal(ev('get-in', '{:a [{:b 1}]}', '[:a 0 :b]'), '1');
    assert.equal(ev('get-in', '{:a 1}', '[:b :c]', ':none'), ':none');
    assert.equal(ev('get-in', '{:a nil}', '[:a]', ':none'), 'nil');
    assert.equal(ev('assoc', '{:a 1}', ':b', '2', ':a', '3'), '{:a 3 :b 2}');
    assert.equal(ev('assoc', '[1 2]', '2', '3'), '[1 2 3]');
    assert.equal(ev('assoc', '[1 2]', '0', '9'), '[9 2]');
    errs('assoc', 'index', '[1 2]', '3', '3');
    assert.equal(ev('assoc', 'nil', ':a', '1'), '{:a 1}');
    errs('assoc', 'type', '"s"', '0', '1');
    assert.equal(ev('assoc-in', '{}', '[:a :b]', '1'), '{:a {:b 1}}');
    assert.equal(ev('assoc-in', '{:a [1 2]}', '[:a 0]', '9'), '{:a [9 2]}');
    assert.equal(ev('dissoc', '{:a 1 :b 2}', ':a', ':c'), '{:b 2}');
    assert.equal(ev('dissoc', 'nil', ':a'), 'nil');
  });

  it('merge, select-keys, keys, vals, find, contains?, disj', () => {
    assert.equal(ev('merge', '{:a 1}', 'nil', '{:b 2 :a 3}'), '{:a 3 :b 2}');
    assert.equal(ev('merge'), 'nil');
    assert.equal(ev('merge', 'nil', 'nil'), 'nil');
    assert.equal(ev('select-keys', '{:a 1 :b 2 :c nil}', '[:a :c :d]'), '{:a 1 :c nil}');
    assert.equal(ev('keys', '{:a 1 :b 2}'), '[:a :b]');
    assert.equal(ev('vals', '{:a 1 :b 2}'), '[1 2]');
    assert.equal(ev('keys', '{}'), 'nil');
    assert.equal(ev('keys', 'nil'), 'nil');
    assert.equal(ev('find', '{:a 1}', ':a'), '[:a 1]');
    assert.equal(ev('find', '{:a 1}', ':b'), 'nil');
    assert.equal(ev('contains?', '{:a nil}', ':a'), 'true');
    assert.equal(ev('contains?', '[1 2]', '1'), 'true');
    assert.equal(ev('contains?', '[1 2]', '2'), 'false');
    assert.equal(ev('contains?', '#{:x}', ':x'), 'true');
    assert.equal(ev('contains?', 'nil', ':x'), 'false');
    errs('contains?', 'type', '(1 2)', '1');
    assert.equal(ev('disj', '#{1 2}', '1', '3'), '#{2}');
    assert.equal(ev('key', '[:a 1]'), ':a');
    assert.equal(ev('val', '[:a 1]'), '1');
  });

  it('seq, empty, not-empty, peek, pop', () => {
    assert.equal(ev('seq', '{}'), 'nil');
    assert.equal(ev('seq', '[]'), 'nil');
    assert.equal(ev('seq', '""'), 'nil');
    assert.equal(ev('seq', '"ab"'), '["a" "b"]');
    assert.equal(ev('seq', '{:a 1}'), '[[:a 1]]');
    assert.equal(ev('empty', '[1]'), '[]');
    assert.equal(ev('empty', '{:a 1}'), '{}');
    assert.equal(ev('empty', '(1)'), '()');
    assert.equal(ev('not-empty', '[]'), 'nil');
    assert.equal(ev('not-empty', '[1]'), '[1]');
    assert.equal(ev('peek', '[1 2]'), '2');
    assert.equal(ev('peek', '(1 2)'), '1');
    assert.equal(ev('pop', '[1 2]'), '[1]');
    assert.equal(ev('pop', '(1 2)'), '(2)');
    errs('pop', 'value', '[]');
  });

  it('sets', () => {
    assert.ok(valueEquals(call('clojure.set/union', v('#{1}'), v('#{2}'), null), v('#{1 2}')));
    assert.ok(valueEquals(call('clojure.set/intersection', v('#{1 2}'), v('#{2 3}')), v('#{2}')));
    assert.ok(valueEquals(call('clojure.set/difference', v('#{1 2 3}'), v('#{2}'), v('#{3}')), v('#{1}')));
    assert.equal(ev('clojure.set/union'), '#{}');
  });

  it('hash agrees with =', () => {
    assert.equal(call('hash', v('[1 2]')), call('hash', v('(1 2)')));
    assert.equal(call('hash', v('{:a 1 :b 2}')), call('hash', v('{:b 2 :a 1}')));
  });
});

describe('ordering', () => {
  it('compareValues is a total order across types', () => {
    const sorted = call('rtfs.core/sort-natural', v('[[1] :k "a" 3 nil 1.5 true false #{1} {:a 1} (0) sym]'));
    assert.equal(prStr(sorted), '[nil false true 1.5 3 "a" :k sym [1] (0) {:a 1} #{1}]');
    assert.equal(compareValues(1, new RFloat(1)), 0);
    assert.equal(compareValues(v('[1 2]'), v('[1 3]')), -1);
    assert.equal(compareValues(v('[9]'), v('[1 1]')), -1); // shorter first (Clojure)
    assert.equal(compareValues(v('"b"'), v('"a"')), 1);
    assert.equal(compareValues(new RFloat(NaN), 1e9), 1);
  });

  it('sorts stably; compare returns -1, 0 or 1', () => {
    assert.equal(ev('rtfs.core/sort-natural', '[3 1 2]'), '[1 2 3]');
    assert.equal(ev('rtfs.core/sort-natural', '"cab"'), '["a" "b" "c"]');
    assert.equal(ev('rtfs.core/sort-natural', 'nil'), '[]');
    assert.equal(ev('rtfs.core/sort-by-keys', '[2 1 2 1]', '[:a :b :c :d]'), '[:b :d :a :c]');
    assert.equal(ev('compare', '1', '2'), '-1');
    assert.equal(ev('compare', '"b"', '"a"'), '1');
    assert.equal(ev('compare', ':a', ':a'), '0');
  });
});

describe('regex', () => {
  it('re-find, re-matches, re-seq with Clojure results', () => {
    assert.equal(ev('re-find', '#"\\d+"', '"ab123c45"'), '"123"');
    assert.equal(ev('re-find', '#"(\\w)(\\d)"', '"a1 b2"'), '["a1" "a" "1"]');
    assert.equal(ev('re-find', '#"(x)?y"', '"y"'), '["y" nil]');
    assert.equal(ev('re-find', '#"z"', '"abc"'), 'nil');
    assert.equal(ev('re-find', '"b+"', '"abbbc"'), '"bbb"');
    assert.equal(ev('re-matches', '#"\\d+"', '"123"'), '"123"');
    assert.equal(ev('re-matches', '#"\\d+"', '"123a"'), 'nil');
    assert.equal(ev('re-matches', '#"a|ab"', '"ab"'), '"ab"');
    assert.equal(ev('re-matches', '#"(\\d+)-(\\d+)"', '"1-22"'), '["1-22" "1" "22"]');
    assert.equal(ev('re-seq', '#"\\d"', '"a1b2c3"'), '["1" "2" "3"]');
    assert.equal(ev('re-seq', '#"x*"', '"ab"'), '["" "" ""]');
    assert.equal(ev('re-seq', '#"x"', '"abc"'), 'nil');
    assert.ok(call('re-pattern', 'a+') instanceof RRegex);
    errs('re-pattern', 'value', '"("');
    errs('re-find', 'type', '1', '"a"');
  });
});

describe('json', () => {
  it('parses JSON to RTFS values', () => {
    const m = call('parse-json', '{"a": [1, 2.5, null, true, -0.5e1], "b": {"c": "x\\ny\\u00e9"}, "big": 9223372036854775807}');
    assert.ok(valueEquals(m, v('{"a" [1 2.5 nil true -5.0] "b" {"c" "x\\nyé"} "big" 9223372036854775807}')));
    assert.equal(prStr(call('parse-json', ' [] ')), '[]');
    assert.equal(prStr(call('parse-json', '1.0')), '1.0');
    throwsCode(() => call('parse-json', '{"a": 1,}'), 'value', /invalid JSON/);
    throwsCode(() => call('parse-json', '[1] x'), 'value', /invalid JSON/);
    throwsCode(() => call('parse-json', '18446744073709551616'), 'value', /64-bit/);
    throwsCode(() => call('parse-json', '['.repeat(5000)), 'value', /nesting/);
  });

  it('serializes RTFS values to JSON', () => {
    assert.equal(call('to-json', v('{:a [1 2.5 nil true :kw] "b" #{1} 3 (x)}')), '{"a":[1,2.5,null,true,"kw"],"b":[1],"3":["x"]}');
    assert.equal(call('serialize-json', v('"q\\"uote"')), '"q\\"uote"');
    assert.equal(call('serialize-json', v('1.0')), '1.0');
    assert.equal(call('serialize-json', 9223372036854775807n), '9223372036854775807');
    assert.equal(call('serialize-json-pretty', v('{:a [1 2] :b {}}')), '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {}\n}');
    throwsCode(() => call('to-json', new RFloat(Infinity)), 'value');
    throwsCode(() => call('to-json', NATIVES_BY_NAME.get('inc')!), 'type');
    throwsCode(() => call('to-json', v('{1.5 1}')), 'type');
  });

  it('round-trips data', () => {
    const x = v('{"a" [1 2.5 nil true "s"] "b" {"c" -9223372036854775808}}');
    assert.ok(valueEquals(call('parse-json', call('to-json', x)), x));
    assert.ok(valueEquals(call('parse-json', call('serialize-json-pretty', x)), x));
  });
});

describe('errors as values', () => {
  it('ex-info, ex-message, ex-data, getMessage, Exception.', () => {
    const e = call('ex-info', 'boom', v('{:type :net/timeout :n 1}'));
    assert.ok(e instanceof ErrorValue);
    assert.equal(e.type, kw('net/timeout'));
    assert.equal(call('ex-message', e), 'boom');
    assert.ok(valueEquals(call('ex-data', e), v('{:type :net/timeout :n 1}')));
    assert.equal(call('getMessage', e), 'boom');
    assert.equal(call('.getMessage', e), 'boom');
    assert.equal(call('error?', e), true);
    const plain = call('ex-info', 'x', v('{}')) as ErrorValue;
    assert.equal(plain.type, kw('error'));
    assert.equal(call('ex-message', 5), null);
    assert.equal(call('ex-data', 'x'), null);
    const ex = call('Exception.', 'old style') as ErrorValue;
    assert.ok(ex instanceof ErrorValue);
    assert.equal(ex.message, 'old style');
    errs('ex-info', 'type', '"m"', '[1]');
    errs('ex-info', 'type', ':m', '{}');
  });

  it('identity helpers', () => {
    assert.equal(ev('process-data', '[1]'), '[1]');
    assert.equal(ev('identity', ':a'), ':a');
    assert.equal(ev('doall', '[1 2]'), '[1 2]');
  });
});

describe('error messages', () => {
  it('name the function and what was expected', () => {
    throwsCode(() => call('inc', 'x'), 'type', /^inc \(argument 1\): expected a number, got string "x"$/);
    throwsCode(() => call('first', 5), 'type', /^first .*expected a collection/);
    throwsCode(() => call('clojure.string/split', 5, ','), 'type', /^clojure.string\/split .*expected a string/);
  });
});

describe('prelude source', () => {
  const forms = readAll(PRELUDE_SOURCE, '<prelude>');
  const defined = forms.map((f) => {
    assert.ok(f instanceof RList, 'every prelude form is a list');
    const [head, name] = f.toArray();
    assert.ok(head instanceof Sym && head.name === 'defn', 'every prelude form is a defn');
    assert.ok(name instanceof Sym);
    return name.name;
  });

  it('reads, and defines exactly PRELUDE_NAMES', () => {
    assert.deepEqual(defined, PRELUDE_NAMES);
    assert.equal(new Set(defined).size, defined.length);
  });

  it('does not collide with native names', () => {
    for (const n of PRELUDE_NAMES) assert.ok(!NATIVES_BY_NAME.has(n), `${n} is both a native and a prelude function`);
  });

  it('only calls names that exist', () => {
    const known = new Set([...NATIVES_BY_NAME.keys(), ...PRELUDE_NAMES]);
    const allowed = new Set(['fn', 'let', 'loop', 'recur', 'if', 'do', 'def', 'quote', 'defn', 'when', 'cond', 'and', 'or', 'apply', '&']);
    const heads = new Set<string>();
    const walk = (x: unknown): void => {
      if (x instanceof RList) {
        const h = x.first();
        if (h instanceof Sym) heads.add(h.name);
        for (const y of x) walk(y);
      } else if (x !== null && typeof x === 'object' && Symbol.iterator in x && typeof x !== 'string') {
        for (const y of x as Iterable<unknown>) walk(y);
      }
    };
    forms.forEach(walk);
    // Locals called as functions in the prelude.
    const locals = new Set(['f', 'g', 'pred', 'proc', 'cmp', 'keyfn', 'k', 'p', 'q', 'before?', 'merge-runs', 'merge-pass']);
    for (const h of heads) {
      const bare = h.startsWith('rtfs.core/') && !known.has(h) ? h.slice('rtfs.core/'.length) : h;
      assert.ok(known.has(bare) || allowed.has(bare) || locals.has(bare), `prelude calls unknown ${h}`);
    }
  });
});
