/**
 * CCOS benchmarks, run by `npm run bench` after the RTFS section: governed capability calls with
 * the durable SQLite journal (normal, strict and fenced durability; sequential and `step.parallel`),
 * pause → resume round trips, and causal-chain verification — side by side with LangGraph JS
 * (a one-node loop graph with its SQLite checkpointer, and `interrupt()` + `Command` resume).
 *
 * Every measurement gets its own temporary data directory (removed at the end). Timing is warm:
 * each case runs untimed first, then CCOS and LangGraph cases are timed round-robin (one
 * repetition of each per round) and the median per repetition is reported, divided by the number
 * of operations in a repetition. Results are checked (final values, number of effects, chain
 * verification ok); a wrong result counts as a failure, a missed target does not.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { Annotation, Command, END, START, StateGraph, interrupt } from '@langchain/langgraph';
import { SqliteSaver } from '@langchain/langgraph-checkpoint-sqlite';
import { openCcos, type Ccos, type Durability } from '../src/ccos/index.js';
import { median } from './timing.js';

// -------------------------------------------------------------------------------------------------
// Sizes (chosen so that the whole section takes well under a minute on a 2-vCPU VM)

/** Governed calls per sequential run. */
const N_CALLS = 1000;
/** Governed calls per sequential run in strict mode (an fsync per commit). */
const N_CALLS_STRICT = 400;
/** Rounds of a 10-branch `step.parallel` per run. */
const R_PAR = 100;
const PAR_BRANCHES = 10;
/** LangGraph node executions per invoke. */
const N_LG = 300;
/** Pause → resume round trips per repetition. */
const K_ASK = 100;
const K_LG = 60;
/** Governed calls in the run that builds the chain to verify (2 actions each). */
const N_CHAIN_CALLS = 25_200;

// -------------------------------------------------------------------------------------------------
// Timing

interface Case {
  name: string;
  /** Operations in one repetition (calls, steps, round trips). */
  ops: number;
  /** One repetition; returns the timed ms (setup inside it is not timed). */
  rep: () => Promise<number>;
}

interface Result {
  name: string;
  ops: number;
  /** Median ms per repetition. */
  median: number;
  min: number;
  reps: number;
  /** Median ms per operation. */
  perOp: number;
  /**
   * Mean ms per operation (total time / total operations): a throughput figure. It differs from
   * the median where some repetitions carry SQLite's WAL checkpoint (every ~10 000 WAL pages).
   */
  meanPerOp: number;
}

/**
 * Warms every case (at least `warmup` repetitions, continuing up to `warmMs` of its own time:
 * V8 needs several hundred round trips to settle on a path, and a fresh data directory's WAL
 * grows before it is first reused), then times them round-robin: 5–9 rounds, stopping after
 * `budgetMs` of timing.
 */
async function roundRobin(cases: Case[], opts: { warmup?: number; warmMs?: number; minReps?: number; maxReps?: number; budgetMs?: number } = {}): Promise<Map<string, Result>> {
  const { warmup = 2, warmMs = 1000, minReps = 5, maxReps = 9, budgetMs = 15_000 } = opts;
  for (const c of cases) {
    let spent = 0;
    for (let i = 0; i < warmup || (spent < warmMs && i < 100); i++) spent += await c.rep();
  }
  const times = new Map(cases.map((c) => [c.name, [] as number[]]));
  const t0 = performance.now();
  for (let r = 0; r < maxReps && (r < minReps || performance.now() - t0 < budgetMs); r++) {
    for (const c of cases) times.get(c.name)!.push(await c.rep());
  }
  return new Map(
    cases.map((c) => {
      const ts = times.get(c.name)!;
      const m = median(ts);
      const mean = ts.reduce((a, b) => a + b, 0) / ts.length;
      return [c.name, { name: c.name, ops: c.ops, median: m, min: Math.min(...ts), reps: ts.length, perOp: m / c.ops, meanPerOp: mean / c.ops }];
    }),
  );
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

let failures = 0;
function check(what: string, got: unknown, want: unknown): void {
  if (got !== want) {
    failures++;
    console.error(`WRONG RESULT: ${what}: got ${String(got)}, want ${String(want)}`);
  }
}

// -------------------------------------------------------------------------------------------------
// Temporary directories

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-bench-'));
let tmpCount = 0;
function tmpDir(label: string): string {
  const d = path.join(tmpRoot, `${++tmpCount}-${label}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

// -------------------------------------------------------------------------------------------------
// CCOS

interface CcosNode {
  ccos: Ccos;
  /** Invocations of bench.work / bench.work-idem (to check that every effect ran once). */
  effects: { work: number; idem: number };
}

function openNode(label: string, durability: Durability): CcosNode {
  const ccos = openCcos({ dataDir: tmpDir(label), durability, workspaceRoot: tmpRoot });
  const effects = { work: 0, idem: 0 };
  // A local, non-idempotent effect: journaled "started" before it runs, its result after.
  ccos.registerCapability({ id: 'bench.work', idempotent: false }, (args) => {
    effects.work++;
    return args[0];
  });
  // The same, declared idempotent: decision, call and result are written together, group-committed.
  ccos.registerCapability({ id: 'bench.work-idem', idempotent: true }, (args) => {
    effects.idem++;
    return args[0];
  });
  return { ccos, effects };
}

const seqPlan = (cap: string, n: number): string => `(loop [i 0] (if (< i ${n}) (do (call :${cap} i) (recur (inc i))) i))`;
const parPlan = (cap: string, rounds: number): string =>
  `(loop [i 0] (if (< i ${rounds}) (do (step.parallel ${Array.from({ length: PAR_BRANCHES }, () => `(call :${cap} i)`).join(' ')}) (recur (inc i))) i))`;
const askPlan = (k: number): string => `(loop [i 0] (if (< i ${k}) (do (call :ccos.user.ask "q") (recur (inc i))) i))`;

/** A case that runs a plan to completion and checks its value and its number of effects. */
function ccosRunCase(name: string, node: CcosNode, source: string, want: number, calls: number, kind: 'work' | 'idem'): Case {
  return {
    name,
    ops: calls,
    rep: async () => {
      const before = node.effects[kind];
      let status = '';
      let value: unknown;
      const ms = await timed(async () => {
        const r = await node.ccos.run(source);
        status = r.status;
        value = r.value;
      });
      check(`${name}: status`, status, 'completed');
      check(`${name}: value`, value, want);
      check(`${name}: effects`, node.effects[kind] - before, calls);
      return ms;
    },
  };
}

/** Pause → resume: start a run (untimed; it pauses on its first ask), then time K resumes. */
function ccosAskCase(name: string, node: CcosNode, k: number): Case {
  const source = askPlan(k);
  return {
    name,
    ops: k,
    rep: async () => {
      const first = await node.ccos.run(source);
      check(`${name}: first pause`, first.status, 'paused');
      let last = first;
      const ms = await timed(async () => {
        for (let j = 0; j < k; j++) {
          last = await node.ccos.resume(first.runId, { answer: 1 });
          if (j < k - 1 && last.status !== 'paused') break;
        }
      });
      check(`${name}: final status`, last.status, 'completed');
      check(`${name}: final value`, last.value, k);
      return ms;
    },
  };
}

/** Counts the commits the store makes during one run. */
async function commitsOf(node: CcosNode, source: string): Promise<number> {
  const before = node.ccos.store.commits;
  await node.ccos.run(source);
  return node.ccos.store.commits - before;
}

// -------------------------------------------------------------------------------------------------
// LangGraph JS

const LoopState = Annotation.Root({
  i: Annotation<number>({ reducer: (_a, b) => b, default: () => 0 }),
  n: Annotation<number>({ reducer: (_a, b) => b, default: () => 0 }),
});

function lgSaver(label: string): SqliteSaver {
  return SqliteSaver.fromConnString(path.join(tmpDir(label), 'checkpoints.db'));
}

/** One node that increments a counter, looping back until `n`; checkpointed by SqliteSaver. */
function lgLoopGraph(saver: SqliteSaver) {
  return new StateGraph(LoopState)
    .addNode('work', (s) => ({ i: s.i + 1 }))
    .addEdge(START, 'work')
    .addConditionalEdges('work', (s) => (s.i < s.n ? 'work' : END))
    .compile({ checkpointer: saver });
}

/** One node that asks with `interrupt()` and adds the answer, looping until `n`. */
function lgAskGraph(saver: SqliteSaver) {
  return new StateGraph(LoopState)
    .addNode('ask', (s) => ({ i: s.i + interrupt<string, number>('q') }))
    .addEdge(START, 'ask')
    .addConditionalEdges('ask', (s) => (s.i < s.n ? 'ask' : END))
    .compile({ checkpointer: saver });
}

let threadSeq = 0;

function lgStepCase(name: string, saver: SqliteSaver, n: number, durability?: 'sync' | 'async'): Case {
  const graph = lgLoopGraph(saver);
  return {
    name,
    ops: n,
    rep: async () => {
      const config = { configurable: { thread_id: `t${++threadSeq}` }, recursionLimit: n + 10, ...(durability ? { durability } : {}) };
      let out: { i: number } | undefined;
      const ms = await timed(async () => {
        out = await graph.invoke({ i: 0, n }, config);
      });
      check(`${name}: final counter`, out?.i, n);
      return ms;
    },
  };
}

function lgAskCase(name: string, saver: SqliteSaver, k: number): Case {
  const graph = lgAskGraph(saver);
  return {
    name,
    ops: k,
    rep: async () => {
      const config = { configurable: { thread_id: `a${++threadSeq}` }, recursionLimit: 10 * k + 10 };
      const first = (await graph.invoke({ i: 0, n: k }, config)) as { __interrupt__?: unknown[] };
      check(`${name}: first interrupt`, Array.isArray(first.__interrupt__) && first.__interrupt__.length === 1, true);
      let last: { i: number; __interrupt__?: unknown[] } = { i: -1 };
      const ms = await timed(async () => {
        for (let j = 0; j < k; j++) last = (await graph.invoke(new Command({ resume: 1 }), config)) as typeof last;
      });
      check(`${name}: final counter`, last.i, k);
      check(`${name}: no interrupt at the end`, last.__interrupt__ === undefined || last.__interrupt__.length === 0, true);
      return ms;
    },
  };
}

// -------------------------------------------------------------------------------------------------
// The floor: a bare better-sqlite3 commit with two small inserts, and a bare fsync

interface Floor {
  /** One transaction. */
  one(): void;
  /** WAL pages written per transaction (measured over `n` transactions, untimed). */
  pages(n: number): number;
  close(): void;
}

/**
 * One transaction per operation, in WAL mode, with no CCOS code. `bare`: two small inserts into
 * two rowid tables. `ccos`: the shape of a governed call's commit — read the chain head, insert
 * an action row (a ~370-byte JSON body and its hash, with a (run_id, seq) index on a column
 * generated from the body) and upsert a journal row keyed by (run_id, request_id): four B-trees
 * instead of two.
 */
function openFloor(synchronous: 'NORMAL' | 'FULL', shape: 'bare' | 'ccos'): Floor {
  const dir = tmpDir(`floor-${synchronous}-${shape}`);
  const db = new Database(path.join(dir, 'floor.db'));
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  db.pragma('wal_autocheckpoint = 10000');
  db.exec(`CREATE TABLE a (k INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE TABLE b (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
    CREATE TABLE actions (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL, run_id TEXT GENERATED ALWAYS AS (body ->> '$.run') VIRTUAL);
    CREATE INDEX actions_run ON actions(run_id, seq);
    CREATE TABLE journal (run_id TEXT NOT NULL, request_id TEXT NOT NULL, status TEXT NOT NULL, answer TEXT, PRIMARY KEY (run_id, request_id)) WITHOUT ROWID;`);
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const ia = db.prepare('INSERT INTO a (v) VALUES (?)');
  const ib = db.prepare('INSERT INTO b (v) VALUES (?)');
  const head = db.prepare('SELECT seq, hash FROM actions ORDER BY seq DESC LIMIT 1');
  const insAction = db.prepare('INSERT INTO actions (seq, body, hash) VALUES (?, ?, ?)');
  const upJournal = db.prepare('INSERT INTO journal (run_id, request_id, status, answer) VALUES (?, ?, ?, ?) ON CONFLICT(run_id, request_id) DO UPDATE SET status = excluded.status, answer = excluded.answer');
  const body = JSON.stringify({ data: 'x'.repeat(340), run: 'run-1' });
  const hash = 'h'.repeat(64);
  let k = 0;
  const one = (): void => {
    k++;
    begin.run();
    if (shape === 'bare') {
      ia.run(`started ${k}`);
      ib.run(`answered ${k}`);
    } else {
      const h = head.get() as { seq: number } | undefined;
      insAction.run((h?.seq ?? 0) + 1, body, hash);
      upJournal.run('run-1', `r${k}`, 'answered', '{"value":1}');
    }
    commit.run();
  };
  const walFile = path.join(dir, 'floor.db-wal');
  return {
    one,
    pages(n) {
      db.pragma('wal_checkpoint(TRUNCATE)');
      for (let i = 0; i < n; i++) one();
      return fs.statSync(walFile).size / (4096 + 24) / n;
    },
    close: () => db.close(),
  };
}

function floorCase(name: string, floor: Floor, n: number): Case {
  return {
    name,
    ops: n,
    rep: async () => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) floor.one();
      return performance.now() - t0;
    },
  };
}

/** A write of 128 bytes + fdatasync, `n` times. */
function fsyncCase(name: string, n: number): Case {
  const file = path.join(tmpDir('fsync'), 'f.bin');
  const buf = Buffer.alloc(128, 1);
  return {
    name,
    ops: n,
    rep: async () => {
      const fd = fs.openSync(file, 'w');
      try {
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          fs.writeSync(fd, buf, 0, buf.length, (i % 64) * 128);
          fs.fdatasyncSync(fd);
        }
        return performance.now() - t0;
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

/** Writes back every dirty page of the system, so that earlier writes do not land on our fsyncs. */
function flushPageCache(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

// -------------------------------------------------------------------------------------------------
// Report helpers

const us = (ms: number): string => {
  const v = ms * 1000;
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
};
const perSec = (ms: number): string => {
  const v = 1000 / ms;
  return v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e4 ? `${(v / 1e3).toFixed(1)}k` : v.toFixed(0);
};
const pad = (s: string, n: number, left = false): string => (left ? s.padEnd(n) : s.padStart(n));
const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');

// -------------------------------------------------------------------------------------------------

/** Runs the CCOS section; returns the number of wrong results. */
export async function runCcosBench(): Promise<number> {
  const started = performance.now();
  console.log('\n\nCCOS benchmarks (vs LangGraph JS with SqliteSaver)');
  console.log(`temp data dirs under ${tmpRoot}; warm: untimed reps of each case (at least 2, up to ~1 s of it), then the median of 5–9 reps timed round-robin\n`);
  try {
    // --- Governed calls (normal) and LangGraph steps, round-robin ---------------------------
    // One node (data dir) per case: each case's WAL checkpoints land in its own repetitions.
    const normal = { call: openNode('ccos-normal-call', 'normal'), idem: openNode('ccos-normal-idem', 'normal'), par: openNode('ccos-normal-par', 'normal'), parIdem: openNode('ccos-normal-par-idem', 'normal') };
    const floorNB = openFloor('NORMAL', 'bare');
    const floorNC = openFloor('NORMAL', 'ccos');
    const lgStepSaver = lgSaver('lg-steps');
    const lgSyncSaver = lgSaver('lg-steps-sync');
    const steps = await roundRobin([
      ccosRunCase('ccos.normal.call', normal.call, seqPlan('bench.work', N_CALLS), N_CALLS, N_CALLS, 'work'),
      ccosRunCase('ccos.normal.idem', normal.idem, seqPlan('bench.work-idem', N_CALLS), N_CALLS, N_CALLS, 'idem'),
      ccosRunCase('ccos.normal.par', normal.par, parPlan('bench.work', R_PAR), R_PAR, R_PAR * PAR_BRANCHES, 'work'),
      ccosRunCase('ccos.normal.par-idem', normal.parIdem, parPlan('bench.work-idem', R_PAR), R_PAR, R_PAR * PAR_BRANCHES, 'idem'),
      lgStepCase('lg.step', lgStepSaver, N_LG),
      lgStepCase('lg.step-sync', lgSyncSaver, N_LG, 'sync'),
      floorCase('floor.normal.bare', floorNB, 2000),
      floorCase('floor.normal.ccos', floorNC, 2000),
    ]);
    console.log('  measured governed calls (normal) and LangGraph steps');

    // Commits per governed call (one extra, untimed run of each plan, with tx counted).
    const commits = {
      call: (await commitsOf(normal.call, seqPlan('bench.work', 100))) / 100,
      idem: (await commitsOf(normal.idem, seqPlan('bench.work-idem', 100))) / 100,
      par: (await commitsOf(normal.par, parPlan('bench.work', 10))) / (10 * PAR_BRANCHES),
      parIdem: (await commitsOf(normal.parIdem, parPlan('bench.work-idem', 10))) / (10 * PAR_BRANCHES),
    };

    // --- Pause → resume (normal) and LangGraph interrupt/resume, round-robin -------------------
    const askNormal = openNode('ccos-ask-normal', 'normal');
    const lgAskSaver = lgSaver('lg-ask');
    const asks = await roundRobin([ccosAskCase('ccos.normal.ask', askNormal, K_ASK), lgAskCase('lg.ask', lgAskSaver, K_LG)], { minReps: 5, maxReps: 7 });
    console.log('  measured pause → resume');
    const askCommits = await (async () => {
      const first = await askNormal.ccos.run(askPlan(20));
      const before = askNormal.ccos.store.commits;
      for (let j = 0; j < 20; j++) await askNormal.ccos.resume(first.runId, { answer: 1 });
      return (askNormal.ccos.store.commits - before) / 20;
    })();

    // --- Strict durability, measured on its own ------------------------------------------------
    // On ext4 (data=ordered) an fsync also flushes other files' dirty pages, so the strict cases
    // are not interleaved with the normal ones, and the page cache is flushed (sync) first.
    const floorFB = openFloor('FULL', 'bare');
    const floorFC = openFloor('FULL', 'ccos');
    const strict = { call: openNode('ccos-strict-call', 'strict'), idem: openNode('ccos-strict-idem', 'strict'), par: openNode('ccos-strict-par', 'strict'), parIdem: openNode('ccos-strict-par-idem', 'strict') };
    const askStrict = openNode('ccos-ask-strict', 'strict');
    const fenced = { call: openNode('ccos-fenced-call', 'fenced'), par: openNode('ccos-fenced-par', 'fenced') };
    flushPageCache();
    const strictRes = await roundRobin([
      ccosRunCase('ccos.strict.call', strict.call, seqPlan('bench.work', N_CALLS_STRICT), N_CALLS_STRICT, N_CALLS_STRICT, 'work'),
      ccosRunCase('ccos.strict.idem', strict.idem, seqPlan('bench.work-idem', N_CALLS_STRICT), N_CALLS_STRICT, N_CALLS_STRICT, 'idem'),
      ccosRunCase('ccos.strict.par', strict.par, parPlan('bench.work', R_PAR / 2), R_PAR / 2, (R_PAR / 2) * PAR_BRANCHES, 'work'),
      ccosRunCase('ccos.strict.par-idem', strict.parIdem, parPlan('bench.work-idem', R_PAR / 2), R_PAR / 2, (R_PAR / 2) * PAR_BRANCHES, 'idem'),
      ccosAskCase('ccos.strict.ask', askStrict, K_ASK / 2),
      ccosRunCase('ccos.fenced.call', fenced.call, seqPlan('bench.work', N_CALLS_STRICT), N_CALLS_STRICT, N_CALLS_STRICT, 'work'),
      ccosRunCase('ccos.fenced.par', fenced.par, parPlan('bench.work', R_PAR / 2), R_PAR / 2, (R_PAR / 2) * PAR_BRANCHES, 'work'),
      floorCase('floor.full.bare', floorFB, 200),
      floorCase('floor.full.ccos', floorFC, 200),
      fsyncCase('floor.fsync', 200),
    ], { minReps: 5, maxReps: 7 });
    for (const [k, v] of strictRes) (k.endsWith('.ask') ? asks : steps).set(k, v);
    const pages = { nb: floorNB.pages(500), nc: floorNC.pages(500), fb: floorFB.pages(100), fc: floorFC.pages(100) };
    for (const f of [floorNB, floorNC, floorFB, floorFC]) f.close();
    console.log('  measured strict durability and the SQLite floor');

    // --- Chain verification --------------------------------------------------------------------
    const chainNode = openNode('ccos-chain', 'normal');
    const built = await chainNode.ccos.run(seqPlan('bench.work-idem', N_CHAIN_CALLS));
    check('chain build: value', built.value, N_CHAIN_CALLS);
    let report = chainNode.ccos.verifyChain();
    check('chain verify: ok', report.ok, true);
    check('chain verify: ≥ 50k actions', report.actions >= 50_000, true);
    const verifyTimes: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      report = chainNode.ccos.verifyChain();
      verifyTimes.push(performance.now() - t0);
    }
    const verifyMs = median(verifyTimes);
    const verifyRate = report.actions / (verifyMs / 1000);
    console.log('  measured chain verification\n');

    for (const n of [...Object.values(normal), ...Object.values(strict), ...Object.values(fenced), askNormal, askStrict, chainNode]) n.ccos.close();
    for (const s of [lgStepSaver, lgSyncSaver, lgAskSaver]) s.db.close();

    // --- Report --------------------------------------------------------------------------------
    const lgStepR = steps.get('lg.step')!;
    const lgAskR = asks.get('lg.ask')!;
    const lgStep = lgStepR.perOp;
    const lgAsk = lgAskR.perOp;
    const rows: [string, Result, Result | null][] = [
      [`governed call, normal, non-idempotent (${N_CALLS} seq)`, steps.get('ccos.normal.call')!, lgStepR],
      [`governed call, normal, idempotent (${N_CALLS} seq)`, steps.get('ccos.normal.idem')!, lgStepR],
      [`governed call, normal, non-idem, ${PAR_BRANCHES}-way step.parallel`, steps.get('ccos.normal.par')!, lgStepR],
      [`governed call, normal, idem, ${PAR_BRANCHES}-way step.parallel`, steps.get('ccos.normal.par-idem')!, lgStepR],
      [`governed call, strict, non-idempotent (${N_CALLS_STRICT} seq)`, steps.get('ccos.strict.call')!, lgStepR],
      [`governed call, strict, idempotent (${N_CALLS_STRICT} seq)`, steps.get('ccos.strict.idem')!, lgStepR],
      [`governed call, strict, non-idem, ${PAR_BRANCHES}-way step.parallel`, steps.get('ccos.strict.par')!, lgStepR],
      [`governed call, strict, idem, ${PAR_BRANCHES}-way step.parallel`, steps.get('ccos.strict.par-idem')!, lgStepR],
      [`governed call, fenced, non-idempotent (${N_CALLS_STRICT} seq)`, steps.get('ccos.fenced.call')!, lgStepR],
      [`governed call, fenced, non-idem, ${PAR_BRANCHES}-way step.parallel`, steps.get('ccos.fenced.par')!, lgStepR],
      [`LangGraph step (SqliteSaver, durability "async" = default)`, lgStepR, null],
      [`LangGraph step (SqliteSaver, durability "sync")`, steps.get('lg.step-sync')!, null],
      [`pause → resume, CCOS normal (${K_ASK} round trips)`, asks.get('ccos.normal.ask')!, lgAskR],
      [`pause → resume, CCOS strict (${K_ASK / 2} round trips)`, asks.get('ccos.strict.ask')!, lgAskR],
      [`interrupt() → Command resume, LangGraph (${K_LG} round trips)`, lgAskR, null],
    ];
    const widths = [62, 10, 10, 9, 10, 9];
    const line = (cells: string[]): string => cells.map((c, i) => pad(c, widths[i], i === 0)).join(' ');
    console.log(line(['measurement', 'µs/op', 'ops/s', 'LG/CCOS', 'mean µs', 'LG/CCOS']));
    console.log(widths.map((w) => '-'.repeat(w)).join(' '));
    const ratio = (lg: number, ms: number): string => `${(lg / ms).toFixed(1)}×`;
    for (const [label, r, lg] of rows) {
      console.log(line([label, us(r.perOp), perSec(r.perOp), lg ? ratio(lg.perOp, r.perOp) : '', us(r.meanPerOp), lg ? ratio(lg.meanPerOp, r.meanPerOp) : '']));
    }
    console.log('(µs/op: the median repetition; mean: total time / total operations, which also counts what happens in some repetitions only: collections, LangGraph\'s WAL checkpoints)');
    console.log(`\nchain verification: ${report.actions} actions (${report.seals} seals) in ${verifyMs.toFixed(1)} ms → ${(verifyRate / 1000).toFixed(0)}k actions/s`);
    console.log(`commits per governed call (normal): non-idempotent ${commits.call.toFixed(2)}, idempotent ${commits.idem.toFixed(2)}, ${PAR_BRANCHES}-way parallel non-idem ${commits.par.toFixed(2)}, parallel idem ${commits.parIdem.toFixed(2)}`);
    console.log(`commits per pause → resume round trip (normal): ${askCommits.toFixed(2)}`);
    const fl = (k: string): string => us(steps.get(k)!.perOp);
    console.log('floor: one better-sqlite3 transaction in WAL mode (no CCOS code), timed with the cases above:');
    console.log(`  two small inserts:          synchronous=NORMAL ${fl('floor.normal.bare')} µs (${pages.nb.toFixed(1)} WAL pages), FULL ${fl('floor.full.bare')} µs (${pages.fb.toFixed(1)} pages)`);
    console.log(`  CCOS-shaped action+journal: synchronous=NORMAL ${fl('floor.normal.ccos')} µs (${pages.nc.toFixed(1)} WAL pages), FULL ${fl('floor.full.ccos')} µs (${pages.fc.toFixed(1)} pages)`);
    console.log(`  write + fdatasync of 128 bytes: ${fl('floor.fsync')} µs`);

    const normalCall = steps.get('ccos.normal.call')!.perOp;
    const normalIdem = steps.get('ccos.normal.idem')!.perOp;
    const strictCall = steps.get('ccos.strict.call')!.perOp;
    const strictIdem = steps.get('ccos.strict.idem')!.perOp;
    const strictPar = steps.get('ccos.strict.par')!.perOp;
    const fencedCall = steps.get('ccos.fenced.call')!.perOp;
    const fencedPar = steps.get('ccos.fenced.par')!.perOp;
    const askRatio = lgAsk / asks.get('ccos.normal.ask')!.perOp;
    console.log('\nTargets');
    // Each kind of call gets its own verdict: a non-idempotent call is written to the redo log
    // before its effect (LangGraph has no such write); an idempotent one only waits for a group commit.
    const meanRatio = (lg: Result, k: string): string => `mean ${(lg.meanPerOp / (steps.get(k) ?? asks.get(k))!.meanPerOp).toFixed(1)}×`;
    console.log(`  governed calls vs LangGraph steps (target ≥ 20×): idempotent ${(lgStep / normalIdem).toFixed(1)}× (${meanRatio(lgStepR, 'ccos.normal.idem')}) — ${verdict(lgStep / normalIdem >= 20)}; non-idempotent ${(lgStep / normalCall).toFixed(1)}× (${meanRatio(lgStepR, 'ccos.normal.call')}) — ${verdict(lgStep / normalCall >= 20)}`);
    console.log(`  pause → resume vs LangGraph: ${askRatio.toFixed(1)}× (${meanRatio(lgAskR, 'ccos.normal.ask')}; target ≥ 10×) — ${verdict(askRatio >= 10)}`);
    console.log(`  chain verification: ${(verifyRate / 1000).toFixed(0)}k actions/s (target ≥ 200k) — ${verdict(verifyRate >= 200_000)}`);
    console.log(`  strict governed call: ${us(strictCall)} µs non-idempotent, ${us(strictIdem)} µs idempotent (target ≤ 400 µs) — ${verdict(strictCall <= 0.4)}`);
    // Strict: the results of calls that end together share one fdatasync of the redo log; fenced:
    // their "started" marks share another.
    console.log(`  parallel calls sharing their durable writes: strict ${us(strictPar)} µs per call in a ${PAR_BRANCHES}-way step.parallel vs ${us(strictCall)} µs sequential (target: less per call) — ${verdict(strictPar < strictCall * 0.5)}`);
    console.log(`  (no target) fenced, a second fdatasync before each non-idempotent effect: ${us(fencedCall)} µs sequential, ${us(fencedPar)} µs per call in a ${PAR_BRANCHES}-way step.parallel; two fdatasyncs alone take ${us(2 * steps.get('floor.fsync')!.perOp)} µs`);
    console.log(`\nCCOS section time ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    fs.rmSync(tmpRoot, { recursive: true, force: true });
  }
  if (failures > 0) console.error(`\n${failures} wrong result(s) in the CCOS section: its figures are not trustworthy`);
  return failures;
}
