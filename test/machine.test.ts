// The suspendable machine: host calls, JSON round trips, fibers, fuel, deep recursion.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createRuntime,
  evaluate,
  prStr,
  readOne,
  restoreMachine,
  saveMachine,
  valueEquals,
  RtfsError,
  List,
  kw,
  type HostRequest,
  type Value,
} from '../src/rtfs/index.js';

const ev = (src: string, opts = {}): string => prStr(evaluate(src, opts));
const same = (src: string, expected: string, opts = {}): void => {
  const got = evaluate(src, opts);
  assert.ok(valueEquals(got, readOne(expected) as Value), `${src}\n  expected ${expected}\n  got      ${prStr(got)}`);
};

test('a call suspends with the capability id, evaluated args, step path, position and metadata', () => {
  const rt = createRuntime();
  const unit = rt.load('(plan ^{:policy {:risk :high}} :program (step "outer" (step "inner" ^{:idempotency {:key "k1"}} (call :svc.get {:id (+ 1 2)} "x"))))', 'p.rtfs');
  const m = rt.machine();
  m.start(unit.main);
  let out = m.run();
  // Two step-starts come first.
  const seen: HostRequest[] = [];
  while (out.status === 'suspended' && out.requests[0].kind !== 'call') {
    seen.push(...out.requests);
    m.resume(out.requests.map((r) => ({ id: r.id, resolution: { value: null } })));
    out = m.run();
  }
  assert.deepEqual(seen.map((r) => r.kind), ['step-start', 'step-start']);
  assert.equal(out.status, 'suspended');
  if (out.status !== 'suspended') return;
  const req = out.requests[0];
  assert.equal(req.kind, 'call');
  if (req.kind !== 'call') return;
  assert.equal(req.capability, 'svc.get');
  assert.equal(prStr(List(req.args)), '[{:id 3} "x"]');
  assert.deepEqual(req.stepPath, ['outer', 'inner']);
  assert.deepEqual([req.pos?.file, req.pos?.line], ['p.rtfs', 1]);
  assert.equal(req.scopes[0].kind, 'plan');
  assert.equal(prStr(req.scopes[0].meta as Value), '{:policy {:risk :high}}');
  assert.equal(prStr(req.scopes[2].meta as Value), '{:idempotency {:key "k1"}}');
});

test('keywords with dots and colons are one capability id, as the seeds write them', () => {
  const caps: string[] = [];
  evaluate('(call :com.config:v1.rollback {:service "X"})', { onCall: (c) => (caps.push(c), null) });
  assert.deepEqual(caps, ['com.config:v1.rollback']);
});

test('resume with an error throws at the call site and try catches it', () => {
  const onCall = (): Value => {
    throw new RtfsError('network', 'connection refused');
  };
  same('(try (call :svc.get 1) (catch :network e (str "caught: " (ex-message e))))', '"caught: connection refused"', { onCall });
  assert.throws(() => evaluate('(+ 1 (call :svc.get 1))', { onCall }), /connection refused/);
});

test('map over a suspending closure suspends once per item and survives JSON round trips', () => {
  const seen: Value[] = [];
  const onCall = (_c: string, args: Value[]): Value => {
    seen.push(args[0]);
    return (args[0] as number) * 10;
  };
  const src = '(map (fn [x] (call :svc.get x)) [1 2 3 4 5])';
  const direct = evaluate(src, { onCall });
  const viaJson = evaluate(src, { onCall, roundtrip: true });
  assert.equal(prStr(direct), '[10 20 30 40 50]');
  assert.ok(valueEquals(direct, viaJson));
  assert.equal(seen.length, 10);
});

test('a saved state resumes in a fresh runtime with closures, globals and letfn boxes intact', () => {
  const src = `
    (defn twice [x] (* 2 x))
    (letfn [(ev? [n] (if (= n 0) true (od? (dec n))))
            (od? [n] (if (= n 0) false (ev? (dec n))))]
      (let [base (call :svc.base)]
        [(twice base) (ev? 10) (od? 7) (reduce + (map (fn [i] (+ i base)) [1 2 3]))]))`;
  const rt = createRuntime();
  const unit = rt.load(src, 'state.rtfs');
  const m = rt.machine();
  m.start(unit.main);
  const out = m.run();
  assert.equal(out.status, 'suspended');
  if (out.status !== 'suspended') return;
  const json = JSON.stringify(saveMachine(rt, m));
  const restored = restoreMachine(JSON.parse(json));
  restored.machine.resume([{ id: out.requests[0].id, resolution: { value: 5 } }]);
  const end = restored.machine.run();
  assert.equal(end.status, 'complete');
  if (end.status === 'complete') assert.equal(prStr(end.value), '[10 true true 21]');
});

test('step.parallel returns every pending call at once and joins in branch order', () => {
  const rt = createRuntime();
  const unit = rt.load('(step.parallel (call :a 1) (+ 100 (call :b 2)) (step "c" (call :c 3)) 7)', 'par.rtfs');
  const m = rt.machine();
  m.start(unit.main);
  let out = m.run();
  // The step "c" branch asks for its start first; answer it.
  const answers = (reqs: HostRequest[]): void => {
    m.resume(reqs.filter((r) => r.kind !== 'call').map((r) => ({ id: r.id, resolution: { value: r.kind === 'step-end' && r.outcome.ok ? r.outcome.value : null } })));
  };
  assert.equal(out.status, 'suspended');
  if (out.status !== 'suspended') return;
  answers(out.requests);
  out = m.run();
  assert.equal(out.status, 'suspended');
  if (out.status !== 'suspended') return;
  const calls = out.requests.filter((r) => r.kind === 'call');
  assert.deepEqual(calls.map((r) => (r.kind === 'call' ? r.capability : '')), ['a', 'b', 'c']);
  // Complete them in reverse order: the join must still be in branch order.
  for (const r of [...calls].reverse()) {
    m.resume([{ id: r.id, resolution: { value: r.kind === 'call' ? (r.args[0] as number) * 1000 : null } }]);
    out = m.run();
    if (out.status === 'suspended') answers(out.requests);
  }
  out = m.run();
  while (out.status === 'suspended') {
    answers(out.requests);
    out = m.run();
  }
  assert.equal(out.status, 'complete');
  if (out.status === 'complete') assert.equal(prStr(out.value), '[1000 2100 3000 7]');
});

test('a failing branch of step.parallel raises in the parent after the join', () => {
  const onCall = (c: string): Value => {
    if (c === 'bad') throw new RtfsError('boom', 'branch failed');
    return 1;
  };
  same('(try (step.parallel (call :ok) (call :bad)) (catch :boom e (ex-message e)))', '"branch failed"', { onCall });
});

test('deep recursion (100k frames) does not exhaust the JS stack; loop/recur runs in constant space', () => {
  same('(defn down [n] (if (= n 0) 0 (+ 1 (down (- n 1))))) (down 100000)', '100000');
  same('(loop [i 0 acc 0] (if (< i 1000000) (recur (inc i) (+ acc i)) acc))', '499999500000');
});

test('fuel bounds a run and exhaustion is reported distinctly', () => {
  assert.throws(
    () => evaluate('(loop [] (recur))', { fuel: 10_000 }),
    (e: unknown) => e instanceof RtfsError && e.code === 'fuel-exhausted',
  );
  assert.throws(
    () => evaluate('(defn f [] (f)) (f)', { fuel: 10_000 }),
    (e: unknown) => e instanceof RtfsError && e.code === 'fuel-exhausted',
  );
  const rt = createRuntime();
  const unit = rt.load('(loop [i 0] (if (< i 100) (recur (inc i)) i))');
  const m = rt.machine();
  m.fuel = 10;
  m.start(unit.main);
  assert.equal(m.run().status, 'out-of-fuel');
  m.fuel = 1000;
  const out = m.run();
  assert.equal(out.status, 'complete');
  if (out.status === 'complete') assert.equal(out.value, 100);
});

test('a failed step can be retried by the host, re-running its body', () => {
  const rt = createRuntime();
  const unit = rt.load('(step "flaky" (call :flaky))');
  const m = rt.machine();
  m.start(unit.main);
  let attempts = 0;
  let retried = false;
  let out = m.run();
  while (out.status === 'suspended') {
    const r = out.requests[0];
    if (r.kind === 'call') {
      attempts++;
      m.resume([{ id: r.id, resolution: attempts < 3 ? { error: new RtfsError('transient', 'try again') } : { value: kw('ok') } }]);
    } else if (r.kind === 'step-end' && !r.outcome.ok) {
      retried = true;
      m.resume([{ id: r.id, resolution: { retry: true } }]);
    } else m.resume([{ id: r.id, resolution: { value: r.kind === 'step-end' && r.outcome.ok ? r.outcome.value : null } }]);
    out = m.run();
  }
  assert.ok(retried);
  assert.equal(attempts, 3);
  assert.equal(out.status, 'complete');
  if (out.status === 'complete') assert.equal(prStr(out.value), ':ok');
});

test('runtime errors carry file:line:col of the failing form', () => {
  assert.throws(
    () => evaluate('(let [x 1]\n  (/ x 0))', { file: 'div.rtfs' }),
    (e: unknown) => e instanceof RtfsError && e.code === 'arithmetic' && e.pos?.file === 'div.rtfs' && e.pos.line === 2 && e.pos.col === 3,
  );
  assert.throws(() => evaluate('(call :x)'), (e: unknown) => e instanceof RtfsError && /no host/.test(e.message));
});

test('integer overflow is an error, never a silent loss', () => {
  same('(* 4611686018427387904 1)', '4611686018427387904');
  assert.throws(() => evaluate('(* 4611686018427387904 2)'), /overflow/);
  assert.throws(() => evaluate('(+ 9223372036854775807 1)'), /overflow/);
  same('(- -9223372036854775807 1)', '-9223372036854775808');
});

test('macros evaluate at expansion time, with syntax-quote, splicing and auto-gensym', () => {
  same('(defmacro unless [c & body] `(if ~c nil (do ~@body))) (unless false 1 2 3)', '3');
  same('(defmacro my-or2 [a b] `(let [x# ~a] (if x# x# ~b))) (let [x 5] (my-or2 nil x))', '5');
  same('(defmacro build [n] (vec (range n))) (build 4)', '[0 1 2 3]');
  assert.equal(ev('(defmacro sq [x] (list (quote *) x x)) (sq 7)'), '49');
});

test('finished step.parallel branches are dropped at their join: fibers and saved states do not grow', () => {
  const rt = createRuntime();
  const unit = rt.load('(loop [i 0 acc 0] (if (< i 50) (recur (inc i) (+ acc (reduce + (step.parallel (call :a i) (call :b i) (call :c i))))) acc))', 'loop.rtfs');
  const m = rt.machine();
  m.start(unit.main);
  let out = m.run();
  let maxFibers = 0;
  let maxState = 0;
  while (out.status === 'suspended') {
    maxFibers = Math.max(maxFibers, m.fibers.size);
    maxState = Math.max(maxState, JSON.stringify(saveMachine(rt, m)).length);
    m.resume(out.requests.map((r) => ({ id: r.id, resolution: { value: r.kind === 'call' ? (r.args[0] as number) : null } })));
    out = m.run();
  }
  assert.equal(out.status, 'complete');
  if (out.status === 'complete') assert.equal(out.value, 3 * ((49 * 50) / 2));
  assert.equal(maxFibers, 4, 'the root and the three branches of one block, never more');
  assert.equal(m.fibers.size, 1);
  assert.ok(maxState < 20_000, `saved state stays small (${maxState} bytes)`);
});
