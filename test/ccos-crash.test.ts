// Crash recovery, proved with real `kill -9`s: a run of 1000 effects is killed part-way, resumed in
// a new process, and every completed effect is shown to have run exactly once. A call in flight at
// the crash is retried only if its capability is idempotent; otherwise the run pauses for a person
// (waiting.kind 'outcome-unknown'), who then says whether it happened.
//
// The drivers are small .mjs scripts written to a temp dir at test time; they import the compiled
// library through a file URL computed from this file's location.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { openCcos, type Action } from '../src/ccos/index.js';

const LIB_URL = new URL('../src/ccos/index.js', import.meta.url).href;

/** Driver: `node driver.mjs CONFIG_JSON`. Prints one JSON object per line on stdout. */
const DRIVER = `
import fs from 'node:fs';
import path from 'node:path';
import { openCcos, valueToPlainJson } from ${JSON.stringify(LIB_URL)};
const cfg = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const ccos = openCcos({ dataDir: cfg.dataDir, durability: cfg.durability ?? 'normal' });
// Local capabilities live in this process only. A "bomb" kills this process with SIGKILL on its
// Nth invocation here, before or after its effect (an exact in-flight crash).
// A non-idempotent effect happens outside CCOS: a line appended to a file beside the data dir; the
// result is the number of lines. An idempotent one writes into the data dir's own tables.
for (const cap of cfg.caps ?? []) {
  let calls = 0;
  ccos.registerCapability({ id: cap.id, idempotent: cap.idempotent }, (args, ctx) => {
    calls++;
    const die = () => {
      process.kill(process.pid, 'SIGKILL');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);
    };
    if (cap.bombAt === calls && cap.bombWhen === 'before') die();
    let result;
    if (cap.idempotent) {
      // Invocation count (every time the code ran) and the effect itself.
      ctx.store.db.prepare('INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1').run(cap.id + '#invocations');
      ctx.store.db.prepare('INSERT INTO state_kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(cap.id + '/' + JSON.stringify(args[0]), JSON.stringify(args[0]));
      result = args[0];
    } else {
      const file = path.join(cfg.dataDir, '..', cap.id + '.effects');
      fs.appendFileSync(file, 'x\\n');
      result = fs.statSync(file).size / 2;
    }
    if (cap.bombAt === calls && cap.bombWhen === 'after') die();
    return result;
  });
}
ccos.subscribe((a) => {
  if (a.type === 'PlanStarted' || a.type === 'PlanResumed') out({ event: a.type, runId: a.runId });
});
let r;
if (cfg.mode === 'run') r = await ccos.run(cfg.source, { file: 'crash-plan.rtfs' });
else r = await ccos.resume(cfg.runId, cfg.resume ?? {});
out({ event: 'result', runId: r.runId, status: r.status, waiting: r.waiting ?? null, error: r.error ?? null, value: r.value === undefined ? null : valueToPlainJson(r.value) });
ccos.close();
`;

interface DriverResult {
  runId: string;
  status: string;
  waiting: { kind: string; capability?: string; request?: string } | null;
  error: { code: string; message: string } | null;
  value: unknown;
}

interface BombCap {
  id: string;
  idempotent: boolean;
  bombAt?: number;
  bombWhen?: 'before' | 'after';
}

interface DriverConfig {
  mode: 'run' | 'resume';
  dataDir: string;
  durability?: 'normal' | 'strict' | 'fenced';
  source?: string;
  runId?: string;
  resume?: { answer?: unknown; fail?: string; retryUnknown?: boolean };
  caps?: BombCap[];
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-crash-'));
  fs.writeFileSync(path.join(dir, 'driver.mjs'), DRIVER);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A running driver: its parsed stdout lines as they arrive, and its exit. */
class Driver {
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: (() => void)[] = [];

  constructor(dir: string, cfg: DriverConfig) {
    this.child = spawn(process.execPath, [path.join(dir, 'driver.mjs'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) this.lines.push(JSON.parse(line));
        for (const w of this.waiters.splice(0)) w();
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Resolves with the first line matching `pred` (rejects if the process exits first). */
  async line(pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let done = false;
    void this.exited.then(() => {
      done = true;
      for (const w of this.waiters.splice(0)) w();
    });
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (done) throw new Error(`driver exited without the expected line; stdout: ${JSON.stringify(this.lines)} stderr: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for a driver line; stderr: ${this.stderr}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async result(): Promise<DriverResult> {
    const { code, signal } = await this.exited;
    const r = this.lines.find((l) => l.event === 'result');
    if (!r) throw new Error(`driver ended (code ${code}, signal ${signal}) without a result; stderr: ${this.stderr}`);
    assert.equal(code, 0, `driver exit code; stderr: ${this.stderr}`);
    return r as unknown as DriverResult;
  }
}

/** Runs a driver to its end. */
function drive(dir: string, cfg: DriverConfig): Promise<DriverResult> {
  return new Driver(dir, cfg).result();
}

/** Opens the db read-only (retrying while the writer creates it) and waits until `pred(counter)`. */
async function waitForCounter(dbPath: string, name: string, pred: (n: number) => boolean, child: Driver, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let db: Database.Database | undefined;
  let exited = false;
  void child.exited.then(() => (exited = true));
  try {
    for (;;) {
      if (Date.now() > deadline) throw new Error(`counter ${name} did not reach the kill point in time`);
      if (exited) throw new Error(`the driver exited before the kill point; stderr: ${child.stderr}`);
      try {
        db ??= new Database(dbPath, { readonly: true, fileMustExist: true });
        const row = db.prepare('SELECT value FROM counters WHERE name = ?').get(name) as { value: number } | undefined;
        if (row && pred(row.value)) return row.value;
      } catch {
        // not created yet (file, WAL index or table): try again
        db?.close();
        db = undefined;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  } finally {
    db?.close();
  }
}

interface Facts {
  counter: number;
  answered: number;
  started: { request_id: string; capability: string }[];
}

/** How many times the non-idempotent test capability `id` took effect (lines in its file). */
function effects(dbPath: string, id: string): number {
  const file = path.join(path.dirname(dbPath), '..', `${id}.effects`);
  return fs.existsSync(file) ? fs.statSync(file).size / 2 : 0;
}

/**
 * What the store says about one counter-like capability of a run (read with the process stopped,
 * after a node has opened the data dir: what the crashed process persisted is redone then).
 * The counter is a row of `counters`, or the effects of a test capability (`{ effectsOf: id }`).
 */
function facts(dbPath: string, runId: string, capability: string, counterName: string | { effectsOf: string }): Facts {
  openCcos({ dataDir: path.dirname(dbPath), mustExist: true }).close();
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const counter = typeof counterName === 'string' ? ((db.prepare('SELECT value FROM counters WHERE name = ?').get(counterName) as { value: number } | undefined)?.value ?? 0) : effects(dbPath, counterName.effectsOf);
    const answered = (db.prepare("SELECT COUNT(*) AS n FROM journal WHERE run_id = ? AND capability = ? AND status = 'answered'").get(runId, capability) as { n: number }).n;
    const started = db.prepare("SELECT request_id, capability FROM journal WHERE run_id = ? AND status = 'started'").all(runId) as Facts['started'];
    return { counter, answered, started };
  } finally {
    db.close();
  }
}

/**
 * Decides an 'outcome-unknown' pause as a careful person would: if the counter moved past what the
 * journal answered, the effect happened (answer with its value); if not, it did not (retry).
 */
function humanDecision(f: Facts): { answer: number } | { retryUnknown: true } {
  if (f.counter === f.answered) return { retryUnknown: true };
  if (f.counter === f.answered + 1) return { answer: f.counter };
  throw new Error(`the counter (${f.counter}) and the journal (${f.answered} answered) disagree by more than the one call in flight`);
}

function counterResults(actions: Action[], capability: string): number[] {
  return actions.filter((a) => a.type === 'CapabilityResult' && a.data.capability === capability).map((a) => {
    assert.equal(a.data.ok, true, `a failed ${capability} result: ${JSON.stringify(a.data)}`);
    return Number(a.data.result);
  });
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// 1000 logical effects (one counter increment each), with an idempotent kv.put between them, in 10
// steps of 100 so that resuming starts from a checkpoint and answers the rest from the journal.
const PLAN_1000 = `
(loop [b 0]
  (if (< b 10)
    (do (step "batch" {:batch b}
          (loop [i 0]
            (if (< i 100)
              (do (call :ccos.state.counter.inc "hits")
                  (call :ccos.state.kv.put "last" (+ (* b 100) i))
                  (recur (inc i)))
              i)))
        (recur (inc b)))
    :done))`;

for (const [killAt, durability] of [[100, 'strict'], [500, 'fenced'], [900, 'strict']] as const) {
  test(`kill -9 after ~${killAt} of 1000 effects (${durability} durability), resume in a new process: every effect ran exactly once`, { timeout: 40_000 }, async (t) => {
    const dir = tempDir(t);
    const dataDir = path.join(dir, 'data');
    const dbPath = path.join(dataDir, 'ccos.db');

    const first = new Driver(dir, { mode: 'run', dataDir, durability, source: PLAN_1000 });
    const started = await first.line((l) => l.event === 'PlanStarted');
    const runId = started.runId as string;
    assert.match(runId, /^run-/);
    const seen = await waitForCounter(dbPath, 'hits', (n) => n >= killAt, first);
    first.child.kill('SIGKILL');
    const exit = await first.exited;
    assert.equal(exit.signal, 'SIGKILL', 'the first process was killed, it did not finish on its own');
    assert.ok(!first.lines.some((l) => l.event === 'result'), 'the first process produced no result');

    const atCrash = facts(dbPath, runId, 'ccos.state.counter.inc', 'hits');
    assert.ok(atCrash.counter >= seen && atCrash.counter < 1000, `killed mid-run (counter ${atCrash.counter})`);
    // At most one call can be in flight: the journal and the counter differ by at most one.
    assert.ok(atCrash.started.length <= 1, `at most one call in flight: ${JSON.stringify(atCrash.started)}`);
    assert.ok(atCrash.counter - atCrash.answered === 0 || atCrash.counter - atCrash.answered === 1, `counter ${atCrash.counter} vs answered ${atCrash.answered}`);
    if (atCrash.counter === atCrash.answered + 1) assert.deepEqual(atCrash.started.map((s) => s.capability), ['ccos.state.counter.inc'], 'an effect with no journaled answer is journaled as started');

    // The runs table says the run is still running (nobody finished it).
    {
      const db = new Database(dbPath, { readonly: true });
      const row = db.prepare('SELECT status FROM runs WHERE id = ?').get(runId) as { status: string };
      db.close();
      assert.equal(row.status, 'running');
    }

    let r = await drive(dir, { mode: 'resume', dataDir, durability, runId });
    const inFlightCounter = atCrash.started.some((s) => s.capability === 'ccos.state.counter.inc');
    t.diagnostic(`killed at counter ${atCrash.counter}, ${atCrash.answered} answered, in flight: ${JSON.stringify(atCrash.started)}; first resume: ${r.status}`);
    if (inFlightCounter) {
      // A non-idempotent call was in flight: the run must not guess.
      assert.equal(r.status, 'paused', `a non-idempotent call in flight pauses the run: ${JSON.stringify(r)}`);
      assert.equal(r.waiting?.kind, 'outcome-unknown');
      assert.equal(r.waiting?.capability, 'ccos.state.counter.inc');
      assert.equal(r.waiting?.request, atCrash.started[0].request_id);
      const f = facts(dbPath, runId, 'ccos.state.counter.inc', 'hits');
      assert.equal(f.counter, atCrash.counter, 'pausing ran no effect');
      r = await drive(dir, { mode: 'resume', dataDir, durability, runId, resume: humanDecision(f) });
    } else {
      // Nothing non-idempotent was in flight (possibly an idempotent kv.put, retried silently).
      assert.notEqual(r.status, 'paused', `nothing needs a person: ${JSON.stringify(r)}`);
    }
    assert.equal(r.status, 'completed', JSON.stringify(r));
    assert.equal(r.runId, runId);
    assert.equal(r.value, 'done');

    const end = facts(dbPath, runId, 'ccos.state.counter.inc', 'hits');
    assert.equal(end.counter, 1000, 'the counter was incremented exactly 1000 times');
    assert.equal(end.answered, 1000, 'the journal holds exactly 1000 answered counter calls');
    assert.deepEqual(end.started, [], 'no call is left in flight');

    const ccos = openCcos({ dataDir });
    try {
      const details = ccos.runDetails(runId)!;
      assert.equal(details.status, 'completed');
      const values = counterResults(details.actions, 'ccos.state.counter.inc').sort((a, b) => a - b);
      assert.deepEqual(values, range(1, 1000), 'each increment result 1..1000 appears exactly once on the chain: none ran twice, none was skipped');
      // The idempotent kv.put ran for every index; its last value is the last index.
      assert.equal(ccos.store.db.prepare("SELECT value FROM state_kv WHERE key = 'last'").pluck().get(), '999');
      // The journal answers of the counter are also exactly 1..1000.
      const answers = (ccos.store.db.prepare("SELECT answer FROM journal WHERE run_id = ? AND capability = 'ccos.state.counter.inc'").pluck().all(runId) as string[]).map((a) => (JSON.parse(a) as { value: number }).value);
      assert.deepEqual(answers.sort((a, b) => a - b), range(1, 1000));
      assert.ok(details.actions.some((a) => a.type === 'PlanResumed'), 'the chain records the resume');
      // Checkpoints were written at step boundaries, so resuming did not start from scratch.
      assert.ok((ccos.store.db.prepare('SELECT COUNT(*) FROM checkpoints WHERE run_id = ?').pluck().get(runId) as number) >= 2);
      const report = ccos.verifyChain();
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      // Replaying the completed run from its journal reproduces it with no effect.
      const replay = ccos.replay(runId);
      assert.equal(replay.identical, true, replay.divergence);
      assert.equal(ccos.store.db.prepare("SELECT value FROM counters WHERE name = 'hits'").pluck().get(), 1000, 'replay ran no effect');
    } finally {
      ccos.close();
    }
  });
}

// Normal durability, a kill from outside at an arbitrary moment: the non-idempotent marks are in
// the redo log, not committed, so this is what the log has to carry across the crash.
for (const killAt of [150, 1100]) {
  test(`normal durability: kill -9 after ~${killAt} of 2000 external effects, resume: each ran exactly once`, { timeout: 60_000 }, async (t) => {
    const dir = tempDir(t);
    const dataDir = path.join(dir, 'data');
    const dbPath = path.join(dataDir, 'ccos.db');
    const cap: BombCap = { id: 'test.effect', idempotent: false };
    const source = `(loop [i 0 acc 0] (if (< i 2000) (recur (inc i) (+ acc (call :${cap.id} i))) acc))`;
    const first = new Driver(dir, { mode: 'run', dataDir, source, caps: [cap] });
    const runId = (await first.line((l) => l.event === 'PlanStarted')).runId as string;
    const deadline = Date.now() + 30_000;
    while (effects(dbPath, cap.id) < killAt) {
      assert.ok(Date.now() < deadline, 'progress');
      await new Promise((r) => setTimeout(r, 1));
    }
    first.child.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');

    const atCrash = facts(dbPath, runId, cap.id, { effectsOf: cap.id });
    t.diagnostic(`killed at ${atCrash.counter} effects, ${atCrash.answered} answered, in flight: ${JSON.stringify(atCrash.started)}`);
    assert.ok(atCrash.counter >= killAt && atCrash.counter < 2000, `killed mid-run (${atCrash.counter} effects)`);
    assert.ok(atCrash.started.length <= 1, 'at most one call in flight');
    assert.ok(atCrash.counter - atCrash.answered === 0 || atCrash.counter - atCrash.answered === 1, `effects ${atCrash.counter} vs answered ${atCrash.answered}: every effect but the one in flight has its answer`);
    if (atCrash.counter === atCrash.answered + 1) assert.equal(atCrash.started.length, 1, 'an effect with no answer is marked started');

    let r = await drive(dir, { mode: 'resume', dataDir, runId, caps: [cap] });
    if (r.status === 'paused') {
      assert.equal(r.waiting?.kind, 'outcome-unknown');
      r = await drive(dir, { mode: 'resume', dataDir, runId, caps: [cap], resume: humanDecision(facts(dbPath, runId, cap.id, { effectsOf: cap.id })) });
    }
    assert.equal(r.status, 'completed', JSON.stringify(r));
    assert.equal(r.value, (2000 * 2001) / 2, 'the plan saw results 1..2000, each once');
    const end = facts(dbPath, runId, cap.id, { effectsOf: cap.id });
    assert.equal(end.counter, 2000, 'the effect ran exactly 2000 times');
    assert.equal(end.answered, 2000);
    const ccos = openCcos({ dataDir });
    try {
      assert.deepEqual(counterResults(ccos.chain.list({ runId }), cap.id).sort((a, b) => a - b), range(1, 2000));
      assert.equal(ccos.verifyChain().ok, true);
    } finally {
      ccos.close();
    }
  });
}

// Deterministic in-flight crashes: the capability itself kills its process at its 7th invocation.
const BOMB_PLAN = (id: string): string => `(loop [i 0 acc []] (if (< i 20) (recur (inc i) (conj acc (call :${id} i))) acc))`;

for (const when of ['before', 'after'] as const) {
  test(`non-idempotent call killed ${when} its effect: resume pauses with outcome-unknown; the person's decision keeps it exactly once`, { timeout: 30_000 }, async (t) => {
    const dir = tempDir(t);
    const dataDir = path.join(dir, 'data');
    const dbPath = path.join(dataDir, 'ccos.db');
    const cap: BombCap = { id: 'test.bomb', idempotent: false };

    const first = new Driver(dir, { mode: 'run', dataDir, source: BOMB_PLAN(cap.id), caps: [{ ...cap, bombAt: 7, bombWhen: when }] });
    const runId = (await first.line((l) => l.event === 'PlanStarted')).runId as string;
    const exit = await first.exited;
    assert.equal(exit.signal, 'SIGKILL', `the capability killed its process; stderr: ${first.stderr}`);

    // The 7th call's "started" mark was appended to the redo log, not committed.
    const redo = path.join(dataDir, 'redo');
    assert.equal(fs.readdirSync(redo).filter((f) => f.endsWith('.redo')).length, 1, 'the crashed process left its redo log');
    const atCrash = facts(dbPath, runId, cap.id, { effectsOf: cap.id });
    assert.deepEqual(fs.readdirSync(redo), [], 'opening the data dir redid the log and removed it');
    assert.equal(atCrash.answered, 6, 'six calls were answered before the crash');
    assert.equal(atCrash.counter, when === 'before' ? 6 : 7);
    assert.equal(atCrash.started.length, 1, 'the 7th call is journaled as started, with no answer');

    // Resume in a new process (which has the capability's code, without the bomb).
    const paused = await drive(dir, { mode: 'resume', dataDir, runId, caps: [cap] });
    assert.equal(paused.status, 'paused', JSON.stringify(paused));
    assert.equal(paused.waiting?.kind, 'outcome-unknown');
    assert.equal(paused.waiting?.capability, cap.id);
    assert.equal(paused.waiting?.request, atCrash.started[0].request_id);
    assert.equal(facts(dbPath, runId, cap.id, { effectsOf: cap.id }).counter, atCrash.counter, 'pausing did not run the call again');

    // Resuming again without a decision stays paused and still runs nothing.
    const again = await drive(dir, { mode: 'resume', dataDir, runId, caps: [cap] });
    assert.equal(again.status, 'paused');
    assert.equal(again.waiting?.kind, 'outcome-unknown');
    assert.equal(facts(dbPath, runId, cap.id, { effectsOf: cap.id }).counter, atCrash.counter);

    const decision = humanDecision(facts(dbPath, runId, cap.id, { effectsOf: cap.id }));
    assert.deepEqual(decision, when === 'before' ? { retryUnknown: true } : { answer: 7 });
    const done = await drive(dir, { mode: 'resume', dataDir, runId, caps: [cap], resume: decision });
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(done.value, range(1, 20), 'the plan saw 1..20: the in-flight call counted once');

    const end = facts(dbPath, runId, cap.id, { effectsOf: cap.id });
    assert.equal(end.counter, 20, 'the effect ran exactly 20 times');
    assert.equal(end.answered, 20);
    assert.deepEqual(end.started, []);
    const ccos = openCcos({ dataDir });
    try {
      const actions = ccos.chain.list({ runId });
      assert.deepEqual(counterResults(actions, cap.id).sort((a, b) => a - b), range(1, 20));
      const retried = actions.filter((a) => a.type === 'CapabilityCall' && a.data.retry_after_crash === true);
      const byResume = actions.filter((a) => a.type === 'CapabilityResult' && a.data.answered_by === 'resume');
      if (when === 'before') {
        assert.equal(retried.length, 1, 'the unknown call was run again once, marked as a retry after a crash');
        assert.equal(byResume.length, 0);
      } else {
        assert.equal(retried.length, 0, 'the call that did happen was not run again');
        assert.equal(byResume.length, 1, 'its result was supplied by the person');
        assert.equal(byResume[0].data.result, '7');
      }
      assert.equal(actions.filter((a) => a.type === 'PlanPaused').length, 2);
      assert.ok(actions.filter((a) => a.type === 'PlanPaused').every((a) => (a.data.waiting as { kind: string }).kind === 'outcome-unknown'));
      assert.equal(ccos.verifyChain().ok, true, JSON.stringify(ccos.verifyChain().problems));
    } finally {
      ccos.close();
    }
  });
}

test('non-idempotent call in flight at a crash, resumed with fail: the plan sees the error and nothing re-runs', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const dataDir = path.join(dir, 'data');
  const dbPath = path.join(dataDir, 'ccos.db');
  const cap: BombCap = { id: 'test.bomb', idempotent: false };
  const source = `(loop [i 0 acc []] (if (< i 5) (recur (inc i) (conj acc (try (call :test.bomb i) (catch :rejected e :lost)))) acc))`;
  const first = new Driver(dir, { mode: 'run', dataDir, source, caps: [{ ...cap, bombAt: 3, bombWhen: 'after' }] });
  const runId = (await first.line((l) => l.event === 'PlanStarted')).runId as string;
  assert.equal((await first.exited).signal, 'SIGKILL');
  const r = await drive(dir, { mode: 'resume', dataDir, runId, caps: [cap], resume: { fail: 'operator says: unknown, do not repeat' } });
  assert.equal(r.status, 'completed', JSON.stringify(r));
  assert.deepEqual(r.value, [1, 2, 'lost', 4, 5]);
  assert.equal(facts(dbPath, runId, cap.id, { effectsOf: cap.id }).counter, 5, '3 before the crash, 2 after; the failed one was not re-run');
});

test('idempotent call in flight at a crash is retried on resume without asking anyone', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const dataDir = path.join(dir, 'data');
  const dbPath = path.join(dataDir, 'ccos.db');
  const cap: BombCap = { id: 'test.idem', idempotent: true };

  const first = new Driver(dir, { mode: 'run', dataDir, source: BOMB_PLAN(cap.id), caps: [{ ...cap, bombAt: 7, bombWhen: 'after' }] });
  const runId = (await first.line((l) => l.event === 'PlanStarted')).runId as string;
  assert.equal((await first.exited).signal, 'SIGKILL');
  const atCrash = facts(dbPath, runId, cap.id, `${cap.id}#invocations`);
  // With normal durability the answers of idempotent calls are group-committed, so the journal
  // holds a prefix of them (never the 7th's). An invocation written in the same group as its
  // answer was lost with it; at most one (written just before its group began) outlived it.
  assert.ok(atCrash.answered <= 6, `the 7th result was never journaled (${atCrash.answered} answered)`);
  assert.ok(atCrash.counter === atCrash.answered || atCrash.counter === atCrash.answered + 1, `invocations on disk (${atCrash.counter}) follow the journal (${atCrash.answered})`);
  // (An idempotent call may or may not be journaled as started: retrying it is safe either way.)
  assert.ok(atCrash.started.length <= 1);

  const r = await drive(dir, { mode: 'resume', dataDir, runId, caps: [cap] });
  assert.equal(r.status, 'completed', `an idempotent call is retried, not paused on: ${JSON.stringify(r)}`);
  assert.deepEqual(r.value, range(0, 19));
  const end = facts(dbPath, runId, cap.id, `${cap.id}#invocations`);
  assert.equal(end.counter, 20 + atCrash.counter - atCrash.answered, 'the code ran 20 times, plus a retry of the call whose effect outlived its lost answer');
  assert.equal(end.answered, 20);
  assert.deepEqual(end.started, []);
  const ccos = openCcos({ dataDir });
  try {
    const actions = ccos.chain.list({ runId });
    assert.equal(actions.filter((a) => a.type === 'PlanPaused').length, 0, 'never paused');
    const retried = actions.filter((a) => a.type === 'CapabilityCall' && a.data.retry_after_crash === true);
    if (atCrash.started.length === 1) {
      assert.equal(retried.length, 1, 'the call journaled as started was retried once, marked as such');
      assert.equal(retried[0].data.request, atCrash.started[0].request_id);
    } else assert.equal(retried.length, 0);
    // Whatever the journal held, the call of index 6 appears with exactly one result on the chain.
    const results = actions.filter((a) => a.type === 'CapabilityResult' && a.data.capability === cap.id).map((a) => Number(a.data.result));
    assert.deepEqual(results.sort((a, b) => a - b), range(0, 19));
    assert.equal(ccos.store.db.prepare("SELECT COUNT(*) FROM state_kv WHERE key LIKE 'test.idem/%'").pluck().get(), 20);
    assert.equal(ccos.verifyChain().ok, true);
  } finally {
    ccos.close();
  }
});

test('kill -9 during a loop of idempotent kv.put calls: resume completes and never pauses', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const dataDir = path.join(dir, 'data');
  const dbPath = path.join(dataDir, 'ccos.db');
  // A counter only marks progress for the kill; the calls under test are the kv.puts.
  const source = `(loop [i 0] (if (< i 400) (do (call :ccos.state.kv.put (str "k" i) i) (call :ccos.state.kv.put "n" i) (recur (inc i))) :done))`;
  const first = new Driver(dir, { mode: 'run', dataDir, durability: 'strict', source });
  const runId = (await first.line((l) => l.event === 'PlanStarted')).runId as string;
  // Wait until a good part of the puts is journaled.
  const deadline = Date.now() + 20_000;
  for (;;) {
    assert.ok(Date.now() < deadline, 'progress');
    try {
      const db = new Database(dbPath, { readonly: true, fileMustExist: true });
      const n = db.prepare("SELECT COUNT(*) FROM journal WHERE run_id = ? AND status = 'answered'").pluck().get(runId) as number;
      db.close();
      if (n >= 300) break;
    } catch {
      /* not there yet */
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  first.child.kill('SIGKILL');
  assert.equal((await first.exited).signal, 'SIGKILL');
  const r = await drive(dir, { mode: 'resume', dataDir, runId });
  assert.equal(r.status, 'completed', JSON.stringify(r));
  const db = new Database(dbPath, { readonly: true });
  try {
    assert.equal(db.prepare("SELECT COUNT(*) FROM state_kv WHERE key LIKE 'k%'").pluck().get(), 400);
    assert.equal(db.prepare("SELECT value FROM state_kv WHERE key = 'n'").pluck().get(), '399');
    assert.equal(db.prepare("SELECT COUNT(*) FROM journal WHERE run_id = ? AND status = 'answered' AND kind = 'call'").pluck().get(runId), 800);
    assert.equal(db.prepare("SELECT COUNT(*) FROM actions WHERE run_id = ? AND type = 'PlanPaused'").pluck().get(runId), 0);
  } finally {
    db.close();
  }
});

test('a crashed run cannot be resumed while its first process still lives; resume is refused with run-busy', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const dataDir = path.join(dir, 'data');
  // The plan waits in a slow capability; another process tries to take the run over.
  const first = new Driver(dir, { mode: 'run', dataDir, source: `(loop [i 0] (if (< i 100000) (do (call :ccos.state.counter.inc "c") (recur (inc i))) :done))`, durability: 'strict' });
  const runId = (await first.line((l) => l.event === 'PlanStarted')).runId as string;
  try {
    // Subscribers hear PlanStarted inside its transaction: wait until some calls are committed.
    await waitForCounter(path.join(dataDir, 'ccos.db'), 'c', (n) => n >= 5, first);
    const ccos = openCcos({ dataDir });
    try {
      await assert.rejects(ccos.resume(runId), (e: Error & { code?: string }) => e.code === 'run-busy' && e.message.includes(String(first.child.pid)));
    } finally {
      ccos.close();
    }
  } finally {
    first.child.kill('SIGKILL');
    await first.exited;
  }
});
