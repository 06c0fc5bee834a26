// The fast path must be unobservable: every conformance case and a set of tricky programs give
// the same value (or the same error code and position) with and without it, and with JSON round
// trips at every suspension.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { evaluate, prStr, RtfsError, type EvaluateOptions } from '../src/rtfs/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const corpus = process.env.RTFS_CONFORMANCE ?? path.resolve(root, '../shared/conformance/peer-public.jsonl');

function outcome(src: string, opts: EvaluateOptions): string {
  try {
    return `value ${prStr(evaluate(src, { fuel: 5_000_000, ...opts }))}`;
  } catch (e) {
    if (e instanceof RtfsError) return `error ${e.code} ${e.pos ? `${e.pos.line}:${e.pos.col}` : ''} ${e.message}`;
    throw e;
  }
}

const TRICKY = [
  // errors raised deep inside pure code keep their exact position
  '(defn f [x] (if (= x 0) (/ 1 x) (f (dec x)))) (f 50)',
  '(defn g [v i] (nth v i)) (g [1 2] 5)',
  // try/catch around pure code that fails
  '(defn h [x] (/ 10 x)) (try (h 0) (catch :arithmetic e (str "caught " (ex-message e))))',
  // fuel running out inside fast code
  '(defn spin [n] (if (> n 0) (spin (dec n)) :done)) (spin 10000000)',
  // deep non-tail recursion beyond the JS stack
  '(defn depth [n] (if (= n 0) 0 (inc (depth (dec n))))) (depth 50000)',
  // higher-order functions with closures, apply, variadics, multi-arity
  '(defn add3 ([a] a) ([a b] (+ a b)) ([a b & more] (apply + a b more))) [(add3 1) (add3 1 2) (add3 1 2 3 4)]',
  '(let [fs (map (fn [k] (fn [x] (* k x))) [1 2 3])] (map (fn [f] (f 10)) fs))',
  '(reduce (fn [m [k v]] (assoc m k v)) {} (map vector (range 5) (range 5 10)))',
  '(letfn [(ev? [n] (if (= n 0) true (od? (dec n)))) (od? [n] (if (= n 0) false (ev? (dec n))))] [(ev? 100) (od? 7)])',
  '(defn bad [x] (+ x "a")) (bad 1)',
  '(defn typed [x : Int] : Int (str x)) (typed 1)',
  '(def counter 0) (defn redefine [] (def counter (inc counter)) counter) [(redefine) (redefine)]',
  '(throw (ex-info "boom" {:type :custom :n 1}))',
  '(match [1 [2 3]] [a [b c]] (+ a b c))',
  '(* 3037000500 3037000500)',
];

test('fast path and interpreter agree on tricky programs (values, error codes and positions)', () => {
  for (const src of TRICKY) {
    const fast = outcome(src, {});
    const slow = outcome(src, { jit: false });
    assert.equal(fast, slow, src);
  }
});

test('fast path and interpreter agree on every conformance case', { skip: !fs.existsSync(corpus) && `corpus not found at ${corpus}` }, () => {
  const cases = fs.readFileSync(corpus, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; source: string });
  for (const c of cases) assert.equal(outcome(c.source, {}), outcome(c.source, { jit: false }), c.id);
});

test('property: arithmetic and collection pipelines agree between fast path, interpreter and round trips', () => {
  const onCall = (_cap: string, args: unknown[]): never | number => args[0] as number;
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 30 }), fc.integer({ min: -5, max: 5 }), (xs, k) => {
      const src = `(let [xs [${xs.join(' ')}]]
         [(reduce + 0 (map (fn [x] (* x ${k})) xs))
          (frequencies (map (fn [x] (mod x 3)) xs))
          (sort-by - (filter even? xs))
          (loop [i 0 acc []] (if (< i (count xs)) (recur (inc i) (conj acc (call :id (nth xs i)))) acc))])`;
      const a = outcome(src, { onCall });
      assert.equal(a, outcome(src, { onCall, jit: false }));
      assert.equal(a, outcome(src, { onCall, roundtrip: true }));
    }),
    { numRuns: 60 },
  );
});
