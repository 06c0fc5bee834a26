// Data labels in the machine: label regions at pure calls (a pure call's result carries the labels
// of its labeled arguments), their aborts (host call, fuel, error), and per-value propagation
// where regions do not apply. Every case runs with the fast path on and off: they must agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  createRuntime,
  evaluate,
  restoreMachine,
  saveMachine,
  valueToJson,
  Labeled,
  RtfsError,
  type Closure,
  type EvaluateOptions,
  type Value,
} from '../src/rtfs/index.js';

const lab = (v: Value, ...labels: string[]): Labeled => new Labeled(v, new Set(labels));

/** A value with its labels (sorted), at every depth, as saved states encode it. */
const show = (v: Value): string => JSON.stringify(valueToJson(v), (k, x: unknown) => (k === 'l' && Array.isArray(x) ? [...(x as string[])].sort() : x));
/** `show` of a vector of values. */
const vec = (...xs: Value[]): string => show(evaluate('[]')).replace('[]', `[${xs.map(show).join(',')}]`);

const DEFS = `
(defn fib [n] (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
(defn sum-to [n] (loop [i 0 acc 0] (if (< i n) (recur (inc i) (+ acc i)) acc)))
(defn spin [n acc] (if (> n 0) (spin (dec n) (+ acc 1)) acc))
(defn build-str [n] (apply str (map str (range n))))
`;

/** Runs `name` of DEFS with labels active on `args`, adding `slice` fuel whenever it runs out. */
function runDef(name: string, args: Value[], opts: { jit: boolean; slice?: number; roundtrip?: boolean }): { value: Value; slices: number } {
  let rt = createRuntime();
  rt.runToCompletion(rt.load(DEFS, 'defs.rtfs').main);
  let m = rt.machine();
  m.jit = opts.jit;
  m.labelsActive = true;
  if (opts.slice) m.fuel = opts.slice;
  m.start(rt.findCell(name)!.value as Closure, args);
  let slices = 0;
  for (;;) {
    const out = m.run();
    if (out.status === 'complete') return { value: out.value, slices };
    assert.equal(out.status, 'out-of-fuel');
    slices++;
    if (opts.roundtrip) {
      ({ runtime: rt, machine: m } = restoreMachine(JSON.parse(JSON.stringify(saveMachine(rt, m)))));
      m.jit = opts.jit;
    }
    m.fuel = opts.slice!;
  }
}

for (const jit of [true, false]) {
  const mode = jit ? 'fast path' : 'interpreter';

  test(`${mode}: a pure call's result carries its labeled arguments' labels (fib, a labeled loop bound)`, () => {
    assert.equal(show(runDef('fib', [lab(15, 'pii')], { jit }).value), show(lab(610, 'pii')));
    // The bound decides how long the loop runs: the sum reveals it (an implicit flow).
    assert.equal(show(runDef('sum-to', [lab(100, 'pii')], { jit }).value), show(lab(4950, 'pii')));
    assert.equal(show(runDef('spin', [lab(10, 'pii'), lab(0, 'conf')], { jit }).value), show(lab(10, 'conf', 'pii')));
    // Unlabeled arguments: no labels.
    assert.equal(show(runDef('sum-to', [100], { jit }).value), '4950');
  });

  test(`${mode}: a pure call reached through call, apply and a higher-order function labels its result`, () => {
    const onCall = (): Value => lab(10, 'pii');
    const got = evaluate(`${DEFS} (let [n (call :n)] [(sum-to n) (apply sum-to [n]) (first (map sum-to [n])) (sum-to 3)])`, { onCall, jit });
    assert.equal(show(got), vec(lab(45, 'pii'), lab(45, 'pii'), lab(45, 'pii'), 3));
  });

  test(`${mode}: fuel running out inside a region, then resuming, gives the same value and labels as an uninterrupted run`, () => {
    for (const [name, args] of [
      ['sum-to', [lab(300, 'pii')]],
      ['fib', [lab(12, 'pii')]],
      ['spin', [lab(200, 'pii'), 0]],
      ['build-str', [lab(40, 'pii')]],
    ] as [string, Value[]][]) {
      const whole = runDef(name, args, { jit });
      assert.equal(whole.slices, 0);
      for (const slice of [1, 7, 100]) {
        const sliced = runDef(name, args, { jit, slice });
        assert.ok(sliced.slices > 0, `${name}: fuel ${slice} should run out`);
        assert.equal(show(sliced.value), show(whole.value), `${name} with fuel slices of ${slice}`);
      }
      const saved = runDef(name, args, { jit, slice: 7, roundtrip: true });
      assert.equal(show(saved.value), show(whole.value), `${name} with a saved state at every slice`);
    }
  });

  test(`${mode}: a host call inside a pure-looking function aborts its region: a declassifier's result stays unlabeled`, () => {
    const seen: string[] = [];
    const onCall = (cap: string, args: Value[]): Value => {
      if (cap === 'pii.get') return lab('alice@example.com', 'pii');
      seen.push(show(args[0]));
      return '*****'; // pii.redact: a declassifier, its result is unlabeled
    };
    const src = '(defn redact [s] (call :pii.redact s)) (defn tidy [s] (str "<" (redact s) ">")) (tidy (call :pii.get))';
    assert.equal(show(evaluate(src, { onCall, jit })), '"<*****>"');
    // The capability still saw the labeled value (what the gate decides on).
    assert.deepEqual(seen, [show(lab('alice@example.com', 'pii'))]);
  });

  test(`${mode}: an error leaving a region is the same error as without regions`, () => {
    const err = (src: string, n: Value): string => {
      try {
        evaluate(src, { onCall: () => n, jit });
      } catch (e) {
        assert.ok(e instanceof RtfsError);
        return `${e.code} ${e.pos?.line}:${e.pos?.col} ${e.message}`;
      }
      return 'no error';
    };
    for (const src of ['(defn f [x] (if (= x 0) (/ 1 x) (f (dec x))))\n(f (call :n))', '(defn g [x] (nth [1 2] (+ x 5)))\n(g (call :n))', '(defn bad [x] (throw (ex-info "boom" {:x x})))\n(bad (call :n))']) {
      const got = err(src, lab(3, 'pii'));
      assert.match(got, /^\S+ 1:\d+ /, src);
      assert.equal(got, err(src, 3), src);
    }
    const opts: EvaluateOptions = { onCall: () => lab(0, 'pii'), jit };
    // Caught outside the region: the error's data carries the labeled value, per value.
    const caught = evaluate('(defn bad [x] (throw (ex-info "boom" {:x x}))) (try (bad (call :n)) (catch :default e (ex-data e)))', opts);
    assert.equal(show(caught), `{"$":"m","e":[{"$":"k","n":"x"},${show(lab(0, 'pii'))}]}`);
    // Caught inside the region: the region completes and labels its result.
    const inside = evaluate('(defn inv [x] (try (/ 1 x) (catch :default e -1))) (defn safe [x] (+ 0 (inv x))) (safe (call :n))', opts);
    assert.equal(show(inside), show(lab(-1, 'pii')));
  });

  test(`${mode}: def inside a region aborts it: the global keeps its labels`, () => {
    const src = '(def kept nil) (defn store! [v] (def kept v)) (defn keep! [x] (store! (inc x)) x) [(keep! (call :n)) kept]';
    assert.equal(show(evaluate(src, { onCall: () => lab(1, 'pii'), jit })), vec(lab(1, 'pii'), lab(2, 'pii')));
  });

  test(`${mode}: collections keep per-value labels; labeled data met inside a region joins it`, () => {
    const onCall = (cap: string): Value => (cap === 'n' ? lab(5, 'conf') : lab('alice', 'pii'));
    // Unlabeled vector, labeled element: no region; labels stay on the element.
    const v = evaluate('(defn pair [x] [x (count x) "const"]) (let [e (call :e)] (pair e))', { onCall, jit });
    assert.equal(show(v), show(lab(evaluate('["alice" 5 "const"]'), 'pii')), 'labeled argument: the whole result');
    const w = evaluate('(defn firsts [v] [(first v) (second v)]) (firsts [(call :e) "bob"])', { onCall, jit });
    assert.equal(show(w), vec(lab('alice', 'pii'), 'bob'));
    // An element taken out of a collection and computed with keeps its labels.
    const y = evaluate('(defn greet [v] (str "hi " (first v))) (defn len [v] (+ (count (first v)) (second v))) [(greet [(call :e)]) (len [(call :e) 1])]', { onCall, jit });
    assert.equal(show(y), vec(lab('hi alice', 'pii'), lab(6, 'pii')));
    const z = evaluate('(defn join [v] (apply str v)) (defn wrap [s] (str "<" s ">")) (defn wrap-all [v] (apply wrap v)) [(join [(call :e) "!"]) (wrap-all [(call :e)])]', { onCall, jit });
    assert.equal(show(z), vec(lab('alice!', 'pii'), lab('<alice>', 'pii')));
    // A labeled value from a free variable inside a region: its labels reach the result too.
    const x = evaluate('(let [e (call :e) f (fn [n] (str e n))] (f (call :n)))', { onCall, jit });
    assert.equal(show(x), show(lab('alice5', 'conf', 'pii')));
  });

  test(`${mode}: a labeled function labels what it returns (pure or not)`, () => {
    const logged: string[] = [];
    const onCall = (cap: string, args: Value[]): Value => (cap === 'log' ? (logged.push(show(args[0])), null) : lab(3, 'pii'));
    const src = `(defn adder [n] (fn [x] (+ x n)))
(defn logger [n] (fn [x] (call :log x) (+ x n)))
(let [add (adder (call :n)) log-add (logger (call :n))] [(add 1) ((fn [g] (g 2)) add) (log-add 3)])`;
    assert.equal(show(evaluate(src, { onCall, jit })), vec(lab(4, 'pii'), lab(5, 'pii'), lab(6, 'pii')));
    assert.deepEqual(logged, ['3'], 'the unlabeled argument goes to the host unlabeled');
  });
}

test('property: values and labels agree between fast path, interpreter and saved states on small programs with labeled inputs', () => {
  const atom = fc.constantFrom('x', 'y', '1', '7', '-2');
  const expr = fc.letrec<{ e: string }>((tie) => ({
    e: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      atom,
      fc.tuple(fc.constantFrom('+', '-', '*', 'max'), tie('e'), tie('e')).map(([op, a, b]) => `(${op} ${a} ${b})`),
      fc.tuple(tie('e'), tie('e'), tie('e')).map(([a, b, c]) => `(if (< ${a} 3) ${b} ${c})`),
      tie('e').map((a) => `(g ${a})`),
      fc.tuple(tie('e'), tie('e')).map(([a, b]) => `(h ${a} ${b})`),
      tie('e').map((a) => `(sum-to (mod ${a} 20))`),
      tie('e').map((a) => `(count (str ${a}))`),
      fc.tuple(tie('e'), tie('e')).map(([a, b]) => `(first [${a} ${b}])`),
      fc.tuple(tie('e'), tie('e')).map(([a, b]) => `(:k {:k ${a} :j ${b}})`),
      fc.tuple(tie('e'), tie('e')).map(([a, b]) => `(reduce + 0 [${a} ${b}])`),
      fc.tuple(tie('e'), tie('e')).map(([a, b]) => `(apply + [${a} ${b}])`),
      fc.tuple(tie('e'), tie('e')).map(([a, b]) => `((fn [z] (+ z ${a})) ${b})`),
      tie('e').map((a) => `(let [z ${a}] (* z z))`),
      tie('e').map((a) => `(call :echo ${a})`),
    ),
  })).e;
  const labels = fc.constantFrom<string[]>([], ['pii'], ['conf'], ['pii', 'conf']);
  const defs = `(defn g [a] (if (> a 0) (inc a) (dec a)))
(defn h [a b] (loop [i 0 acc a] (if (< i 3) (recur (inc i) (+ acc b)) acc)))
(defn sum-to [n] (loop [i 0 acc 0] (if (< i n) (recur (inc i) (+ acc i)) acc)))`;
  fc.assert(
    fc.property(expr, expr, labels, labels, fc.integer({ min: -5, max: 30 }), (body, top, lx, ly, n) => {
      const src = `${defs}\n(defn f [x y] ${body})\n(let [x (call :in 0) y (call :in 1)] [(f x y) (let [x 1 y 2] ${top}) (f x 3)])`;
      const onCall = (cap: string, args: Value[]): Value => {
        if (cap === 'echo') return args[0];
        const which = args[0] as number;
        const ls = which === 0 ? lx : ly;
        const v = which === 0 ? n : n + 1;
        return ls.length ? new Labeled(v, new Set(ls)) : v;
      };
      const run = (opts: EvaluateOptions): string => {
        try {
          return show(evaluate(src, { fuel: 1_000_000, onCall, ...opts }));
        } catch (e) {
          if (e instanceof RtfsError) return `error ${e.code} ${e.pos?.line}:${e.pos?.col} ${e.message}`;
          throw e;
        }
      };
      const fast = run({});
      assert.equal(run({ jit: false }), fast, src);
      assert.equal(run({ roundtrip: true }), fast, src);
    }),
    { numRuns: 150 },
  );
});

test('a run cancelled between start and run (a region open at its root) fails with :cancelled', () => {
  const rt = createRuntime();
  rt.runToCompletion(rt.load(DEFS, 'defs.rtfs').main);
  const m = rt.machine();
  m.jit = false; // the interpreter: start leaves the region open for run
  m.labelsActive = true;
  m.start(rt.findCell('sum-to')!.value as Closure, [lab(100, 'pii')]);
  m.cancel();
  const out = m.run();
  assert.equal(out.status, 'error');
  assert.equal(out.status === 'error' && out.error.type.name, 'cancelled');
  // start drops the region the failed run left behind.
  m.start(rt.findCell('sum-to')!.value as Closure, [lab(10, 'pii')]);
  const again = m.run();
  assert.equal(again.status === 'complete' && show(again.value), show(lab(45, 'pii')));
});
