import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readOne } from '../src/rtfs/reader.js';
import {
  formatTypeErrors,
  isValid,
  parseType,
  printType,
  typeToJsonSchema,
  validate,
  type TypeExpr,
} from '../src/rtfs/types.js';
import {
  Labeled,
  RFloat,
  RList,
  RRegex,
  RtfsError,
  Sym,
  kw,
  List,
  type Builtin,
  type Value,
} from '../src/rtfs/values.js';
import { prStr } from '../src/rtfs/printer.js';

const T = (src: string, aliases?: ReadonlyMap<string, TypeExpr>): TypeExpr => parseType(readOne(src), aliases);
const V = (src: string): Value => readOne(src) as Value;

const fnValue: Builtin = { kind: 'builtin', name: 'inc', minArity: 1, maxArity: 1, fn: () => null };

/** Asserts that `value` has type `type`, through both entry points. */
function ok(type: string | TypeExpr, v: Value): void {
  const t = typeof type === 'string' ? T(type) : type;
  assert.equal(isValid(t, v), true, `${printType(t)} should accept ${prStr(v)}`);
  assert.deepEqual(validate(t, v), [], `${printType(t)} should accept ${prStr(v)}`);
}

/** Asserts that `value` fails `type`, through both entry points; returns the formatted errors. */
function bad(type: string | TypeExpr, v: Value): string {
  const t = typeof type === 'string' ? T(type) : type;
  assert.equal(isValid(t, v), false, `${printType(t)} should reject ${prStr(v)}`);
  const errs = validate(t, v);
  assert.ok(errs.length > 0, `${printType(t)} should report an error for ${prStr(v)}`);
  return formatTypeErrors(errs);
}

function syntaxError(src: string, mentions?: string): void {
  assert.throws(
    () => T(src),
    (e: unknown) => {
      assert.ok(e instanceof RtfsError, `expected RtfsError, got ${String(e)}`);
      assert.equal(e.code, 'type-syntax');
      if (mentions !== undefined) assert.ok(e.message.includes(mentions), `message ${JSON.stringify(e.message)} should mention ${mentions}`);
      return true;
    },
    `${src} should be a type syntax error`,
  );
}

describe('primitive types', () => {
  it('int / integer accept ints (number and bigint), reject floats and strings', () => {
    for (const t of [':int', ':integer', 'int', 'Int', 'Integer']) {
      ok(t, 42);
      ok(t, -7);
      ok(t, 2n ** 60n);
      bad(t, new RFloat(1.0));
      bad(t, '1');
      bad(t, null);
    }
  });
  it('float accepts floats and ints, not the reverse', () => {
    ok(':float', new RFloat(1.5));
    ok(':float', 3);
    ok('Float', 2n ** 60n);
    bad(':float', '1.5');
    bad(':int', new RFloat(3));
  });
  it('number accepts ints and floats', () => {
    ok(':number', 1);
    ok(':number', new RFloat(-0.5));
    bad(':number', 'x');
    bad(':number', null);
  });
  it('string, bool, nil, keyword, symbol', () => {
    ok(':string', 'hi');
    ok('String', '');
    bad(':string', kw('hi'));
    for (const t of [':bool', ':boolean', 'Bool', 'Boolean']) {
      ok(t, true);
      ok(t, false);
      bad(t, null);
    }
    ok(':nil', null);
    ok('Nil', null);
    bad(':nil', false);
    ok(':keyword', kw('a'));
    bad(':keyword', 'a');
    ok(':symbol', new Sym('x'));
    bad(':symbol', kw('x'));
  });
  it('any accepts everything, never nothing', () => {
    for (const v of [null, 1, 'x', kw('k'), V('[1 2]'), V('{:a 1}')]) {
      ok(':any', v);
      ok('Any', v);
      bad(':never', v);
    }
  });
  it('collection and other primitives', () => {
    ok(':map', V('{:a 1}'));
    bad(':map', V('[1]'));
    ok(':vector', V('[1 "a"]'));
    bad(':vector', RList.from([1]));
    ok(':list', RList.from([1, 2]));
    bad(':list', V('[1 2]'));
    ok(':set', V('#{1 2}'));
    bad(':set', V('[1 2]'));
    ok(':fn', fnValue);
    ok(':function', fnValue);
    bad(':fn', V('[1]'));
    ok(':regex', new RRegex('a+'));
    bad(':regex', 'a+');
  });
  it('labeled values are unwrapped', () => {
    ok(':string', new Labeled('secret', new Set(['pii'])));
    bad(':int', new Labeled('secret', new Set(['pii'])));
    ok('[:vector :int]', List<Value>([1, new Labeled(2, new Set(['pii']))]));
  });
});

describe('optional types', () => {
  it('T? and :T? accept T or nil', () => {
    for (const t of [':int?', 'int?', 'Int?', '[:maybe :int]', '[:optional :int]']) {
      ok(t, 1);
      ok(t, null);
      bad(t, 'x');
    }
  });
  it('an optional type reports the inner error for a non-nil value', () => {
    assert.equal(bad('[:maybe [:vector :int]]', V('[1 "a"]')), '[1] expected :int, got "a"');
  });
  it('prints optionals', () => {
    assert.equal(printType(T(':int?')), ':int?');
    assert.equal(printType(T('[:maybe [:vector :int]]')), '[:maybe [:vector :int]]');
  });
});

describe('collection types', () => {
  it('vector, list and set element types', () => {
    ok('[:vector :int]', V('[]'));
    ok('[:vector :int]', V('[1 2 3]'));
    assert.equal(bad('[:vector :int]', V('[1 "two" 3 :four]')), '[1] expected :int, got "two"\n[3] expected :int, got :four');
    assert.equal(bad('[:vector :int]', V('{:a 1}')), 'expected [:vector :int], got {:a 1}');
    bad('[:vector :int]', RList.from([1]));
    ok('[:list :string]', RList.from(['a', 'b']));
    assert.equal(bad('[:list :string]', RList.from(['a', 1])), '[1] expected :string, got 1');
    ok('[:set :keyword]', V('#{:a :b}'));
    assert.equal(bad('[:set :keyword]', V('#{"a"}')), '["a"] expected :keyword, got "a"');
  });
  it('tuple checks length and positions', () => {
    ok('[:tuple :int :string]', V('[1 "a"]'));
    ok('[:tuple]', V('[]'));
    bad('[:tuple :int :string]', V('[1]'));
    bad('[:tuple :int :string]', V('[1 "a" 2]'));
    assert.equal(bad('[:tuple :int :string]', V('[1 2]')), '[1] expected :string, got 2');
    assert.equal(bad('[:tuple :int]', V('[1 2]')), 'expected [:tuple :int], got [1 2]');
  });
  it('map-of checks every key and value', () => {
    for (const t of ['[:map-of :keyword :int]', '[:dict :keyword :int]']) {
      ok(t, V('{:a 1 :b 2}'));
      ok(t, V('{}'));
      bad(t, V('[]'));
    }
    assert.equal(bad('[:map-of :keyword :int]', V('{:a "x"}')), '[:a] expected :int, got "x"');
    assert.equal(bad('[:map-of :keyword :int]', V('{"a" 1}')), '["a"] expected :keyword, got "a"');
    ok('[:map-of [:union :string :keyword] :any]', V('{"a" 1 :b 2}'));
  });
  it('array is a vector of T', () => {
    ok('[:array :int [3]]', V('[1 2 3]'));
    bad('[:array :int [3]]', V('[1 :x]'));
  });
});

describe('record types', () => {
  const user = '[:map [:name :string] [:age [:and :int [:>= 0]]] [:email {:optional true} :string] [:nick :string ?]]';
  it('accepts maps with required keys and optional keys absent', () => {
    ok(user, V('{:name "Ann" :age 3}'));
    ok(user, V('{:name "Ann" :age 3 :email "a@b.c" :nick "a" :extra 1}'));
  });
  it('accepts string keys for keyword fields', () => {
    ok(user, V('{"name" "Ann" "age" 3}'));
    assert.equal(bad(user, V('{"name" 1 "age" 3}')), '["name"] expected :string, got 1');
  });
  it('reports missing keys, wrong values and optional keys present with a wrong value', () => {
    assert.equal(bad(user, V('{:age 3}')), '[:name] missing required key (expected :string)');
    assert.equal(bad(user, V('{:name "A" :age -1}')), '[:age] expected [:>= 0], got -1');
    assert.equal(bad(user, V('{:name "A" :age 1 :email 5}')), '[:email] expected :string, got 5');
    assert.equal(bad(user, V('{:name "A" :age 1 :nick nil}')), '[:nick] expected :string, got nil');
    const errs = validate(T(user), V('{:age "x"}'));
    assert.equal(errs.length, 2);
    assert.deepEqual(errs[0].path, [kw('name')]);
    assert.equal(errs[0].got, null);
    assert.deepEqual(errs[1].path, [kw('age')]);
    assert.equal(errs[1].expected, ':int');
  });
  it('missing key nested in a map', () => {
    assert.equal(bad('[:map [:user [:map [:name :string]]]]', V('{:user {}}')), '[:user :name] missing required key (expected :string)');
  });
  it('rejects non-maps', () => {
    assert.equal(bad('[:map [:a :int]]', V('[1]')), 'expected [:map [:a :int]], got [1]');
  });
  it('brace form', () => {
    const t = '[:map {:a :int :b :string?}]';
    ok(t, V('{:a 1}'));
    ok(t, V('{:a 1 :b nil}'));
    ok(t, V('{:a 1 :b "x"}'));
    bad(t, V('{:b "x"}'));
    bad(t, V('{:a 1 :b 2}'));
    assert.equal(printType(T(t)), '[:map {:a :int :b :string?}]');
  });
  it('wildcard entry types the unlisted keys', () => {
    const t = '[:map [:id :int] [:* :string]]';
    ok(t, V('{:id 1 :x "a"}'));
    assert.equal(bad(t, V('{:id 1 :x 2}')), '[:x] expected :string, got 2');
  });
  it('empty record accepts any map', () => {
    ok('[:map]', V('{:a 1}'));
    bad('[:map]', V('[]'));
  });
});

describe('the path example', () => {
  it('reports the nested path through vectors and maps', () => {
    const t = T('[:map [:items [:vector [:map [:price :float]]]]]');
    const v = V('{:items [{:price 1.0} {:price 2.0} {:price 3.0} {:price "12"}]}');
    const errs = validate(t, v);
    assert.equal(errs.length, 1);
    assert.equal(formatTypeErrors(errs), '[:items 3 :price] expected :float, got "12"');
    assert.deepEqual(errs[0].path, [kw('items'), 3, kw('price')]);
    assert.equal(errs[0].expected, ':float');
    assert.equal(errs[0].got, '12');
    assert.equal(errs[0].message, '[:items 3 :price] expected :float, got "12"');
  });
  it('root errors print no path', () => {
    assert.equal(bad(':int', 'x'), 'expected :int, got "x"');
  });
  it('paths through tuples and map-of', () => {
    assert.equal(
      bad('[:map-of :string [:tuple :int [:vector :keyword]]]', V('{"k" [1 [:a "b"]]}')),
      '["k" 1 1] expected :keyword, got "b"',
    );
  });
  it('caps the number of errors at 50', () => {
    const v = List<Value>(Array.from({ length: 80 }, () => 'x'));
    const errs = validate(T('[:vector :int]'), v);
    assert.equal(errs.length, 50);
    assert.equal(formatTypeErrors(errs).split('\n').length, 50);
  });
});

describe('union, and, enum, val, fn', () => {
  it('union', () => {
    for (const t of ['[:union :int :string]', '[:or :int :string]']) {
      ok(t, 1);
      ok(t, 's');
      bad(t, kw('k'));
    }
    assert.equal(bad('[:union :int :string]', kw('k')), 'expected [:union :int :string], got :k');
  });
  it('and with refinements and with types', () => {
    ok('[:and :int [:> 0] [:< 10]]', 5);
    assert.equal(bad('[:and :int [:> 0] [:< 10]]', 0), 'expected [:> 0], got 0');
    assert.equal(bad('[:and :int [:> 0] [:< 10]]', 'x'), 'expected :int, got "x"');
    assert.equal(bad('[:and :int [:> 5] [:< 3]]', 4), 'expected [:> 5], got 4\nexpected [:< 3], got 4');
    ok('[:and :map [:map [:a :int]] [:map [:b :int]]]', V('{:a 1 :b 2}'));
    assert.equal(bad('[:and :map [:map [:a :int]] [:map [:b :int]]]', V('{:a 1}')), '[:b] missing required key (expected :int)');
  });
  it('enum', () => {
    ok('[:enum :a :b]', kw('a'));
    ok('[:enum "x" 1 nil]', null);
    assert.equal(bad('[:enum :a :b]', kw('c')), 'expected [:enum :a :b], got :c');
    bad('[:enum :a :b]', 'a');
    bad('[:enum 1]', new RFloat(1));
  });
  it('val and top-level =', () => {
    ok('[:val 3]', 3);
    ok('[:= "x"]', 'x');
    ok('[:val [1 2]]', V('[1 2]'));
    assert.equal(bad('[:val :on]', kw('off')), 'expected [:val :on], got :off');
    assert.equal(printType(T('[:= 1]')), '[:val 1]');
  });
  it('function types accept any function', () => {
    for (const t of ['[:fn [:int] :int]', '[:=> [:int :int] :string]', '[:fn]']) {
      ok(t, fnValue);
      bad(t, 1);
    }
    assert.equal(printType(T('[:=> [:int] :int]')), '[:=> [:int] :int]');
  });
});

describe('refinements', () => {
  const r = (pred: string, base = ':any'): string => `[:and ${base} ${pred}]`;
  it('numeric comparisons, across int and float', () => {
    ok(r('[:> 0]'), 1);
    bad(r('[:> 0]'), 0);
    ok(r('[:> 0]', ':float'), new RFloat(1.5));
    bad(r('[:> 0]', ':float'), new RFloat(-0.5));
    ok(r('[:>= 0.5]'), 1);
    ok(r('[:>= 1]'), new RFloat(1.0));
    bad(r('[:>= 1]'), new RFloat(0.99));
    ok(r('[:< 10]'), 9);
    bad(r('[:< 10]'), 10);
    ok(r('[:<= 10]'), 10);
    bad(r('[:<= 10]'), new RFloat(10.5));
    ok(r('[:> 0]'), 2n ** 62n);
    bad(r('[:< 0]'), 2n ** 62n);
    bad(r('[:> 0]'), 'x');
    bad(r('[:> 0]'), new RFloat(NaN));
  });
  it('= and != (numeric across int and float)', () => {
    ok(r('[:= 3]'), 3);
    ok(r('[:= 3]'), new RFloat(3));
    bad(r('[:= 3]'), 4);
    ok(r('[:= :a]'), kw('a'));
    ok(r('[:!= 0]'), 1);
    bad(r('[:!= 0]'), 0);
    bad(r('[:!= 0]'), new RFloat(0));
  });
  it('in-range is inclusive', () => {
    ok(r('[:in-range 1 5]'), 1);
    ok(r('[:in-range 1 5]'), 5);
    ok(r('[:in-range 1 5]'), new RFloat(2.5));
    bad(r('[:in-range 1 5]'), 0);
    bad(r('[:in-range 1 5]'), new RFloat(5.01));
    bad(r('[:in-range 1 5]'), 'x');
  });
  it('lengths count characters, not bytes', () => {
    ok(r('[:min-length 2]', ':string'), 'ab');
    bad(r('[:min-length 2]', ':string'), 'a');
    ok(r('[:max-length 2]', ':string'), 'éé');
    ok(r('[:max-length 2]', ':string'), '😀😀');
    bad(r('[:max-length 2]', ':string'), 'abc');
    ok(r('[:length 3]', ':string'), 'héé');
    bad(r('[:length 3]', ':string'), 'ab');
    bad(r('[:length 1]'), V('[1]'));
  });
  it('matches-regex is an unanchored search', () => {
    ok(r('[:matches-regex "b+"]', ':string'), 'abbc');
    bad(r('[:matches-regex "^b+$"]', ':string'), 'abbc');
    bad(r('[:matches-regex "b"]'), 1);
  });
  it('counts on collections', () => {
    ok(r('[:min-count 2]'), V('[1 2]'));
    bad(r('[:min-count 2]'), V('[1]'));
    ok(r('[:max-count 1]'), V('{:a 1}'));
    bad(r('[:max-count 1]'), V('#{1 2}'));
    ok(r('[:count 2]'), RList.from([1, 2]));
    bad(r('[:count 2]'), V('[1 2 3]'));
    bad(r('[:count 1]'), 5);
    ok(r('[:non-empty]'), V('[0]'));
    ok(r('[:non-empty]'), 'x');
    bad(r('[:non-empty]'), V('[]'));
    bad(r('[:non-empty]'), V('{}'));
    bad(r('[:non-empty]'), 1);
  });
  it('keys of maps', () => {
    ok(r('[:has-key :a]'), V('{:a nil}'));
    ok(r('[:has-key :a]'), V('{"a" 1}'));
    bad(r('[:has-key :a]'), V('{:b 1}'));
    bad(r('[:has-key :a]'), V('[:a]'));
    ok(r('[:required-keys [:a :b]]'), V('{:a 1 :b 2 :c 3}'));
    assert.equal(bad(r('[:required-keys [:a :b]]', ':map'), V('{:a 1}')), 'expected [:required-keys [:a :b]], got {:a 1}');
  });
  it('is-url and is-email', () => {
    ok(r('[:is-url]', ':string'), 'https://example.com/a?b=1');
    bad(r('[:is-url]', ':string'), 'example.com');
    bad(r('[:is-url]', ':string'), 'https://exa mple.com');
    ok(r('[:is-email]', ':string'), 'ann@example.org');
    bad(r('[:is-email]', ':string'), 'ann@example');
    bad(r('[:is-email]', ':string'), 'ann example.org');
    bad(r('[:is-email]'), 5);
  });
  it('a refinement on its own is a type', () => {
    ok('[:> 0]', 1);
    bad('[:> 0]', -1);
  });
});

describe('aliases', () => {
  it('resolves names through the alias table', () => {
    const aliases = new Map<string, TypeExpr>([['Email', T('[:and :string [:is-email]]')], ['pos', T('[:and :int [:> 0]]')]]);
    const t = T('[:map [:to Email] [:n :pos] [:cc Email?]]', aliases);
    ok(t, V('{:to "a@b.co" :n 1 :cc nil}'));
    ok(t, V('{:to "a@b.co" :n 1 :cc "c@d.ef"}'));
    assert.equal(bad(t, V('{:to "a@b.co" :n 1}')), '[:cc] missing required key (expected Email?)');
    assert.equal(bad(t, V('{:to "a@b.co" :n 0 :cc nil}')), '[:n] expected [:> 0], got 0');
    assert.equal(bad(t, V('{:to "nope" :n 1 :cc nil}')), '[:to] expected [:is-email], got "nope"');
    assert.equal(printType(t), '[:map [:to Email] [:n :pos] [:cc Email?]]');
  });
});

describe('malformed types', () => {
  it('throws type-syntax errors naming the sub-form', () => {
    syntaxError('[:vector]', '[:vector]');
    syntaxError('[:vector :int :int]');
    syntaxError('[:map :x]', ':x');
    syntaxError('[:map [:a]]', '[:a]');
    syntaxError('[:map [1 :int]]', '1');
    syntaxError('[:map [:a :int] [:a :string]]', 'duplicate');
    syntaxError('[:and :int [:foo 1]]', '[:foo 1]');
    syntaxError('[:and]');
    syntaxError('[:union]');
    syntaxError('[:enum]');
    syntaxError('[:val]');
    syntaxError('[:map-of :int]');
    syntaxError(':widget', ':widget');
    syntaxError('Widget', 'Widget');
    syntaxError('[:frob :int]', ':frob');
    syntaxError('[]');
    syntaxError('[1 2]');
    syntaxError('42');
    syntaxError('"int"');
    syntaxError('[:vector [:tuple :int :nope]]', ':nope');
    syntaxError('[:and :int [:> "x"]]', '[:> "x"]');
    syntaxError('[:and :int [:> 1 2]]');
    syntaxError('[:and :string [:min-length -1]]');
    syntaxError('[:and :string [:matches-regex "("]]');
    syntaxError('[:and :map [:required-keys :a]]');
    syntaxError('[:and :int [:in-range 1]]');
    syntaxError('[:and :string [:is-url 1]]');
  });
});

describe('printType', () => {
  it('round-trips through the reader', () => {
    for (const src of [
      ':int',
      ':integer',
      '[:vector [:map [:a :int] [:b {:optional true} :string]]]',
      '[:tuple :int :string]',
      '[:map-of :keyword [:set :int]]',
      '[:union :int [:enum :a :b]]',
      '[:and :float [:in-range 0 1.5]]',
      '[:and :string [:matches-regex "^a.*"] [:min-length 2]]',
      '[:list :any]',
      '[:val "x"]',
    ]) {
      const t = T(src);
      assert.equal(printType(t), src);
      assert.deepEqual(T(printType(t)), t);
    }
  });
});

describe('JSON Schema', () => {
  it('renders records, refinements and optionals', () => {
    const t = T(
      '[:map [:name [:and :string [:min-length 1] [:max-length 10]]] [:age [:and :int [:>= 0] [:< 150]]] [:tags [:vector :keyword]] [:kind [:enum :a :b]] [:note :string?] [:score {:optional true} :float]]',
    );
    assert.deepEqual(typeToJsonSchema(t), {
      type: 'object',
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 10 },
        age: { type: 'integer', minimum: 0, exclusiveMaximum: 150 },
        tags: { type: 'array', items: { type: 'string' } },
        kind: { enum: ['a', 'b'] },
        note: { anyOf: [{ type: 'string' }, { type: 'null' }] },
        score: { type: 'number' },
      },
      required: ['name', 'age', 'tags', 'kind', 'note'],
    });
  });
  it('renders unions, tuples, map-of, sets and counts', () => {
    assert.deepEqual(typeToJsonSchema(T('[:union :int :string]')), { anyOf: [{ type: 'integer' }, { type: 'string' }] });
    assert.deepEqual(typeToJsonSchema(T('[:tuple :int :bool]')), {
      type: 'array',
      prefixItems: [{ type: 'integer' }, { type: 'boolean' }],
      items: false,
      minItems: 2,
      maxItems: 2,
    });
    assert.deepEqual(typeToJsonSchema(T('[:map-of :string :number]')), { type: 'object', additionalProperties: { type: 'number' } });
    assert.deepEqual(typeToJsonSchema(T('[:and [:set :int] [:non-empty]]')), {
      type: 'array',
      items: { type: 'integer' },
      uniqueItems: true,
      minItems: 1,
    });
    assert.deepEqual(typeToJsonSchema(T('[:and :string [:matches-regex "^[a-z]+$"] [:is-email]]')), {
      type: 'string',
      pattern: '^[a-z]+$',
      format: 'email',
    });
    assert.deepEqual(typeToJsonSchema(T('[:val :x]')), { const: 'x' });
    assert.deepEqual(typeToJsonSchema(T(':any')), {});
  });
});

describe('properties', () => {
  it('[:and :int [:>= lo]] accepts exactly the ints >= lo', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), (x, lo) => {
        const t = T(`[:and :int [:>= ${lo}]]`);
        const expected = x >= lo;
        assert.equal(isValid(t, x), expected);
        assert.equal(validate(t, x).length === 0, expected);
      }),
    );
  });
  it('isValid agrees with validate on random vectors of mixed values', () => {
    const t = T('[:vector [:union :int [:and :string [:max-length 3]]]]');
    const elem = fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant(null));
    fc.assert(
      fc.property(fc.array(elem, { maxLength: 8 }), (xs) => {
        const v = List<Value>(xs);
        const errs = validate(t, v);
        assert.equal(isValid(t, v), errs.length === 0);
        const badCount = xs.filter((x) => !(typeof x === 'number' || (typeof x === 'string' && [...x].length <= 3))).length;
        assert.equal(errs.length, badCount);
      }),
    );
  });
});
