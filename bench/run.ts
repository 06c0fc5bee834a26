/**
 * `npm run bench`: RTFS against plain JavaScript and nbb (ClojureScript on Node, interpreted by
 * SCI), plus the cost of the host boundary (suspend/resume) and of a JSON checkpoint; then the
 * CCOS section (bench/ccos.ts): governed calls, pause → resume and chain verification against
 * LangGraph JS.
 *
 * Everything runs in one process, warm: each measurement runs at least 5 times (and ~300 ms) untimed, then takes the
 * median of N timed repetitions (performance.now()). The same program runs in each runtime and the
 * results are compared, so a broken workload fails loudly instead of looking fast.
 *
 * Benchmarks inform; tests assert behaviour. This script exits 0 whether or not targets are met
 * (it exits 1 only when a runtime gives a wrong answer).
 */
import os from 'node:os';
import { loadString } from 'nbb';
import { runCcosBench } from './ccos.js';
import {
  createRuntime,
  restoreMachine,
  saveMachine,
  type Closure,
  type HostRequest,
  type Machine,
  type Outcome,
  type Value,
} from '../src/rtfs/index.js';
import { bench, benchInterleaved, median, type Stats } from './timing.js';

let failures = 0;
function check(what: string, got: unknown, want: unknown): void {
  if (got !== want) {
    failures++;
    console.error(`WRONG RESULT: ${what}: got ${String(got)}, want ${String(want)}`);
  }
}

// -------------------------------------------------------------------------------------------------
// The workloads: one source text, valid RTFS and valid ClojureScript

const N_FIB = 25;
const N_SUM = 1_000_000;
const N_MAP = 100_000;
const N_STR = 20_000;

const SOURCE = String.raw`
(defn fib [n] (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
(defn sum-to [n] (loop [i 0 acc 0] (if (< i n) (recur (inc i) (+ acc i)) acc)))
(defn build-map [n] (reduce (fn [m i] (assoc m i (* i 2))) {} (range n)))
(defn build-str [n] (apply str (map str (range n))))
`;

// Plain JavaScript, the same algorithms written by hand.
function jsFib(n: number): number {
  return n < 2 ? n : jsFib(n - 1) + jsFib(n - 2);
}
function jsSumTo(n: number): number {
  let acc = 0;
  for (let i = 0; i < n; i++) acc += i;
  return acc;
}
function jsBuildMap(n: number): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < n; i++) m.set(i, i * 2);
  return m;
}
function jsBuildStr(n: number): string {
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(String(i));
  return parts.join('');
}

/** A map's size and a checksum over its entries (keys and values weighted differently). */
function jsMapDigest(m: Iterable<[unknown, unknown]> & { size: number }): string {
  let sum = 0;
  for (const [k, v] of m) sum += (k as number) * 3 + (v as number);
  return `${m.size}:${sum}`;
}

interface Workload {
  name: string;
  label: string;
  fn: string;
  arg: number;
  js: (n: number) => unknown;
  /** Reduces a result to a primitive comparable across runtimes. */
  digest: { rtfs: (v: unknown) => unknown; nbb: (v: unknown) => unknown; js: (v: unknown) => unknown };
}

interface Row {
  name: string;
  label: string;
  ours: Stats;
  interp: Stats;
  js: Stats;
  nbb: Stats;
}

function fmtMs(ms: number): string {
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  if (ms >= 1) return ms.toFixed(2);
  return ms.toFixed(3);
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padEnd(n) : s.padStart(n);
}

function drainPending(m: Machine, out: Outcome, answer: (r: HostRequest) => Value): Outcome {
  let o = out;
  while (o.status === 'suspended') {
    m.resume(o.requests.map((r) => ({ id: r.id, resolution: { value: answer(r) } })));
    o = m.run();
  }
  return o;
}

function argOf(r: HostRequest): Value {
  if (r.kind !== 'call') throw new Error(`unexpected request ${r.kind}`);
  return r.args[0];
}

// -------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  const cpus = os.cpus();
  console.log('RTFS benchmarks');
  console.log(`node ${process.version} · ${process.platform}/${process.arch} · ${os.availableParallelism?.() ?? cpus.length} cores · ${cpus[0]?.model ?? 'unknown CPU'}`);
  console.log('warm: ≥5 untimed runs of each (≥300 ms), then the median of 5–15 timed runs; RTFS, interpreter, JS and nbb are timed round-robin\n');

  // RTFS: define once, then call the closures directly.
  const rt = createRuntime();
  rt.runToCompletion(rt.load(SOURCE, 'bench.rtfs').main);
  const rtfsFn = (name: string): Closure => {
    const v = rt.findCell(name)?.value;
    if (!v) throw new Error(`RTFS: ${name} is not defined`);
    return v as Closure;
  };

  // nbb: define once, get JS-callable ClojureScript functions back.
  const nbbFns = (await loadString(`${SOURCE}\n(into-array [fib sum-to build-map build-str])`)) as ((n: number) => unknown)[];
  const nbbByName: Record<string, (n: number) => unknown> = {
    fib: nbbFns[0],
    'sum-to': nbbFns[1],
    'build-map': nbbFns[2],
    'build-str': nbbFns[3],
  };
  const nbbMapDigest = (await loadString('(fn [m] (str (count m) ":" (reduce-kv (fn [a k v] (+ a (* k 3) v)) 0 m)))')) as (m: unknown) => string;

  const id = (v: unknown): unknown => v;
  const workloads: Workload[] = [
    { name: 'fib', label: `fib ${N_FIB} (naive recursion)`, fn: 'fib', arg: N_FIB, js: jsFib, digest: { rtfs: id, nbb: id, js: id } },
    { name: 'loop', label: `loop/recur sum 0..${N_SUM}`, fn: 'sum-to', arg: N_SUM, js: jsSumTo, digest: { rtfs: id, nbb: id, js: id } },
    {
      name: 'map',
      label: `reduce/assoc ${N_MAP / 1000}k-entry map`,
      fn: 'build-map',
      arg: N_MAP,
      js: jsBuildMap,
      digest: { rtfs: (v) => jsMapDigest(v as Map<unknown, unknown>), nbb: (v) => nbbMapDigest(v), js: (v) => jsMapDigest(v as Map<unknown, unknown>) },
    },
    { name: 'str', label: `(apply str (map str (range ${N_STR / 1000}k)))`, fn: 'build-str', arg: N_STR, js: jsBuildStr, digest: { rtfs: id, nbb: id, js: id } },
  ];

  const rows: Row[] = [];
  for (const w of workloads) {
    const c = rtfsFn(w.fn);
    const nf = nbbByName[w.fn];
    // Correctness first: all three runtimes must agree.
    const want = w.digest.js(w.js(w.arg));
    check(`${w.name} (RTFS)`, w.digest.rtfs(rt.runToCompletion(c, [w.arg])), want);
    check(`${w.name} (nbb)`, w.digest.nbb(nf(w.arg)), want);
    const interpRun = (): Value => {
      const m = rt.machine();
      m.jit = false;
      m.start(c, [w.arg]);
      const out = m.run();
      if (out.status !== 'complete') throw new Error(`${w.name}: interpreter run ended with ${out.status}`);
      return out.value;
    };
    check(`${w.name} (RTFS interpreter)`, w.digest.rtfs(interpRun()), want);

    const { ours, interp, js, nbb } = benchInterleaved({
      ours: () => rt.runToCompletion(c, [w.arg]),
      interp: interpRun,
      js: () => w.js(w.arg),
      nbb: () => nf(w.arg),
    });
    rows.push({ name: w.name, label: w.label, ours, interp, js, nbb });
    console.log(`  measured ${w.name}`);
  }

  // --- Suspend + resume in process -------------------------------------------------------------
  const N_CALLS = 10_000;
  const callRt = createRuntime();
  const callUnit = callRt.load(`(loop [i 0 acc 0] (if (< i ${N_CALLS}) (recur (inc i) (+ acc (call :svc.get i))) acc))`, 'suspend.rtfs');
  const driveCalls = (): Value => {
    const m = callRt.machine();
    m.start(callUnit.main);
    const out = drainPending(m, m.run(), argOf);
    if (out.status !== 'complete') throw new Error(`suspend/resume ended with ${out.status}`);
    return out.value;
  };
  check('suspend/resume sum', driveCalls(), (N_CALLS * (N_CALLS - 1)) / 2);
  const suspend = bench(driveCalls);
  const usPerCall = (suspend.median * 1000) / N_CALLS;
  console.log('  measured suspend/resume');

  // --- JSON checkpoint + restore, mid-map ------------------------------------------------------
  const N_ITEMS = 10_000;
  const N_ANSWERED = 5_000;
  const cpRt = createRuntime();
  const cpUnit = cpRt.load(`(map (fn [x] (call :svc.get x)) (range ${N_ITEMS}))`, 'checkpoint.rtfs');
  const cpMachine = cpRt.machine();
  cpMachine.start(cpUnit.main);
  let cpOut = cpMachine.run();
  for (let k = 0; k < N_ANSWERED; k++) {
    if (cpOut.status !== 'suspended') throw new Error(`checkpoint setup: machine ${cpOut.status} after ${k} calls`);
    cpMachine.resume(cpOut.requests.map((r) => ({ id: r.id, resolution: { value: argOf(r) } })));
    cpOut = cpMachine.run();
  }
  if (cpOut.status !== 'suspended') throw new Error('checkpoint setup: machine is not suspended mid-map');
  let jsonBytes = 0;
  const tSave: number[] = [];
  const tRestore: number[] = [];
  const tResume: number[] = [];
  let lastRestored: Machine | null = null;
  const checkpoint = (): void => {
    const t0 = performance.now();
    const json = JSON.stringify(saveMachine(cpRt, cpMachine));
    const t1 = performance.now();
    const { machine } = restoreMachine(JSON.parse(json));
    const t2 = performance.now();
    machine.resume(machine.pending().map((r) => ({ id: r.id, resolution: { value: argOf(r) } })));
    const next = machine.run();
    const t3 = performance.now();
    if (next.status !== 'suspended') throw new Error(`checkpoint: first step after restore ended with ${next.status}`);
    jsonBytes = json.length;
    tSave.push(t1 - t0);
    tRestore.push(t2 - t1);
    tResume.push(t3 - t2);
    lastRestored = machine;
  };
  const cp = bench(checkpoint, { warmup: 5, maxReps: 15, minReps: 7, budgetMs: 2000 });
  // The restored machine must finish the job correctly.
  {
    const m = lastRestored as Machine | null;
    if (!m) throw new Error('checkpoint: nothing restored');
    const done = drainPending(m, m.run(), argOf);
    const v = done.status === 'complete' ? (done.value as unknown as { size: number; get(i: number): unknown }) : null;
    check('checkpoint: restored map finishes', v !== null && v.size === N_ITEMS && v.get(0) === 0 && v.get(N_ITEMS - 1) === N_ITEMS - 1, true);
  }
  console.log('  measured checkpoint\n');

  // --- Report ----------------------------------------------------------------------------------
  const head = ['workload', 'RTFS ms', 'interp ms', 'JS ms', 'nbb ms', 'RTFS/nbb', 'RTFS/JS'];
  const widths = [34, 9, 10, 9, 9, 9, 9];
  const line = (cells: string[]): string => cells.map((c, i) => pad(c, widths[i], i === 0)).join(' ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join(' '));
  for (const r of rows) {
    console.log(
      line([
        r.label,
        fmtMs(r.ours.median),
        fmtMs(r.interp.median),
        fmtMs(r.js.median),
        fmtMs(r.nbb.median),
        `${(r.ours.median / r.nbb.median).toFixed(2)}×`,
        `${(r.ours.median / r.js.median).toFixed(1)}×`,
      ]),
    );
  }
  console.log('\n(RTFS = default machine, fast path on; interp = same call with the fast path off, for reference)');
  console.log(`\nsuspend + resume: ${N_CALLS} host calls in ${fmtMs(suspend.median)} ms → ${usPerCall.toFixed(2)} µs per call`);
  const cpTotal = cp.median;
  console.log(
    `checkpoint mid-map (${N_ANSWERED}/${N_ITEMS} answered, ${(jsonBytes / 1024).toFixed(0)} KiB JSON): ${fmtMs(cpTotal)} ms total` +
      ` = save+stringify ${fmtMs(median(tSave))} + parse+restore ${fmtMs(median(tRestore))} + first resume/run ${fmtMs(median(tResume))} (medians)`,
  );

  console.log('\nTargets');
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  for (const r of rows) {
    const ratio = r.ours.median / r.nbb.median;
    console.log(`  ${r.name}: ${ratio.toFixed(2)}× nbb (target ≤ 1.0×) — ${verdict(ratio <= 1)}`);
  }
  console.log(`  suspend/resume: ${usPerCall.toFixed(2)} µs per call (target ≤ 5 µs) — ${verdict(usPerCall <= 5)}`);
  console.log(`  checkpoint: ${fmtMs(cpTotal)} ms (target < 20 ms) — ${verdict(cpTotal < 20)}`);
  // --- CCOS: governed calls, pause → resume and chain verification, against LangGraph JS -------
  failures += await runCcosBench();
  failures += await (await import('./governance.js')).runGovernanceBench();

  console.log(`\ntotal bench time ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (failures > 0) {
    console.error(`\n${failures} wrong result(s): the figures above are not trustworthy`);
    process.exitCode = 1;
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
