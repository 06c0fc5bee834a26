// Behavioral contracts, compensations (sagas), idempotency keys and step.parallel, in one process:
// the compiler's checks of contracts (arity, purity, positions), their run-time evaluation (pure,
// under fuel, recorded with a predicate hash), saga scopes (LIFO compensation on a later failure, a
// postcondition or invariant failure, cancel; quarantine when a compensation fails), the durable
// idempotency store, and concurrency of step.parallel. Seed 004's examples A, B and C run here.
// Crash safety is in sagas-crash.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openCcos, valueToPlainJson, type Action, type Ccos, type RunResult } from '../src/ccos/index.js';
import { RtfsError, createRuntime, evaluate, type Value } from '../src/rtfs/index.js';
import { tempNode } from './support.js';

const node = (t: { after: (fn: () => void) => void }): Ccos => tempNode(t, 'ccos-sagas-');

const plain = (r: RunResult): unknown => (r.value === undefined ? undefined : valueToPlainJson(r.value));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const chain = (ccos: Ccos, runId: string): Action[] => ccos.chain.list({ runId });
const of = (ccos: Ccos, runId: string, type: Action['type']): Action[] => chain(ccos, runId).filter((a) => a.type === type);
/** The primaries of the CompensationStarted actions of a run, in chain order. */
const compensated = (ccos: Ccos, runId: string): string[] => of(ccos, runId, 'CompensationStarted').map((a) => a.data.primary as string);
const stepsStarted = (ccos: Ccos, runId: string): string[] => of(ccos, runId, 'StepStarted').map((a) => a.data.name as string);

function assertChainOk(ccos: Ccos): void {
  const report = ccos.verifyChain();
  assert.equal(report.ok, true, JSON.stringify(report.problems));
}

/** A recording fake service: `svc.do` (the effect), `svc.undo` (its compensation), `svc.fail`. */
function services(ccos: Ccos): { log: string[]; calls: Record<string, number> } {
  const log: string[] = [];
  const calls: Record<string, number> = {};
  const count = (id: string): void => void (calls[id] = (calls[id] ?? 0) + 1);
  ccos.registerCapability({ id: 'svc.do' }, (args) => {
    count('svc.do');
    log.push(`do ${String(args[0])}`);
    return args[0];
  });
  ccos.registerCapability({ id: 'svc.undo' }, (args) => {
    count('svc.undo');
    log.push(`undo ${String(args[0])}`);
    return true;
  });
  ccos.registerCapability({ id: 'svc.fail' }, (args) => {
    count('svc.fail');
    throw new Error(`failure ${String(args[0] ?? '')}`);
  });
  return { log, calls };
}

/** `(step.with-compensation (step "sI" (call :svc.do I)) (step "uI" (call :svc.undo I)))`. */
const sagaStep = (i: number | string): string => `(step.with-compensation (step "s${i}" (call :svc.do ${typeof i === 'number' ? i : JSON.stringify(i)})) (step "u${i}" (call :svc.undo ${typeof i === 'number' ? i : JSON.stringify(i)})))`;

/** Expects `fn` to throw a compile error at line:col. */
function compileError(fn: () => unknown, line: number, col: number, message: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof RtfsError, `expected a compile error, got ${err === undefined ? 'success' : String(err)}`);
  assert.equal(err.code, 'compile', err.message);
  assert.match(err.message, message);
  assert.deepEqual([err.pos?.line, err.pos?.col], [line, col], `position of: ${err.message}`);
}

// =================================================================================================
// 1. Contracts

test('contracts: a failed precondition does not run the step body (provider never called) → :contract/precondition-failed', async (t) => {
  const ccos = node(t);
  let debits = 0;
  ccos.registerCapability({ id: 'bank.debit' }, () => ++debits);
  const r = await ccos.run(`(step "Debit" ^{:pre (fn [ctx] (<= (:amount ctx) (:balance ctx))) :ctx {:amount 500 :balance 100}} (call :bank.debit {:amount 500}))`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'contract/precondition-failed');
  assert.equal(debits, 0, 'the step body never ran');
  assert.equal(of(ccos, r.runId, 'CapabilityCall').length, 0);
  const completed = of(ccos, r.runId, 'ContractCheckCompleted');
  assert.deepEqual(completed.map((a) => [a.data.phase, a.data.outcome]), [['pre', 'failed']]);
  assert.equal(of(ccos, r.runId, 'StepFailed')[0].data.name, 'Debit');
  assertChainOk(ccos);
});

test('contracts: ContractCheckStarted/Completed carry phase, a sha256 predicate hash (stable, distinct per predicate) and the outcome', async (t) => {
  const ccos = node(t);
  ccos.registerCapability({ id: 'svc.get' }, () => 42);
  const src = `(step "S" ^{:pre (fn [ctx] (pos? (:n ctx))) :post (fn [ctx ctx'] (= (:result ctx') 42)) :ctx {:n 1}} (call :svc.get))`;
  const r = await ccos.run(src);
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(plain(r), 42);
  const started = of(ccos, r.runId, 'ContractCheckStarted');
  const done = of(ccos, r.runId, 'ContractCheckCompleted');
  assert.deepEqual(started.map((a) => a.data.phase), ['pre', 'post']);
  assert.deepEqual(done.map((a) => [a.data.phase, a.data.outcome]), [['pre', 'passed'], ['post', 'passed']]);
  for (const a of [...started, ...done]) assert.match(String(a.data.predicate), /^sha256:[0-9a-f]{64}$/);
  assert.deepEqual(done.map((a) => a.data.predicate), started.map((a) => a.data.predicate), 'Completed names the predicate Started named');
  assert.deepEqual(done.map((a) => a.parentId), started.map((a) => a.id), 'Completed links to its Started');
  assert.notEqual(started[0].data.predicate, started[1].data.predicate, 'different predicates hash differently');
  assert.deepEqual(started.map((a) => a.data.args), ['[{:n 1}]', '[{:n 1} {:n 1 :result 42}]'], 'pre sees ctx; post sees ctx and (assoc ctx :result value)');
  assert.deepEqual(done[0].stepPath, ['S']);
  // The same predicate in another run hashes the same.
  const again = await ccos.run(src);
  assert.deepEqual(of(ccos, again.runId, 'ContractCheckStarted').map((a) => a.data.predicate), started.map((a) => a.data.predicate));
  // The chain order: pre check, then the call, then the post check.
  const order = chain(ccos, r.runId).filter((a) => a.type.startsWith('Contract') || a.type === 'CapabilityCall').map((a) => a.type);
  assert.deepEqual(order, ['ContractCheckStarted', 'ContractCheckCompleted', 'CapabilityCall', 'ContractCheckStarted', 'ContractCheckCompleted']);
});

test('contracts: a postcondition failure compensates the primary itself and fails the step with :contract/postcondition-failed', async (t) => {
  const ccos = node(t);
  const { log } = services(ccos);
  const r = await ccos.run(`(do ${sagaStep(1)}
    (step.with-compensation
      (step "s2" ^{:post (fn [ctx ctx'] (= (:result ctx') :expected))} (call :svc.do 2))
      (step "u2" (call :svc.undo 2)))
    (step "s3" (call :svc.do 3)))`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'contract/postcondition-failed');
  assert.deepEqual(log, ['do 1', 'do 2', 'undo 2', 'undo 1'], 'the primary whose post failed is undone first, then the earlier one');
  assert.deepEqual(compensated(ccos, r.runId), ['s2', 's1']);
  assert.ok(!stepsStarted(ccos, r.runId).includes('s3'), 's3 never ran');
  assert.deepEqual(of(ccos, r.runId, 'StepFailed').map((a) => a.data.name), ['s2']);
  assert.deepEqual(of(ccos, r.runId, 'ContractCheckCompleted').map((a) => [a.data.phase, a.data.outcome]), [['post', 'failed']]);
});

test('contracts: a plan invariant failure compensates every completed primary (LIFO) → :contract/invariant-failed', async (t) => {
  const ccos = node(t);
  const { log } = services(ccos);
  // The program spends 30 of a risk budget of 20.
  const r = await ccos.run(`(plan ^{:invariant (fn [s s'] (>= (- (:risk-budget s) (:result s')) 0))}
    :state {:risk-budget 20}
    :program (do ${sagaStep(1)} ${sagaStep(2)} ${sagaStep(3)} 30))`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'contract/invariant-failed');
  assert.deepEqual(log, ['do 1', 'do 2', 'do 3', 'undo 3', 'undo 2', 'undo 1']);
  assert.deepEqual(compensated(ccos, r.runId), ['s3', 's2', 's1']);
  const checks = of(ccos, r.runId, 'ContractCheckCompleted');
  assert.deepEqual(checks.map((a) => [a.data.phase, a.data.outcome]), [['invariant', 'failed']]);
  assert.deepEqual(of(ccos, r.runId, 'ContractCheckStarted')[0].data.args, '[{:risk-budget 20} {:risk-budget 20 :result 30}]');
  // Within budget: no compensation.
  const ok = await ccos.run(`(plan ^{:invariant (fn [s s'] (>= (- (:risk-budget s) (:result s')) 0))} :state {:risk-budget 20} :program (do ${sagaStep(4)} 10))`);
  assert.equal(ok.status, 'completed');
  assert.deepEqual(compensated(ccos, ok.runId), []);
});

test('contracts: defn :pre/:post take the arguments, and the arguments plus the result', () => {
  const src = `(defn add ^{:pre (fn [a b] (pos? a)) :post (fn [a b r] (= r (+ a b)))} [a b] (+ a b))
    (defn bad ^{:post (fn [a r] (> r a))} [a] (- a 1))
    [(add 1 2)
     (try (add -1 2) (catch :contract/precondition-failed e :pre-failed))
     (try (bad 5) (catch :contract/postcondition-failed e :post-failed))]`;
  assert.deepEqual(valueToPlainJson(evaluate(src)), [3, 'pre-failed', 'post-failed']);
});

test('contracts: the wrong arity is a compile error at the predicate (line:col), for steps, defn and plans', async (t) => {
  compileError(() => evaluate(`(step "s"\n  ^{:pre (fn [a b] true)} 1)`), 2, 10, /:pre contract takes 1 argument here, but its fn takes 2/);
  compileError(() => evaluate(`(step "s"\n  ^{:post (fn [a] true)} 1)`), 2, 11, /:post contract takes 2 arguments here, but its fn takes 1/);
  compileError(() => evaluate(`(defn f\n  ^{:pre (fn [a] true)} [a b] 1)`), 2, 10, /:pre contract takes 2 arguments here/);
  compileError(() => evaluate(`(defn f\n  ^{:post (fn [a b] true)} [a b] 1)`), 2, 11, /:post contract takes 3 arguments here/);
  compileError(() => evaluate(`(plan\n  ^{:invariant (fn [s] true)} :program 1)`), 2, 16, /:invariant contract takes 2 arguments here/);
  // Through CCOS nothing runs: the plan is refused before it starts.
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'svc.x' }, () => ++calls);
  await assert.rejects(ccos.run(`(call :svc.x)\n(step "s" ^{:pre (fn [] true)} (call :svc.x))`), (e: RtfsError) => e.code === 'compile' && e.pos?.line === 2 && e.pos?.col === 18);
  assert.equal(calls, 0);
  assert.equal(ccos.runs().length, 0, 'no run was created');
});

test('contracts: an impure contract body (call, step, step.parallel, step.with-compensation) is a compile error naming its position', () => {
  const at = (body: string): string => `(step "s"\n  ^{:pre (fn [ctx]\n    ${body})} 1)`;
  for (const body of ['(call :bank.debit {})', '(step "x" 1)', '(step.parallel 1 2)', '(step.with-compensation (step "a" 1) (step "b" 2))', '(and true ((fn [] (call :x.y))))']) {
    const col = body.startsWith("(and") ? 23 : 5;
    compileError(() => evaluate(at(body), { onCall: () => 1 }), 3, col, /contract predicates must be pure/);
  }
  compileError(() => evaluate(`(defn f ^{:post (fn [a r]\n (call :audit.log r))} [a] a)`), 2, 2, /must be pure: `call`/);
  compileError(() => evaluate(`(plan ^{:invariant (fn [s s']\n   (step "x" true))} :program 1)`), 2, 4, /must be pure: a step/);
});

test('contracts: a contract body that defines globals (def) is an effectful form: rejected at compile time', async (t) => {
  compileError(() => evaluate(`(def zz 0)\n(step "s" ^{:pre (fn [ctx]\n  (def zz 1))} 1)\nzz`), 3, 3, /contract predicates must be pure/);
  // And in CCOS the contract must not change what the plan sees.
  const ccos = node(t);
  const r = await ccos.run(`(def zz 0) (step "s" ^{:pre (fn [ctx] (do (def zz 1) true))} 1) zz`).catch((e: Error) => e);
  if (!(r instanceof Error)) assert.equal(plain(r), 0, 'a contract changed a global of the plan');
});

test('contracts: a contract calling a user function that calls a capability fails at run time (impure); nothing is called', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'bank.balance' }, () => ++calls);
  const r = await ccos.run(`(defn balance [acct] (call :bank.balance acct))
    (step "s" ^{:pre (fn [ctx] (> (balance "a") 0))} :body)`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'contract/impure');
  assert.equal(calls, 0, 'the capability was never reached from the contract');
  assert.equal(of(ccos, r.runId, 'CapabilityCall').length, 0);
  const done = of(ccos, r.runId, 'ContractCheckCompleted');
  assert.equal(done[0].data.outcome, 'error');
  assert.equal((done[0].data.error as { code: string }).code, 'contract/impure');
});

test('contracts: a contract that loops forever ends with a fuel error (no hang), and its step never runs', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'svc.x' }, () => ++calls);
  const started = performance.now();
  const r = await ccos.run(`(step "s" ^{:pre (fn [ctx] (loop [i 0] (recur (inc i))))} (call :svc.x))`);
  assert.ok(performance.now() - started < 10_000, 'bounded');
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'fuel-exhausted');
  assert.equal(calls, 0);
  const done = of(ccos, r.runId, 'ContractCheckCompleted');
  assert.deepEqual(done.map((a) => a.data.outcome), ['error']);
  // Non-tail recursion too.
  const rec = await ccos.run(`(step "s" ^{:post (fn [c c'] (letfn [(f [n] (+ 1 (f n)))] (pos? (f 1))))} 1)`);
  assert.equal(rec.status, 'failed');
  assert.ok(['fuel-exhausted', 'stack-overflow'].includes(rec.error!.code), rec.error!.code);
  // The kernel's own evaluate bounds contracts the same way, even with unbounded plan fuel.
  assert.throws(() => evaluate(`(step "s" ^{:pre (fn [ctx] (loop [i 0] (recur (inc i))))} 1)`), (e: RtfsError) => e.code === 'fuel-exhausted');
});

test('contracts: a contract that is slow without using fuel (native work) is stopped by a time limit', async (t) => {
  const ccos = node(t);
  const started = performance.now();
  const r = await ccos.run(`(step "s" ^{:pre (fn [ctx] (let [v (vec (reverse (range 3000000)))] (loop [i 0] (if (< i 10) (do (sort v) (recur (inc i))) true))))} :ran)`);
  const ms = performance.now() - started;
  assert.equal(r.status, 'failed', `the slow contract passed after ${Math.round(ms)} ms`);
  assert.ok(ms < 3000, `cut off in time (${Math.round(ms)} ms)`);
});

test('contracts: the kernel evaluate() runs step contracts purely (no CCOS needed)', () => {
  const seen: string[] = [];
  const onCall = (cap: string): Value => (seen.push(cap), 5);
  assert.equal(evaluate(`(step "s" ^{:pre (fn [ctx] (= (:step ctx) "s")) :post (fn [c c'] (= 5 (:result c')))} (call :svc.five))`, { onCall }), 5);
  assert.throws(() => evaluate(`(step "s" ^{:pre (fn [ctx] false)} (call :svc.five))`, { onCall }), (e: RtfsError) => e.code === 'contract/precondition-failed');
  assert.deepEqual(seen, ['svc.five'], 'the body ran once, when the precondition held');
});

// =================================================================================================
// 2. Sagas

test('saga: five steps, step 4 fails → compensations of 3, 2, 1 in that order (from the chain); step 5 never runs', async (t) => {
  const ccos = node(t);
  const { log, calls } = services(ccos);
  const r = await ccos.run(`(do ${sagaStep(1)} ${sagaStep(2)} ${sagaStep(3)}
    (step.with-compensation (step "s4" (call :svc.fail 4)) (step "u4" (call :svc.undo 4)))
    ${sagaStep(5)})`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'provider-failed');
  assert.deepEqual(compensated(ccos, r.runId), ['s3', 's2', 's1'], 'LIFO, and the failed step 4 is not "compensated"');
  assert.deepEqual(of(ccos, r.runId, 'CompensationCompleted').map((a) => [a.data.primary, a.data.ok]), [['s3', true], ['s2', true], ['s1', true]]);
  assert.ok(!stepsStarted(ccos, r.runId).includes('s5'), 'step 5 never started');
  assert.deepEqual(log, ['do 1', 'do 2', 'do 3', 'undo 3', 'undo 2', 'undo 1']);
  assert.equal(calls['svc.do'], 3);
  // Every CompensationStarted links to its primary's StepCompleted.
  const all = chain(ccos, r.runId);
  for (const c of of(ccos, r.runId, 'CompensationStarted')) {
    const primary = all.find((a) => a.id === c.parentId);
    assert.equal(primary?.type, 'StepCompleted');
    assert.equal(primary?.data.name, c.data.primary);
    assert.deepEqual(c.stepPath, [`compensate: ${c.data.primary as string}`]);
    assert.ok(primary!.seq < c.seq);
  }
  // The compensation calls run inside the compensation steps, after the failure.
  const undoCalls = of(ccos, r.runId, 'CapabilityCall').filter((a) => a.data.capability === 'svc.undo');
  assert.deepEqual(undoCalls.map((a) => a.stepPath), [['compensate: s3', 'u3'], ['compensate: s2', 'u2'], ['compensate: s1', 'u1']]);
  const failedAt = of(ccos, r.runId, 'StepFailed').find((a) => a.data.name === 's4')!;
  assert.ok(undoCalls.every((a) => a.seq > failedAt.seq));
  assert.equal(of(ccos, r.runId, 'PlanAborted').length, 1);
  assertChainOk(ccos);
});

test('saga: a successful saga runs no compensation', async (t) => {
  const ccos = node(t);
  const { log } = services(ccos);
  const r = await ccos.run(`(do ${sagaStep(1)} ${sagaStep(2)} :ok)`);
  assert.equal(r.status, 'completed');
  assert.deepEqual(log, ['do 1', 'do 2']);
  assert.deepEqual(compensated(ccos, r.runId), []);
});

test('saga scopes: a failure handled inside the scope compensates nothing; one escaping a step compensates what that step registered', async (t) => {
  const ccos = node(t);
  const { log } = services(ccos);
  const handled = await ccos.run(`(do ${sagaStep(1)} (try (step "b" (call :svc.fail)) (catch :error e :handled)))`);
  assert.equal(handled.status, 'completed');
  assert.equal(plain(handled), 'handled');
  assert.deepEqual(compensated(ccos, handled.runId), []);
  log.length = 0;
  // "outer" is a saga scope: the failure escapes it, so s2 (registered inside it) is undone even
  // though a try outside catches the error; s1 (outside "outer") is kept.
  const escaped = await ccos.run(`(do ${sagaStep(1)} (try (step "outer" ${sagaStep(2)} (call :svc.fail)) (catch :error e :caught)))`);
  assert.equal(escaped.status, 'completed');
  assert.deepEqual(log, ['do 1', 'do 2', 'undo 2']);
  assert.deepEqual(compensated(ccos, escaped.runId), ['s2']);
  assert.deepEqual(of(ccos, escaped.runId, 'CompensationStarted')[0].stepPath, ['outer', 'compensate: s2']);
});

test('saga: cancelling a paused saga compensates LIFO and ends cancelled', async (t) => {
  const ccos = node(t);
  const { log } = services(ccos);
  const paused = await ccos.run(`(do ${sagaStep(1)} ${sagaStep(2)} ${sagaStep(3)} (step "ask" (call :ccos.user.ask "continue?")) ${sagaStep(4)})`);
  assert.equal(paused.status, 'paused');
  const r = await ccos.cancel(paused.runId);
  assert.equal(r.status, 'cancelled');
  assert.equal(r.error, undefined);
  assert.deepEqual(log, ['do 1', 'do 2', 'do 3', 'undo 3', 'undo 2', 'undo 1']);
  assert.deepEqual(compensated(ccos, r.runId), ['s3', 's2', 's1']);
  assert.ok(!stepsStarted(ccos, r.runId).includes('s4'));
  const end = of(ccos, r.runId, 'PlanCancelled');
  assert.equal(end.length, 1);
  assert.equal(end[0].data.compensated, true);
  assert.equal(ccos.runs().find((x) => x.id === r.runId)?.status, 'cancelled');
  assertChainOk(ccos);
});

test('saga: cancelling a running saga (from this process) compensates what completed and ends cancelled', async (t) => {
  const ccos = node(t);
  const { log } = services(ccos);
  ccos.registerCapability({ id: 'svc.slow' }, async () => {
    log.push('slow');
    await sleep(300);
    return 1;
  });
  const p = ccos.run(`(do ${sagaStep(1)} ${sagaStep(2)} (step "slow" (call :svc.slow)) ${sagaStep(3)})`);
  for (let i = 0; i < 100 && !log.includes('slow'); i++) await sleep(10);
  const runId = ccos.runs()[0].id;
  await ccos.cancel(runId);
  const r = await p;
  assert.equal(r.status, 'cancelled');
  assert.deepEqual(log, ['do 1', 'do 2', 'slow', 'undo 2', 'undo 1']);
  assert.deepEqual(compensated(ccos, runId), ['s2', 's1']);
});

/** A saga whose compensation of s2 fails the first `failures` times. */
function failingCompensation(ccos: Ccos, failures: number): { log: string[] } {
  const log: string[] = [];
  let left = failures;
  ccos.registerCapability({ id: 'svc.do' }, (args) => (log.push(`do ${String(args[0])}`), args[0]));
  ccos.registerCapability({ id: 'svc.undo' }, (args) => {
    log.push(`undo ${String(args[0])}`);
    if (args[0] === 2 && left-- > 0) throw new Error('the reversal service is down');
    return true;
  });
  ccos.registerCapability({ id: 'svc.fail' }, () => {
    throw new Error('later failure');
  });
  return { log };
}
const FAILING_SAGA = `(do ${sagaStep(1)} ${sagaStep(2)} ${sagaStep(3)} (step "boom" (call :svc.fail)))`;

test('saga: a failing compensation quarantines the run (paused, recorded); resume retries it and the rest of the saga unwinds', async (t) => {
  const ccos = node(t);
  const { log } = failingCompensation(ccos, 1);
  const q = await ccos.run(FAILING_SAGA);
  assert.equal(q.status, 'paused');
  const waiting = q.waiting as { kind: string; primary: string; error: string };
  assert.equal(waiting.kind, 'compensation-failed');
  assert.equal(waiting.primary, 's2');
  assert.match(waiting.error, /reversal service is down/);
  assert.deepEqual(log, ['do 1', 'do 2', 'do 3', 'undo 3', 'undo 2'], 's1 is not compensated before s2 is dealt with');
  const failedComp = of(ccos, q.runId, 'CompensationCompleted').find((a) => a.data.ok === false)!;
  assert.equal(failedComp.data.primary, 's2');
  assert.equal(failedComp.data.quarantined, true);
  assert.equal((of(ccos, q.runId, 'PlanPaused')[0].data.waiting as { kind: string }).kind, 'compensation-failed');
  assert.equal(ccos.runs()[0].status, 'paused');

  const r = await ccos.resume(q.runId);
  assert.equal(r.status, 'failed', 'the saga itself still failed');
  assert.equal(r.error?.code, 'provider-failed', 'with the original error');
  assert.deepEqual(log, ['do 1', 'do 2', 'do 3', 'undo 3', 'undo 2', 'undo 2', 'undo 1'], 'the compensation was retried, then s1 was undone; no primary re-ran');
  const retry = of(ccos, r.runId, 'StepRetrying');
  assert.deepEqual(retry.map((a) => [a.data.compensation_of, a.data.decision]), [['s2', 'retry']]);
  assert.deepEqual(of(ccos, r.runId, 'CompensationCompleted').map((a) => [a.data.primary, a.data.ok]), [['s3', true], ['s2', false], ['s2', true], ['s1', true]]);
  assertChainOk(ccos);
});

test('saga: a quarantined compensation resumed with {answer} is marked done by hand (not re-run); the rest unwinds', async (t) => {
  const ccos = node(t);
  const { log } = failingCompensation(ccos, 1);
  const q = await ccos.run(FAILING_SAGA);
  assert.equal((q.waiting as { kind: string }).kind, 'compensation-failed');
  const r = await ccos.resume(q.runId, { answer: 'reversed by hand' });
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'provider-failed');
  assert.deepEqual(log, ['do 1', 'do 2', 'do 3', 'undo 3', 'undo 2', 'undo 1']);
  assert.deepEqual(of(ccos, r.runId, 'StepRetrying').map((a) => a.data.decision), ['marked done by hand']);
});

test('saga: a quarantined compensation resumed with {fail} gives up on it: recorded with the reason; the run fails with its original error', async (t) => {
  const ccos = node(t);
  const { log } = failingCompensation(ccos, 99);
  const q = await ccos.run(FAILING_SAGA);
  assert.equal(q.status, 'paused');
  // Resuming without a decision while the cause persists quarantines it again.
  const again = await ccos.resume(q.runId);
  assert.equal(again.status, 'paused');
  assert.equal((again.waiting as { kind: string }).kind, 'compensation-failed');
  const r = await ccos.resume(q.runId, { fail: 'operator: cannot reverse, escalated to finance' });
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'provider-failed', 'the failure that started the unwinding is what the run reports');
  const givenUp = of(ccos, r.runId, 'StepRetrying').filter((a) => a.data.decision === 'given up');
  assert.equal(givenUp.length, 1);
  assert.match(String(givenUp[0].data.reason), /escalated to finance/);
  assert.equal(log.filter((l) => l === 'do 2').length, 1, 'no primary re-ran');
});

test('saga: after giving up on one compensation, the older compensations still run (or are recorded as skipped)', async (t) => {
  const ccos = node(t);
  const { log } = failingCompensation(ccos, 99);
  const q = await ccos.run(FAILING_SAGA);
  const r = await ccos.resume(q.runId, { fail: 'give up on s2' });
  assert.equal(r.status, 'failed');
  const s1Handled = log.includes('undo 1') || chain(ccos, r.runId).some((a) => JSON.stringify(a.data).includes('"s1"') && /skip|uncompensated|left/.test(JSON.stringify(a.data)));
  assert.ok(s1Handled, `s1 was neither compensated nor recorded as left uncompensated; log ${JSON.stringify(log)}`);
});

// =================================================================================================
// Seed 004 examples A, B, C (adapted minimally: `ctx`/`docs` bound with let and passed to the
// contracts with :ctx; the post of A reads the balance the bank returns in :result; C uses
// clojure.string/* and a regex without the doubled backslash, since RTFS regex literals do not
// unescape).

const SEED_A = (bankIsWrong: boolean) => `(let [ctx {:src "acct-1" :dst "acct-2" :amount 30 :tid "t-77" :balances {"acct-1" 100 "acct-2" 5}}]
(step.with-compensation
  (step "Debit"
    ^{:pre  (fn [ctx] (<= (:amount ctx) (get-in ctx [:balances (:src ctx)])))
      :post (fn [ctx ctx'] (= (- (get-in ctx [:balances (:src ctx)]) (:amount ctx))
                              (get-in ctx' [:result :balances (:src ctx)])))
      :ctx ctx
      :effects [[:network {:domains ["bank.example.com"] :methods [:POST]}]]
      :idempotency {:key (str "debit:" (:src ctx) ":" (:tid ctx)) :scope :intent}}
    (call :bank.debit {:account (:src ctx) :amount (:amount ctx) :wrong ${bankIsWrong}}))
  (step "CreditReversal"
    ^{:effects [[:network {:domains ["bank.example.com"] :methods [:POST]}]]
      :idempotency {:key (str "reversal:" (:src ctx) ":" (:tid ctx)) :scope :intent}}
    (call :bank.credit {:account (:src ctx) :amount (:amount ctx)}))))`;

function bank(ccos: Ccos): { ops: string[] } {
  const ops: string[] = [];
  let balance = 100;
  ccos.registerCapability({ id: 'bank.debit', effects: [{ kind: 'network' }] }, (args) => {
    const a = valueToPlainJson(args[0]) as { account: string; amount: number; wrong: boolean };
    ops.push(`debit ${a.account} ${a.amount}`);
    balance -= a.amount;
    return plainMap({ balances: { [a.account]: a.wrong ? balance + 1 : balance } });
  });
  ccos.registerCapability({ id: 'bank.credit', effects: [{ kind: 'network' }] }, (args) => {
    const a = valueToPlainJson(args[0]) as { account: string; amount: number };
    ops.push(`credit ${a.account} ${a.amount}`);
    balance += a.amount;
    return balance;
  });
  return { ops };
}

/** Builds an RTFS value from plain JSON through the reader (keyword keys at the top level). */
function plainMap(o: Record<string, unknown>): Value {
  const toSrc = (v: unknown, top: boolean): string => {
    if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${top ? ':' + k : JSON.stringify(k)} ${toSrc(x, false)}`).join(' ')}}`;
    return JSON.stringify(v);
  };
  return evaluate(toSrc(o, true));
}

test('seed 004 example A: contracts + compensation; a correct bank passes pre and post, no reversal; keys recorded', async (t) => {
  const ccos = node(t);
  const { ops } = bank(ccos);
  const intent = ccos.intents.create('move 30 from acct-1 to acct-2').id;
  const r = await ccos.run(SEED_A(false), { intentId: intent, requireIdempotencyFor: ['network'] });
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(ops, ['debit acct-1 30']);
  assert.deepEqual(of(ccos, r.runId, 'ContractCheckCompleted').map((a) => [a.data.phase, a.data.outcome]), [['pre', 'passed'], ['post', 'passed']]);
  assert.deepEqual(compensated(ccos, r.runId), []);
  const result = of(ccos, r.runId, 'CapabilityResult')[0];
  assert.equal(result.data.idempotency_key, 'debit:acct-1:t-77/bank.debit', 'the step key covers its call (required by policy for network effects)');
  // The same intent runs it again (a replay of the business operation): deduplicated, no second debit.
  const again = await ccos.run(SEED_A(false), { intentId: intent });
  assert.equal(again.status, 'completed');
  assert.deepEqual(ops, ['debit acct-1 30']);
  assert.equal(of(ccos, again.runId, 'CapabilityResult')[0].data.deduplicated, true);
});

test('seed 004 example A: the bank reports a wrong balance → the postcondition fails and CreditReversal runs', async (t) => {
  const ccos = node(t);
  const { ops } = bank(ccos);
  const intent = ccos.intents.create('transfer').id;
  const r = await ccos.run(SEED_A(true), { intentId: intent });
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'contract/postcondition-failed');
  assert.deepEqual(ops, ['debit acct-1 30', 'credit acct-1 30']);
  assert.deepEqual(compensated(ccos, r.runId), ['Debit']);
  assert.deepEqual(of(ccos, r.runId, 'CompensationCompleted').map((a) => [a.data.primary, a.data.ok]), [['Debit', true]]);
  assert.deepEqual(of(ccos, r.runId, 'StepStarted').map((a) => a.data.name), ['Debit', 'CreditReversal']);
  assert.deepEqual(of(ccos, r.runId, 'CapabilityResult').map((a) => a.data.idempotency_key), ['debit:acct-1:t-77/bank.debit', 'reversal:acct-1:t-77/bank.credit']);
});

test('seed 004 example A: a precondition failure (insufficient funds) debits nothing and reverses nothing', async (t) => {
  const ccos = node(t);
  const { ops } = bank(ccos);
  const r = await ccos.run(SEED_A(false).replace(':amount 30', ':amount 300'));
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'contract/precondition-failed');
  assert.deepEqual(ops, []);
  assert.deepEqual(compensated(ccos, r.runId), []);
});

const SEED_B = `(let [docs ["q3-report.pdf" "q4-report.pdf"]]
(plan
  ^{:invariant (fn [s s'] (>= (:risk-budget s') 0))
    :resources {:max_cost_usd 25.0}}
  :state {:risk-budget 10}
  :program
  (do
    (step "Analyze" (call :llm.analyze {:docs docs}))
    (step "Notify" (call :notify.slack {:channel "#ops" :msg "done"})))))`;

test('seed 004 example B: a plan invariant with a risk budget is checked at the plan exit', async (t) => {
  const ccos = node(t);
  const seen: unknown[] = [];
  ccos.registerCapability({ id: 'llm.analyze' }, (args) => (seen.push(valueToPlainJson(args[0])), 'analysis'));
  ccos.registerCapability({ id: 'notify.slack' }, (args) => (seen.push(valueToPlainJson(args[0])), true));
  const r = await ccos.run(SEED_B);
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(plain(r), true);
  assert.deepEqual(seen, [{ docs: ['q3-report.pdf', 'q4-report.pdf'] }, { channel: '#ops', msg: 'done' }]);
  const started = of(ccos, r.runId, 'ContractCheckStarted');
  assert.deepEqual(started.map((a) => a.data.phase), ['invariant']);
  assert.equal(started[0].data.args, '[{:risk-budget 10} {:risk-budget 10 :result true}]');
  assert.deepEqual(of(ccos, r.runId, 'ContractCheckCompleted').map((a) => a.data.outcome), ['passed']);
  // The invariant is checked after the last step.
  const types = chain(ccos, r.runId).filter((a) => a.type !== 'CheckpointCreated').map((a) => a.type);
  assert.ok(types.lastIndexOf('StepCompleted') < types.indexOf('ContractCheckStarted'));
  // An exhausted budget fails the invariant.
  const over = await ccos.run(SEED_B.replace(':risk-budget 10', ':risk-budget -1'));
  assert.equal(over.status, 'failed');
  assert.equal(over.error?.code, 'contract/invariant-failed');
});

const SEED_C = (email: string) => `(defn normalize-email
  ^{:pre  (fn [s] (and (string? s) (<= (count s) 254)))
    :post (fn [s s'] (re-matches #".+@.+\\..+" s'))}
  [s] (clojure.string/lower-case (clojure.string/trim s)))

(let [ctx {:email ${email}}]
  (step "CreateUser"
    (call :user.create {:email (normalize-email (:email ctx))})))`;

test('seed 004 example C: function contracts inside a step', async (t) => {
  const ccos = node(t);
  const created: unknown[] = [];
  ccos.registerCapability({ id: 'user.create' }, (args) => (created.push(valueToPlainJson(args[0])), 'user-1'));
  const r = await ccos.run(SEED_C('"  Ada.Lovelace@Example.COM "'));
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(created, [{ email: 'ada.lovelace@example.com' }]);
  const checks = of(ccos, r.runId, 'ContractCheckCompleted');
  assert.deepEqual(checks.map((a) => [a.data.phase, a.data.outcome]), [['pre', 'passed'], ['post', 'passed']]);
  assert.deepEqual(checks.map((a) => a.stepPath), [['CreateUser'], ['CreateUser']], 'the defn checks are recorded inside the step that ran them');
  // A non-string email fails the precondition; a string that is not an address fails the post.
  const pre = await ccos.run(SEED_C('42'));
  assert.equal(pre.error?.code, 'contract/precondition-failed');
  const post = await ccos.run(SEED_C('"not-an-address"'));
  assert.equal(post.error?.code, 'contract/postcondition-failed');
  assert.equal(created.length, 1, 'user.create ran only for the valid address');
});

// =================================================================================================
// 3. Idempotency

test('idempotency: the same key twice → the second run returns the recorded result without calling the provider', async (t) => {
  const ccos = node(t);
  let charges = 0;
  ccos.registerCapability({ id: 'pay.charge', effects: [{ kind: 'network' }] }, () => ++charges * 100);
  const src = `(step "charge" ^{:idempotency {:key "order-42" :scope :plan}} (call :pay.charge {:amount 5}))`;
  const first = await ccos.run(src);
  const second = await ccos.run(src);
  assert.equal(first.status, 'completed');
  assert.equal(second.status, 'completed');
  assert.equal(plain(first), 100);
  assert.equal(plain(second), 100, 'the recorded result');
  assert.equal(charges, 1, 'the provider ran once');
  const res = of(ccos, second.runId, 'CapabilityResult');
  assert.equal(res.length, 1);
  assert.equal(res[0].data.deduplicated, true);
  assert.equal(res[0].data.idempotency_key, 'order-42/pay.charge');
  assert.equal(of(ccos, second.runId, 'CapabilityCall').length, 0, 'no call was made');
  // The store is durable: a new node over the same data dir still knows the key.
  const dataDir = ccos.dataDir;
  const other = openCcos({ dataDir, workspaceRoot: dataDir });
  try {
    other.registerCapability({ id: 'pay.charge', effects: [{ kind: 'network' }] }, () => ++charges * 100);
    const third = await other.run(src);
    assert.equal(plain(third), 100);
    assert.equal(charges, 1);
  } finally {
    other.close();
  }
});

test('idempotency: keys on calls; within one run the second keyed call is deduplicated', async (t) => {
  const ccos = node(t);
  let charges = 0;
  ccos.registerCapability({ id: 'pay.charge' }, () => ++charges);
  const r = await ccos.run(`[^{:idempotency {:key "k1"}} (call :pay.charge {:amount 7}) ^{:idempotency {:key "k1"}} (call :pay.charge {:amount 7})]`);
  assert.deepEqual(plain(r), [1, 1]);
  assert.equal(charges, 1);
});

test('idempotency: the same key with other arguments is a clear error (idempotency-conflict), not a silent reuse', async (t) => {
  const ccos = node(t);
  let charges = 0;
  ccos.registerCapability({ id: 'pay.charge' }, () => ++charges);
  const a = await ccos.run(`(step "A" ^{:idempotency {:key "pay-1" :scope :global}} (call :pay.charge {:amount 5}))`);
  assert.equal(a.status, 'completed');
  // A different plan (so :plan scope would not share the key): :global makes it the same key.
  const b = await ccos.run(`(do :other-plan (step "B" ^{:idempotency {:key "pay-1" :scope :global}} (call :pay.charge {:amount 6})))`);
  assert.equal(b.status, 'failed');
  assert.equal(b.error?.code, 'idempotency-conflict');
  assert.match(b.error!.message, /pay-1.*other arguments/);
  assert.equal(charges, 1, 'nothing ran for the conflicting call');
  const res = of(ccos, b.runId, 'CapabilityResult');
  assert.equal(res[0].data.ok, false);
  assert.equal(res[0].data.deduplicated, undefined, 'not presented as a deduplicated success');
});

test('idempotency: scopes — :plan keys are per plan, :intent per intent, :global shared', async (t) => {
  const ccos = node(t);
  let n = 0;
  ccos.registerCapability({ id: 'svc.op' }, () => ++n);
  const keyed = (scope: string, salt: string) => `(do ${salt} ^{:idempotency {:key "k" :scope ${scope}}} (call :svc.op 1))`;
  // :plan — the same plan shares it; another plan (other source) does not.
  assert.equal(plain(await ccos.run(keyed(':plan', '1'))), 1);
  assert.equal(plain(await ccos.run(keyed(':plan', '1'))), 1);
  assert.equal(plain(await ccos.run(keyed(':plan', '2'))), 2);
  // :intent — other plans of the same intent share it; another intent does not.
  const i1 = ccos.intents.create('one').id;
  const i2 = ccos.intents.create('two').id;
  assert.equal(plain(await ccos.run(keyed(':intent', '3'), { intentId: i1 })), 3);
  assert.equal(plain(await ccos.run(keyed(':intent', '4'), { intentId: i1 })), 3);
  assert.equal(plain(await ccos.run(keyed(':intent', '5'), { intentId: i2 })), 4);
  // :global — everyone shares it.
  assert.equal(plain(await ccos.run(keyed(':global', '6'))), 5);
  assert.equal(plain(await ccos.run(keyed(':global', '7'), { intentId: i2 })), 5);
  assert.equal(n, 5);
});

test('idempotency: a step retry re-issues its keyed call, which is answered from the store, not run again', async (t) => {
  const ccos = node(t);
  let charges = 0;
  let flaky = 0;
  ccos.registerCapability({ id: 'pay.charge' }, () => ++charges);
  ccos.registerCapability({ id: 'svc.flaky' }, () => {
    if (++flaky === 1) throw new Error('transient');
    return 'ok';
  });
  const r = await ccos.run(`(step "s" {:retries {:max 2 :backoff-ms 1}} ^{:idempotency {:key "retry-1"}} (do (call :pay.charge 1) (call :svc.flaky)))`);
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(charges, 1, 'the charge ran once across two attempts');
  assert.equal(flaky, 2);
  assert.equal(of(ccos, r.runId, 'StepRetrying').length, 1);
  assert.deepEqual(of(ccos, r.runId, 'CapabilityResult').filter((a) => a.data.capability === 'pay.charge').map((a) => a.data.deduplicated ?? false), [false, true]);
});

test('idempotency: policy requireIdempotencyFor [network] denies an unkeyed non-idempotent network call and allows a keyed one', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'net.post', effects: [{ kind: 'network' }] }, () => ++calls);
  ccos.registerCapability({ id: 'net.get', effects: [{ kind: 'network' }], idempotent: true }, () => 'page');
  const opts = { requireIdempotencyFor: ['network'] };
  const denied = await ccos.run(`(call :net.post {:x 1})`, opts);
  assert.equal(denied.status, 'failed');
  assert.equal(denied.error?.code, 'idempotency-required');
  assert.equal(calls, 0);
  const decision = of(ccos, denied.runId, 'PolicyDecision');
  assert.deepEqual(decision.map((a) => [a.data.decision, a.data.rule]), [['deny', 'idempotency.required']]);
  const keyed = await ccos.run(`^{:idempotency {:key "post-1"}} (call :net.post {:x 1})`, opts);
  assert.equal(keyed.status, 'completed', JSON.stringify(keyed.error));
  const stepKeyed = await ccos.run(`(step "p" ^{:idempotency {:key "post-2"}} (call :net.post {:x 2}))`, opts);
  assert.equal(stepKeyed.status, 'completed', JSON.stringify(stepKeyed.error));
  assert.equal(calls, 2);
  // An idempotent capability needs no key; without the policy no key is needed either.
  assert.equal((await ccos.run(`(call :net.get)`, opts)).status, 'completed');
  assert.equal((await ccos.run(`(call :net.post {:x 3})`)).status, 'completed');
});

test('idempotency: a timed-out non-idempotent call (outcome unknown) is not retried by :retries; an idempotent one is', async (t) => {
  const ccos = node(t);
  const n = { post: 0, get: 0 };
  ccos.registerCapability({ id: 'slow.post' }, async () => (n.post++, await sleep(300), 1));
  ccos.registerCapability({ id: 'slow.get', idempotent: true }, async () => (n.get++, await sleep(300), 1));
  const post = await ccos.run(`(step "s" {:retries {:max 2 :backoff-ms 1} :timeout-ms 50} (call :slow.post))`);
  assert.equal(post.status, 'failed');
  assert.equal(post.error?.code, 'timeout');
  assert.equal(n.post, 1, 'run once, never again');
  assert.equal(of(ccos, post.runId, 'StepRetrying').length, 0, 'no StepRetrying');
  assert.match(post.error!.hint ?? '', /outcome is unknown/);
  const get = await ccos.run(`(step "s" {:retries {:max 2 :backoff-ms 1} :timeout-ms 50} (call :slow.get))`);
  assert.equal(get.status, 'failed');
  assert.equal(n.get, 3, 'the idempotent call was retried twice');
  assert.equal(of(ccos, get.runId, 'StepRetrying').length, 2);
});

// =================================================================================================
// 4. step.parallel

test('step.parallel: 10 branches each calling a 100 ms capability finish in about 100 ms; results in branch order', async (t) => {
  const ccos = node(t);
  let inFlight = 0;
  let peak = 0;
  // Later branches answer sooner, so the completion order is the reverse of the branch order.
  ccos.registerCapability({ id: 'svc.sleep' }, async (args) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await sleep(100 - 4 * Number(args[0]));
    inFlight--;
    return args[0];
  });
  await ccos.run(`(call :svc.sleep 0)`); // warm up
  const started = performance.now();
  const r = await ccos.run(`(step.parallel ${Array.from({ length: 10 }, (_, i) => `(step "b${i}" (call :svc.sleep ${i}))`).join(' ')})`);
  const ms = performance.now() - started;
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(plain(r), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(peak, 10, 'all ten calls were in flight at once');
  assert.ok(ms < 400, `10 × 100 ms in parallel took ${Math.round(ms)} ms`);
});

test('step.parallel: a branch does not wait for a sibling\'s unrelated slow call before its next call', async (t) => {
  const ccos = node(t);
  ccos.registerCapability({ id: 'svc.sleep' }, async (args) => (await sleep(Number(args[0])), args[0]));
  const started = performance.now();
  const r = await ccos.run(`(step.parallel (do (call :svc.sleep 100) (call :svc.sleep 100) (call :svc.sleep 100) (call :svc.sleep 100) :a) (call :svc.sleep 400))`);
  const ms = performance.now() - started;
  assert.deepEqual(plain(r), ['a', 400]);
  assert.ok(ms < 650, `branches ran concurrently (${Math.round(ms)} ms, expected ~400)`);
});

/** A branch of two compensable steps; `delay` ms on each primary. */
const branch = (name: string, delay: number): string =>
  `(do (step.with-compensation (step "${name}-1" (call :svc.slowdo "${name}-1" ${delay})) (step "undo ${name}-1" (call :svc.undo "${name}-1")))
       (step.with-compensation (step "${name}-2" (call :svc.slowdo "${name}-2" ${delay})) (step "undo ${name}-2" (call :svc.undo "${name}-2"))))`;

function parallelServices(ccos: Ccos): { log: string[] } {
  const { log } = services(ccos);
  ccos.registerCapability({ id: 'svc.slowdo' }, async (args) => {
    log.push(`do ${String(args[0])}`);
    await sleep(Number(args[1]));
    return args[0];
  });
  ccos.registerCapability({ id: 'svc.failafter' }, async (args) => {
    await sleep(Number(args[0]));
    log.push('fail');
    throw new Error('branch failed');
  });
  return { log };
}

test('step.parallel: a failing branch (default :await) lets siblings finish, then every completed branch is compensated', async (t) => {
  const ccos = node(t);
  const { log } = parallelServices(ccos);
  const r = await ccos.run(`(step.parallel ${branch('a', 150)} (call :svc.failafter 20) ${branch('c', 5)})`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'provider-failed', 'the join raises the failing branch\'s error');
  assert.ok(log.includes('do a-2') && log.includes('do c-2'), `siblings finished their work: ${JSON.stringify(log)}`);
  assert.ok(log.indexOf('do a-2') > log.indexOf('fail'), 'a sibling went on after the failure');
  const comps = compensated(ccos, r.runId);
  assert.deepEqual([...comps].sort(), ['a-1', 'a-2', 'c-1', 'c-2']);
  // Each branch's own stack unwinds newest first; no cross-branch order is promised.
  assert.ok(comps.indexOf('a-2') < comps.indexOf('a-1'));
  assert.ok(comps.indexOf('c-2') < comps.indexOf('c-1'));
  assert.ok(of(ccos, r.runId, 'CompensationCompleted').every((a) => a.data.ok === true));
});

test('step.parallel: a branch that fails after its own steps completed has them compensated too (independent stacks)', async (t) => {
  const ccos = node(t);
  const { log } = parallelServices(ccos);
  const r = await ccos.run(`(step.parallel (do ${sagaStep('x')} (call :svc.fail)) ${sagaStep('y')})`);
  assert.equal(r.status, 'failed');
  assert.deepEqual([...compensated(ccos, r.runId)].sort(), ['sx', 'sy']);
  assert.equal(log.filter((l) => l.startsWith('undo')).length, 2);
  // A branch that handles its own failure keeps its sibling's work.
  log.length = 0;
  const ok = await ccos.run(`(step.parallel (try (do ${sagaStep('p')} (call :svc.fail)) (catch :error e :recovered)) ${sagaStep('q')})`);
  assert.equal(ok.status, 'completed');
  assert.deepEqual(plain(ok), ['recovered', 'q']);
  assert.deepEqual(compensated(ccos, ok.runId), [], 'nothing escaped, so nothing is undone');
});

test('step.parallel ^{:on-branch-fail :cancel}: a sibling blocked on a slow call gets no further call after the failure', async (t) => {
  const ccos = node(t);
  const { log } = parallelServices(ccos);
  const r = await ccos.run(`^{:on-branch-fail :cancel} (step.parallel ${branch('slow', 300)} (step "f" (call :svc.failafter 30)))`);
  assert.equal(r.status, 'failed');
  assert.ok(log.includes('do slow-1'), `the slow sibling had started its first call: ${JSON.stringify(log)}`);
  assert.ok(!log.includes('do slow-2'), `the slow sibling was cancelled before its second call: ${JSON.stringify(log)}`);
  // Its first step completed before the cancel reached it: it is compensated.
  assert.deepEqual(compensated(ccos, r.runId), ['slow-1']);
  // With the default policy the same sibling goes on to its second call.
  log.length = 0;
  const awaited = await ccos.run(`(step.parallel ${branch('slow', 100)} (step "f" (call :svc.failafter 30)))`);
  assert.equal(awaited.status, 'failed');
  assert.ok(log.includes('do slow-2'), JSON.stringify(log));
  assert.deepEqual(compensated(ccos, awaited.runId), ['slow-2', 'slow-1']);
});

test('step.parallel :cancel: every primary whose step completed is compensated, whatever the branch order', async (t) => {
  const ccos = node(t);
  const { log } = parallelServices(ccos);
  // The fast branch comes after the failing one in branch order.
  const r = await ccos.run(`^{:on-branch-fail :cancel} (step.parallel ${branch('slow', 300)} (step "f" (call :svc.failafter 30)) ${branch('fast', 1)})`);
  assert.equal(r.status, 'failed');
  const completed = of(ccos, r.runId, 'StepCompleted').map((a) => a.data.name as string).filter((n) => !n.startsWith('undo'));
  const done = log.filter((l) => l.startsWith('do ')).map((l) => l.slice(3));
  assert.deepEqual([...completed].sort(), [...done].sort(), 'every effect that ran is a completed step');
  assert.deepEqual([...compensated(ccos, r.runId)].sort(), [...completed].sort(), `completed ${JSON.stringify(completed)}, compensated ${JSON.stringify(compensated(ccos, r.runId))}`);
});

test('step.parallel :cancel: the run reports the failing branch\'s error, not a sibling\'s cancellation', async (t) => {
  const ccos = node(t);
  parallelServices(ccos);
  const r = await ccos.run(`^{:on-branch-fail :cancel} (step.parallel ${branch('slow', 300)} (call :svc.failafter 30))`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'provider-failed', `got ${r.error?.code}: ${r.error?.message}`);
});

test('step.parallel: :on-branch-fail takes only :await or :cancel (compile error)', () => {
  assert.throws(() => createRuntime().load(`^{:on-branch-fail :explode} (step.parallel 1 2)`, '<t>'), (e: RtfsError) => e.code === 'compile' && /:on-branch-fail/.test(e.message));
});

// =================================================================================================
// 7. Docs

/** The repository root (works from test/ and dist/test/). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

test('docs/contracts-and-sagas.md: exists, covers the topics, and every ```clojure block compiles (or fails as it says)', () => {
  const md = fs.readFileSync(path.join(repoRoot(), 'docs', 'contracts-and-sagas.md'), 'utf8');
  for (const topic of ['step.with-compensation', 'ContractCheckStarted', 'CompensationStarted', 'compensation-failed', ':idempotency', ':on-branch-fail', 'idempotency-conflict', 'ccos cancel', 'not guaranteed']) {
    assert.ok(md.includes(topic), `the doc mentions ${topic}`);
  }
  const blocks = [...md.matchAll(/```clojure\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 8, `worked examples: ${blocks.length}`);
  for (const b of blocks) {
    const expectError = /^;; compile error/m.test(b);
    let err: unknown;
    try {
      createRuntime().load(b, 'doc');
    } catch (e) {
      err = e;
    }
    if (expectError) assert.ok(err instanceof RtfsError && err.code === 'compile', `block should not compile:\n${b}`);
    else assert.equal(err, undefined, `block should compile (${String(err)}):\n${b}`);
  }
});
