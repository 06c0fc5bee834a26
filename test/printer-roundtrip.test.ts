// The printer's output reads back to an equal value for every data value, and printing is
// deterministic (the same value built in a different order of insertion prints the same way
// whenever the two maps are equal and large enough to be hash-ordered).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IMap, ISet, Keyword, List, RFloat, RList, Sym, prStr, readOne, valueEquals, type Value } from '../src/rtfs/index.js';

const keyword = fc.stringMatching(/^[a-z][a-z0-9.\-:/]{0,10}[a-z0-9]$/).filter((s) => !s.includes('//') && !s.endsWith('/')).map((s) => Keyword.of(s) as Value);
const symbol = fc.stringMatching(/^[a-z*+!?<>=_][a-z0-9*+!?<>=_\-.]{0,8}$/).filter((s) => !['nil', 'true', 'false'].includes(s) && !/^[+-][0-9]/.test(s)).map((s) => new Sym(s) as Value);
const scalar: fc.Arbitrary<Value> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((b) => (b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b)),
  fc.double().map((d) => new RFloat(d) as Value),
  fc.string({ unit: 'binary' }),
  keyword,
  symbol,
);

const { value } = fc.letrec<{ value: Value }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('value'), { maxLength: 5 }).map((xs) => List(xs) as Value),
    fc.array(tie('value'), { maxLength: 5 }).map((xs) => RList.from(xs) as Value),
    fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 5 }).map((kvs) => IMap<Value, Value>(kvs) as Value),
    fc.array(tie('value'), { maxLength: 5 }).map((xs) => ISet<Value>(xs) as Value),
  ),
}));

test('print then read gives an equal value (fast-check)', () => {
  fc.assert(
    fc.property(value, (v) => {
      const text = prStr(v);
      const back = readOne(text) as Value;
      // NaN is not equal to itself under `=`; compare the printed forms instead.
      assert.ok(valueEquals(back, v) || prStr(back) === text, `${text} read back as ${prStr(back)}`);
    }),
    { numRuns: 500 },
  );
});

test('equal maps print identically however they were built (beyond the small-map size)', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer(), { minLength: 9, maxLength: 40 }), (keys) => {
      const a = keys.reduce((m, k) => m.set(k, k), IMap<Value, Value>());
      const b = [...keys].reverse().reduce((m, k) => m.set(k, k), IMap<Value, Value>());
      assert.equal(prStr(a), prStr(b));
    }),
  );
});
