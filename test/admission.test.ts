// Admission and dry-run, library level, over real SQLite data dirs: the static report of a plan
// (capabilities with the place of each call, effects, risk, cost; compensation required for high
// risk outside a saga, contracts for critical, idempotency keys recommended for network effects;
// unknown capabilities; the constitution's certain and conditional denials and approvals, plan
// and step :policy; calls through top-level functions; compile errors; the budget), and the dry
// run (simulators declared in RTFS, values from output schemas, predicted cost and latency, the
// approvals that would be requested, budget denials; nothing written to the real data dir).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openCcos, type Ccos } from '../src/ccos/index.js';
import { admit, type AdmissionReport } from '../src/ccos/governance/admission.js';
import { dryRun, valueFromOutputSchema } from '../src/ccos/governance/dry-run.js';
import { prStr } from '../src/rtfs/index.js';

type T = { after: (fn: () => void) => void };

function tempDir(t: T): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-admission-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const CAPS = `
(capability :billing.refund {:description "refund" :risk :high :idempotent false :cost {:usd-per-call 0.5}
                             :effects [[:network {:domains ["pay.example"]}]] :input [:map [:cents :int]] :output :keyword
                             :latency-ms 120}
  (fn [x] :refunded))
(capability :billing.unrefund {:description "undo a refund" :risk :medium :input [:map [:cents :int]] :output :keyword}
  (fn [x] :unrefunded))
(capability :billing.quote {:description "a quote" :risk :high :idempotent true :cost 1 :output [:map [:total :int] [:currency [:enum "EUR" "USD"]]]
                            :simulate (fn [x] {:total 42 :currency "USD"}) :latency-ms 30}
  (fn [x] {:total 7 :currency "EUR"}))
(capability :ops.restart {:description "restart a service" :risk :critical :idempotent true :cost 2 :input :string :output :boolean}
  (fn [s] true))
(capability :net.post {:description "post" :risk :low :effects [:network] :output [:map [:id :string] [:n [:and :int [:> 5]]]]}
  (fn [x] {:id "real" :n 9}))
`;

/** A node over a temp dir with the test capabilities registered from RTFS. */
function node(t: T): Ccos {
  const dir = tempDir(t);
  const ccos = openCcos({ dataDir: path.join(dir, 'data'), workspaceRoot: dir });
  t.after(() => {
    try {
      ccos.close();
    } catch {
      /* closed */
    }
  });
  const caps = path.join(dir, 'caps.rtfs');
  fs.writeFileSync(caps, CAPS);
  ccos.addRtfsCapabilities(caps);
  return ccos;
}

function constitute(ccos: Ccos, text: string): void {
  const file = path.join(ccos.dataDir, `constitution-${Math.random().toString(36).slice(2)}.rtfs`);
  fs.writeFileSync(file, text);
  assert.equal(ccos.governance.load(file).status, 'active');
}

const codes = (r: AdmissionReport, which: 'errors' | 'warnings' = 'errors'): string[] => r[which].map((e) => `${e.code}@${e.line}:${e.col}`);

test('a high-risk call outside a saga is an error naming the rule and file:line:col; inside the primary it is admitted', (t) => {
  const ccos = node(t);
  const outside = admit(ccos, '(step "pay"\n  (call :billing.refund {:cents 5}))', 'pay.rtfs');
  assert.equal(outside.ok, false);
  const e = outside.errors.find((x) => x.code === 'compensation-required');
  assert.ok(e, JSON.stringify(outside.errors));
  assert.equal(e.rule, 'admission.compensation');
  assert.deepEqual([e.file, e.line, e.col, e.capability], ['pay.rtfs', 2, 3, 'billing.refund']);
  assert.match(e.message, /:high risk/);
  const saga = admit(ccos, '(step.with-compensation\n  (step "pay" (call :billing.refund {:cents 5}))\n  (step "undo" (call :billing.unrefund {:cents 5})))', 'saga.rtfs');
  assert.deepEqual(saga.errors, []);
  assert.equal(saga.ok, true);
  // Idempotent high-risk capabilities need no compensation.
  assert.deepEqual(codes(admit(ccos, '(call :billing.quote {})', 'q.rtfs')), []);
  // A high-risk call in the compensation itself is the undo: no error either.
  const undo = admit(ccos, '(step.with-compensation (step "a" (call :billing.unrefund {:cents 1})) (step "b" (call :billing.refund {:cents 1})))', 'u.rtfs');
  assert.deepEqual(codes(undo), []);
});

test('a critical capability needs :pre or :post contracts on an enclosing step', (t) => {
  const ccos = node(t);
  const bare = admit(ccos, '(step "restart" (call :ops.restart "db"))', 'r.rtfs');
  assert.deepEqual(codes(bare), ['contracts-required@1:17']);
  assert.equal(bare.errors[0].rule, 'admission.contracts');
  const pre = admit(ccos, '(step ^{:pre (fn [ctx] true)} "restart" (call :ops.restart "db"))', 'r.rtfs');
  assert.deepEqual(codes(pre), []);
  const outerPost = admit(ccos, '(step "outer" ^{:post (fn [b a] true)} (step "inner" (call :ops.restart "db")))', 'r.rtfs');
  assert.deepEqual(codes(outerPost), []);
});

test('an unknown capability is an error at its position; the capabilities table lists every call site', (t) => {
  const ccos = node(t);
  const r = admit(ccos, '(do\n  (call :ccos.echo 1)\n  (step "x" (call :no.such.cap 2))\n  (call :ccos.echo 3))', 'u.rtfs');
  assert.deepEqual(codes(r), ['unknown-capability@3:13']);
  assert.equal(r.errors[0].rule, 'registry.unknown');
  const echo = r.capabilities.find((c) => c.id === 'ccos.echo')!;
  assert.equal(echo.count, 2);
  assert.deepEqual([echo.line, echo.col], [2, 3]);
  const none = r.capabilities.find((c) => c.id === 'no.such.cap')!;
  assert.equal(none.known, false);
  assert.deepEqual(none.sites, [{ line: 3, col: 13, steps: ['x'] }]);
});

test('effects, risk, cost and the budget come from the manifests and the plan :resources', (t) => {
  const ccos = node(t);
  const src = `(plan ^{:resources {:max_cost_usd 1 :max_calls 10}} :program
  (step.with-compensation (step "pay" (call :billing.refund {:cents 1})) (step "undo" (call :billing.unrefund {:cents 1}))))`;
  const r = admit(ccos, src, 'b.rtfs');
  const refund = r.capabilities.find((c) => c.id === 'billing.refund')!;
  assert.deepEqual(refund.effects, ['network']);
  assert.deepEqual(refund.effectDetails, [{ domains: ['pay.example'], kind: 'network' }]);
  assert.equal(refund.risk, 'high');
  assert.equal(refund.costUsd, 0.5);
  assert.equal(r.estimatedCostUsd, 0.5);
  assert.deepEqual(r.budget, { max_cost_usd: 1, max_calls: 10 });
  // Network, not idempotent, no key: a warning (not an error); a key silences it.
  assert.deepEqual(codes(r, 'warnings'), ['idempotency-recommended@2:39']);
  const keyed = admit(ccos, src.replace('(step "pay"', '(step ^{:idempotency {:key "r-1"}} "pay"'), 'b.rtfs');
  assert.deepEqual(codes(keyed, 'warnings'), []);
  // Over the budget (each call site once): a warning naming budget.resources.
  const over = admit(ccos, '(plan :resources {:max_cost_usd 2} :program (do (call :billing.quote 1) (call :ops.restart "x")))', 'o.rtfs');
  assert.ok(over.warnings.some((w) => w.code === 'budget-estimate' && w.rule === 'budget.resources'), JSON.stringify(over.warnings));
  assert.equal(over.estimatedCostUsd, 3);
});

test('the constitution: certain denials are errors, approvals are listed, :when rules are conditional', (t) => {
  const ccos = node(t);
  constitute(
    ccos,
    `{:id "t" :default :allow :roles {:finance ["alice"] :security ["bob"]}
      :rules [{:id "no-restart" :match {:capability "ops.*"} :action :deny :reason "no restarts today"}
              {:id "refunds" :match {:capability "billing.refund"} :action :require-approval :quorum [:finance :security]}
              {:id "big-quotes" :match {:capability "billing.quote"} :action :require-approval :approvals 1 :roles [:finance]
               :when (fn [call] (> (:total (first (:args call))) 100))}
              {:id "posts" :match {:effects [:network] :risk [:low]} :action :deny :when (fn [call] true)}]}`,
  );
  const src = `(plan ^{:policy {:requires_approvals 2}} :program
  (do (step ^{:pre (fn [c] true)} "restart" (call :ops.restart "db"))
      (step.with-compensation (step "pay" (call :billing.refund {:cents 1})) (step "undo" (call :billing.unrefund {:cents 1})))
      (call :billing.quote {:total 5})
      (call :net.post {})))`;
  const r = admit(ccos, src, 'c.rtfs');
  const denied = r.errors.find((e) => e.code === 'policy-denied')!;
  assert.equal(denied.rule, 'no-restart');
  assert.deepEqual([denied.line, denied.col], [2, 45]);
  assert.match(denied.message, /no restarts today/);
  assert.deepEqual(
    r.denials.map((d) => [d.capability, d.rule, d.conditional]),
    [
      ['ops.restart', 'no-restart', false],
      ['net.post', 'posts', true],
    ],
  );
  assert.ok(r.warnings.some((w) => w.code === 'policy-may-deny' && w.rule === 'posts'));
  const approvals = r.approvals.map((a) => [a.capability, a.rule, a.needs, a.conditional]);
  assert.deepEqual(approvals, [
    ['billing.refund', 'refunds', 'one from each of :finance :security', false],
    ['billing.quote', 'big-quotes', '1 approval from :finance', true],
    [null, 'plan.policy', '2 approvals', false],
  ]);
  assert.equal(r.constitution?.id, 't');
});

test('calls inside top-level functions are judged where the plan names the function', (t) => {
  const ccos = node(t);
  const fn = '(defn refund [c] (call :billing.refund {:cents c}))\n';
  const inside = admit(ccos, `${fn}(step.with-compensation (step "pay" (refund 5)) (step "undo" (call :billing.unrefund {:cents 5})))`, 'f.rtfs');
  assert.deepEqual(codes(inside), []);
  const outside = admit(ccos, `${fn}(step "pay" (mapv refund [1 2]))`, 'f.rtfs');
  assert.deepEqual(codes(outside), ['compensation-required@1:18']);
  assert.match(outside.errors[0].message, /through refund/);
  assert.deepEqual(outside.capabilities.find((c) => c.id === 'billing.refund')!.sites, [{ line: 1, col: 18, steps: ['pay'] }]);
  // A function the plan never names: still found by the compiler, judged with a warning only.
  const unnamed = admit(ccos, `${fn}(call :ccos.echo 1)`, 'f.rtfs');
  assert.deepEqual(codes(unnamed), []);
  assert.ok(unnamed.warnings.some((w) => w.code === 'compensation-required'), JSON.stringify(unnamed.warnings));
});

test('compile errors are reported as rtfs.compile; the run preamble names (input, context) are known', (t) => {
  const ccos = node(t);
  const ok = admit(ccos, '(call :ccos.echo [(:n input) (:run-id context)])', 'i.rtfs');
  assert.deepEqual(ok.errors, []);
  const bad = admit(ccos, '(call :ccos.echo (undefined-fn 1))', 'i.rtfs');
  assert.equal(bad.ok, false);
  assert.equal(bad.errors[0].rule, 'rtfs.compile');
  assert.equal(bad.errors[0].code, 'unbound-symbol');
  const syntax = admit(ccos, '(call :ccos.echo', 's.rtfs');
  assert.equal(syntax.ok, false);
  assert.equal(syntax.errors[0].rule, 'rtfs.compile');
});

test('admission writes nothing', (t) => {
  const ccos = node(t);
  const before = ccos.chain.list().length;
  admit(ccos, '(step "pay" (call :billing.refund {:cents 5}))', 'p.rtfs');
  assert.equal(ccos.chain.list().length, before);
  assert.equal(ccos.runs().length, 0);
});

test('values generated from output schemas match them', () => {
  const m = (output: string) => ({ id: 'x', version: '1', description: '', effects: [], risk: 'low' as const, idempotent: false, deterministic: false, provider: { kind: 'local' as const }, output: { rtfs: output } });
  assert.equal(prStr(valueFromOutputSchema(m('[:map [:a :int] [:b :string] [:c {:optional true} :int] [:d [:vector :int]] [:e [:enum :x :y]] [:f :float] [:g :keyword]]'))), '{:a 0 :b "sim" :d [] :e :x :f 0.0 :g :sim}');
  assert.equal(prStr(valueFromOutputSchema(m('[:and :int [:> 5]]'))), '10');
  assert.equal(prStr(valueFromOutputSchema({ ...m(':int'), output: { jsonSchema: { type: 'object', required: ['ok'], properties: { ok: { type: 'boolean' } } } } })), '{:ok false}');
  const { output: _o, ...none } = m(':int');
  assert.equal(valueFromOutputSchema(none), null);
});

test('dry run: simulators and schemas answer, cost and latency are predicted, approvals noted, the real data dir untouched', async (t) => {
  const ccos = node(t);
  constitute(ccos, `{:id "t" :default :allow :roles {:finance ["alice"]} :rules [{:id "refunds" :match {:capability "billing.refund"} :action :require-approval :approvals 1 :roles [:finance]}]}`);
  const before = ccos.chain.list().length;
  const src = `(plan ^{:resources {:max_cost_usd 5}} :program
  (let [q (step "quote" (call :billing.quote {}))
        r (step.with-compensation (step "pay" (call :billing.refund {:cents (:total q)})) (step "undo" (call :billing.unrefund {:cents 1})))
        p (call :net.post {})
        n (call :ccos.state.counter.inc "n")
        a (call :ccos.user.ask "go?")]
    [q r p n a]))`;
  const r = await dryRun(ccos, src, 'd.rtfs');
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(r.ok, true);
  assert.equal(r.value, '[{:total 42 :currency "USD"} :sim {:id "sim" :n 10} 1 "sim"]');
  assert.equal(r.predictedCostUsd, 1.5);
  assert.equal(r.predictedLatencyMs, 150);
  assert.deepEqual(r.budget, { max_cost_usd: 5, withinBudget: true });
  assert.deepEqual(
    r.calls.map((c) => [c.capability, c.simulatedBy, c.costUsd]),
    [
      ['billing.quote', 'simulator', 1],
      ['billing.refund', 'schema', 0.5],
      ['net.post', 'schema', 0],
      ['ccos.state.counter.inc', 'sandbox', 0],
      ['ccos.user.ask', 'answer', 0],
    ],
  );
  assert.equal(r.calls[1].args, '[{:cents 42}]');
  assert.deepEqual(r.approvals.map((a) => [a.capability, a.rule, a.needs, a.step]), [['billing.refund', 'refunds', '1 approval from :finance', ['pay']]]);
  assert.deepEqual(r.denials, []);
  // Nothing reached the real node.
  assert.equal(ccos.chain.list().length, before);
  assert.equal(ccos.runs().length, 0);
  assert.equal(ccos.governance.approvals.list().length, 0);
  assert.equal(ccos.verifyChain().ok, true);
});

test('dry run: a budget the plan would exceed is reported as the denial the gate would make', async (t) => {
  const ccos = node(t);
  const src = `(plan ^{:resources {:max_cost_usd 2}} :program
  (do (call :billing.quote {}) (call :billing.quote {}) (call :billing.quote {})))`;
  const r = await dryRun(ccos, src, 'b.rtfs');
  assert.equal(r.status, 'failed');
  assert.equal(r.ok, false);
  assert.equal(r.error?.code, 'budget-exceeded');
  assert.deepEqual(r.denials.map((d) => [d.capability, d.rule]), [['billing.quote', 'budget.resources']]);
  assert.match(r.denials[0].rationale, /budget of \$2/);
  assert.equal(r.predictedCostUsd, 2);
  assert.equal(r.budget.withinBudget, false);
});
