/**
 * Governance benchmarks, run by `npm run bench` at the end (and alone with
 * `node dist/bench/governance.js`):
 *
 * 1. Per-call decision time of `decide()` against a 100-rule constitution of mixed kinds
 *    (capability globs, effects, risk, labels, regions, time windows with a time zone, rates,
 *    `:when` predicates, approvals), with the matching rule near the end so that every rule is
 *    looked at. Target ≤ 20 µs per decision.
 * 2. Label-propagation overhead: the RTFS benchmark programs (as in bench/run.ts) run with labels
 *    active and their input a `Labeled` value, against the same programs unlabeled. Target ≤ 1.5×
 *    of unlabeled. Each program is a pure function called with the labeled input, so the call is a
 *    label region (src/rtfs/machine.ts): it runs on the plain input, on the fast path's labels-mode
 *    variant, and its result is labeled :pii — which the bench checks. Reported both against the
 *    default machine (fast path on) and against the interpreter alone (fast path off).
 *
 * Timing as in bench/timing.ts: warm, then the median of timed repetitions, round-robin. Results are
 * checked; a wrong result counts as a failure, a missed target does not.
 */
import { pathToFileURL } from 'node:url';
import { decide, parseConstitution, type CallFacts } from '../src/ccos/governance/constitution.js';
import type { CapabilityManifest } from '../src/ccos/capabilities/types.js';
import { createRuntime, Labeled, unlabel, type Closure, type Value } from '../src/rtfs/index.js';
import { benchInterleaved, type Stats } from './timing.js';

/** Median ms per run of each function, timed round-robin. */
function interleaved<K extends string>(fns: Record<K, () => unknown>, maxReps = 11, budgetMs = 6000): Record<K, number> {
  const stats = benchInterleaved(fns, { warmup: 3, maxReps, budgetMs });
  return Object.fromEntries(Object.entries<Stats>(stats).map(([k, st]) => [k, st.median])) as Record<K, number>;
}

// -------------------------------------------------------------------------------------------------
// 1. Decisions against a 100-rule constitution

/** 99 rules of mixed kinds that do not match the benchmark call, then the one that does. */
export function hundredRules(): string {
  const rules: string[] = [];
  for (let i = 0; i < 99; i++) {
    switch (i % 9) {
      case 0:
        rules.push(`{:id :cap-${i} :match {:capability "svc${i}.*"} :action :deny :reason "svc${i} is retired"}`);
        break;
      case 1:
        rules.push(`{:id :eff-${i} :match {:capability "x${i}.*" :effects [:network :filesystem]} :action :require-approval :approvals 1 :roles [:ops]}`);
        break;
      case 2:
        rules.push(`{:id :risk-${i} :match {:risk [:critical] :capability "r${i}.*"} :action :require-approval :quorum [:arbiter.strategy :arbiter.ethics :arbiter.risk]}`);
        break;
      case 3:
        rules.push(`{:id :lab-${i} :match {:labels [:pii :secret${i}]} :action :deny :reason "no PII"}`);
        break;
      case 4:
        rules.push(`{:id :reg-${i} :match {:regions ["cn-north-${i}"]} :action :deny :reason "region"}`);
        break;
      case 5:
        rules.push(`{:id :win-${i} :match {:capability "trade${i}.*"} :window {:days [:mon :tue :wed :thu :fri] :from "09:30" :to "16:00" :tz "America/New_York"} :outside :deny :action :allow}`);
        break;
      case 6:
        rules.push(`{:id :rate-${i} :match {:capability "api${i}.*"} :rate {:max 100 :per-seconds 60} :action :allow}`);
        break;
      case 7:
        rules.push(`{:id :when-${i} :match {:capability "pay${i}.*"} :when (fn [call] (> (:amount (first (:args call))) 1000)) :action :deny :reason "big"}`);
        break;
      default:
        rules.push(`{:id :idem-${i} :match {:capability "db${i}.write*" :risk [:high]} :action :require-idempotency}`);
    }
  }
  rules.push('{:id :reports-allowed :match {:capability "reports.*" :effects [:network]} :action :allow :reason "reports may be fetched"}');
  return `{:id "bench" :version "1" :default :deny
 :roles {:ops ["ann"] :arbiter.strategy ["sam"] :arbiter.ethics ["eve"] :arbiter.risk ["rita"]}
 :rules [${rules.join('\n  ')}]}`;
}

function manifest(id: string): CapabilityManifest {
  return { id, version: '1', description: '', effects: [{ kind: 'network' }], risk: 'medium', idempotent: false, deterministic: false, region: 'eu-west-1', provider: { kind: 'local' } };
}

function benchDecisions(): { usPerDecision: number; usWithPredicate: number; rules: number; failures: number } {
  let failures = 0;
  const c = parseConstitution(hundredRules(), 'bench-constitution.rtfs');
  const facts: CallFacts = { capability: 'reports.weekly', manifest: manifest('reports.weekly'), args: [], labels: new Set(['internal']), stepPath: ['fetch'], now: new Date() };
  const v = decide(c, facts, () => 0);
  if (v.decision !== 'allow' || v.rule !== 'reports-allowed') {
    failures++;
    console.error(`WRONG RESULT: governance decide: got ${v.decision} by ${v.rule}, want allow by reports-allowed`);
  }
  // A second constitution: the same rules with a :when predicate on the matching rule (the
  // predicate runs in a pure machine under fuel at each decision).
  const withPred = parseConstitution(hundredRules().replace(':id :reports-allowed :match {:capability "reports.*" :effects [:network]}', ':id :reports-allowed :match {:capability "reports.*" :effects [:network]} :when (fn [call] (= (:region call) "eu-west-1"))'), 'bench-constitution-when.rtfs');
  const vp = decide(withPred, facts, () => 0);
  if (vp.decision !== 'allow') {
    failures++;
    console.error(`WRONG RESULT: governance decide with :when: got ${vp.decision} by ${vp.rule} (${vp.rationale})`);
  }
  const N = 20_000;
  const loop = (cc: typeof c) => (): void => {
    for (let i = 0; i < N; i++) decide(cc, facts, () => 0);
  };
  const t = interleaved({ plain: loop(c), when: loop(withPred) }, 9, 4000);
  return { usPerDecision: (t.plain * 1000) / N, usWithPredicate: (t.when * 1000) / N, rules: c.rules.length, failures };
}

// -------------------------------------------------------------------------------------------------
// 2. Label propagation

const SOURCE = String.raw`
(defn fib [n] (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
(defn sum-to [n] (loop [i 0 acc 0] (if (< i n) (recur (inc i) (+ acc i)) acc)))
(defn build-map [n] (reduce (fn [m i] (assoc m i (* i 2))) {} (range n)))
(defn build-str [n] (apply str (map str (range n))))
`;

interface LabelRow {
  name: string;
  label: string;
  fast: number;
  interp: number;
  labeled: number;
  resultLabels: string;
}

function benchLabels(): { rows: LabelRow[]; failures: number } {
  let failures = 0;
  const rt = createRuntime();
  rt.runToCompletion(rt.load(SOURCE, 'bench-labels.rtfs').main);
  const fn = (name: string): Closure => rt.findCell(name)!.value as Closure;
  const digest = (v: Value): string => {
    const u = unlabel(v) as unknown;
    if (typeof u === 'number' || typeof u === 'string') return String(u).length > 64 ? `${String(u).length}:${String(u).slice(0, 16)}` : String(u);
    const m = u as { size: number; get(k: number): unknown };
    return `${m.size}:${String(m.get(0))}:${String(m.get(m.size - 1))}`;
  };
  const workloads = [
    { name: 'fib', label: 'fib 25 (naive recursion)', fn: 'fib', arg: 25 },
    { name: 'loop', label: 'loop/recur sum 0..1000000', fn: 'sum-to', arg: 1_000_000 },
    { name: 'map', label: 'reduce/assoc 100k-entry map', fn: 'build-map', arg: 100_000 },
    { name: 'str', label: '(apply str (map str (range 20k)))', fn: 'build-str', arg: 20_000 },
  ];
  const rows: LabelRow[] = [];
  for (const w of workloads) {
    const c = fn(w.fn);
    const interp = (): Value => {
      const m = rt.machine();
      m.jit = false;
      m.start(c, [w.arg]);
      const out = m.run();
      if (out.status !== 'complete') throw new Error(`${w.name}: interpreter ended with ${out.status}`);
      return out.value;
    };
    const labeled = (): Value => {
      const m = rt.machine();
      m.labelsActive = true; // as after a host answer carrying labels
      m.start(c, [new Labeled(w.arg, new Set(['pii']))]);
      const out = m.run();
      if (out.status !== 'complete') throw new Error(`${w.name}: labeled run ended with ${out.status}`);
      return out.value;
    };
    const want = digest(rt.runToCompletion(c, [w.arg]));
    const got = labeled();
    const resultLabels = got instanceof Labeled ? [...got.labels].sort().map((l) => `:${l}`).join(' ') : 'none';
    if (digest(got) !== want || digest(interp()) !== want || resultLabels !== ':pii') {
      failures++;
      console.error(`WRONG RESULT: label bench ${w.name}: labeled ${digest(got)} with labels ${resultLabels}, want ${want} with :pii`);
    }
    const t = interleaved({ fast: () => rt.runToCompletion(c, [w.arg]), interp, labeled });
    rows.push({ name: w.name, label: w.label, fast: t.fast, interp: t.interp, labeled: t.labeled, resultLabels });
    console.log(`  measured labels: ${w.name}`);
  }
  return { rows, failures };
}

// -------------------------------------------------------------------------------------------------

const fmt = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

/** Runs the governance section; returns the number of wrong results. */
export async function runGovernanceBench(): Promise<number> {
  console.log('\nGovernance benchmarks');
  const d = benchDecisions();
  console.log(`  measured decisions (${d.rules} rules)`);
  const l = benchLabels();
  console.log('');
  console.log(`decide() with a ${d.rules}-rule constitution (matching rule last): ${d.usPerDecision.toFixed(2)} µs per decision`);
  console.log(`  same, the matching rule with a :when predicate (pure RTFS under fuel): ${d.usWithPredicate.toFixed(2)} µs per decision`);
  console.log('');
  const head = ['workload', 'unlabeled ms', 'interp ms', 'labeled ms', 'lab/unlab', 'lab/interp', 'result'];
  const widths = [34, 12, 10, 11, 10, 11, 9];
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join(' '));
  for (const r of l.rows) {
    console.log(line([r.label, fmt(r.fast), fmt(r.interp), fmt(r.labeled), `${(r.labeled / r.fast).toFixed(2)}×`, `${(r.labeled / r.interp).toFixed(2)}×`, r.resultLabels]));
  }
  console.log('(unlabeled = default machine, fast path on; interp = fast path off; labeled = input labeled :pii, labels active, default machine)');
  console.log('(result: the labels the labeled run\'s result carries — a pure call\'s result carries its arguments\' labels, the loop\'s sum too: its bound decides it)');
  console.log('\nTargets (governance)');
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  console.log(`  decision: ${d.usPerDecision.toFixed(2)} µs with ${d.rules} rules (target ≤ 20 µs) — ${verdict(d.usPerDecision <= 20)}`);
  for (const r of l.rows) {
    const ratio = r.labeled / r.fast;
    console.log(`  labels ${r.name}: ${ratio.toFixed(2)}× unlabeled (target ≤ 1.5×) — ${verdict(ratio <= 1.5)}; ${(r.labeled / r.interp).toFixed(2)}× the interpreter`);
  }
  return d.failures + l.failures;
}

// Run alone: node dist/bench/governance.js
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runGovernanceBench().then(
    (f) => process.exit(f > 0 ? 1 : 0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
