// Crash safety of sagas and step.parallel, proved with real SIGKILLs: a capability registered in a
// driver process kills that process at a chosen invocation, before or after its effect; a new
// process resumes the run. A crash during a compensation resumes the compensation (never the
// primary); a crash inside a step.parallel block resumes every branch at its own point; and a
// property test over random saga lengths, failure points and crash points checks that no effect is
// left uncompensated and none runs twice.
//
// Effects happen outside CCOS: each appends a line naming it to a file beside the data dir,
// written by the provider in the same process as the effect, so a count survives the kill.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { openCcos, type Action } from '../src/ccos/index.js';

const LIB_URL = new URL('../src/ccos/index.js', import.meta.url).href;

/**
 * Driver: `node driver.mjs CONFIG_JSON`; prints one JSON line per event. Capabilities:
 * - svc.do X / svc.undo X: the effect and its compensation (non-idempotent); each counts
 *   `do:X` / `undo:X` and returns true;
 * - svc.fail X: fails (no effect; declared idempotent, so it is safely re-run after a crash).
 * `bombAt: k` kills the process at the k-th svc.do/svc.undo invocation of this process,
 * `bombWhen` 'before' or 'after' the effect.
 */
const DRIVER = `
import fs from 'node:fs';
import path from 'node:path';
import { openCcos, valueToPlainJson } from ${JSON.stringify(LIB_URL)};
const cfg = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const ccos = openCcos({ dataDir: cfg.dataDir, durability: 'strict' });
let effects = 0;
const die = () => {
  process.kill(process.pid, 'SIGKILL');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);
};
const bump = (name) => fs.appendFileSync(path.join(cfg.dataDir, '..', 'effects.log'), name + '\\n');
for (const kind of ['do', 'undo']) {
  ccos.registerCapability({ id: 'svc.' + kind }, async (args) => {
    const k = ++effects;
    if (cfg.bombAt === k && cfg.bombWhen === 'before') die();
    if (cfg.delayMs) await new Promise((r) => setTimeout(r, cfg.delayMs));
    bump(kind + ':' + String(args[0]));
    bump(kind);
    if (cfg.bombAt === k && cfg.bombWhen === 'after') die();
    return true;
  });
}
ccos.registerCapability({ id: 'svc.fail', idempotent: true }, (args) => { throw new Error('step ' + String(args[0]) + ' failed'); });
ccos.subscribe((a) => { if (a.type === 'PlanStarted') out({ event: a.type, runId: a.runId }); });
let r;
if (cfg.mode === 'run') r = await ccos.run(cfg.source, { file: 'saga.rtfs' });
else r = await ccos.resume(cfg.runId, cfg.resume ?? {});
out({ event: 'result', runId: r.runId, status: r.status, waiting: r.waiting ?? null, error: r.error ?? null, value: r.value === undefined ? null : valueToPlainJson(r.value) });
ccos.close();
`;

interface DriverConfig {
  mode: 'run' | 'resume';
  dataDir: string;
  source?: string;
  runId?: string;
  resume?: { answer?: unknown; fail?: string; retryUnknown?: boolean; decisions?: Record<string, Decision> };
  bombAt?: number;
  bombWhen?: 'before' | 'after';
  delayMs?: number;
}

interface Outcome {
  runId: string | null;
  killed: boolean;
  status?: string;
  waiting?: { kind: string; capability?: string; request?: string } | { kind: string; capability?: string; request?: string }[] | null;
  error?: { code: string; message: string } | null;
  value?: unknown;
}

function tempDir(): { dir: string; dataDir: string; dbPath: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-saga-crash-'));
  fs.writeFileSync(path.join(dir, 'driver.mjs'), DRIVER);
  const dataDir = path.join(dir, 'data');
  return { dir, dataDir, dbPath: path.join(dataDir, 'ccos.db'), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Runs a driver to its end (or its death); returns its result or that it was killed. */
function drive(dir: string, cfg: DriverConfig): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(dir, 'driver.mjs'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code, signal) => {
      const lines = stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
      const started = lines.find((l) => l.event === 'PlanStarted');
      const result = lines.find((l) => l.event === 'result');
      if (signal === 'SIGKILL') return resolve({ runId: (started?.runId as string) ?? cfg.runId ?? null, killed: true });
      if (code !== 0 || !result) return reject(new Error(`driver exited with ${code}/${signal}; stderr: ${stderr}`));
      resolve({ ...(result as unknown as Outcome), killed: false });
    });
  });
}

/** How many times each effect happened (lines of the effects file beside the data dir). */
function counters(dbPath: string): Record<string, number> {
  const file = path.join(path.dirname(dbPath), '..', 'effects.log');
  const counts: Record<string, number> = {};
  for (const name of fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

type Decision = { answer: boolean } | { retry: true };

/**
 * Decides 'outcome-unknown' pauses as a careful person would: for each waiting call, look up its
 * arguments on the chain (its CapabilityCall action) and the effect counter of that argument. If
 * the effect is there, it happened (answer its result, true); if not, it did not (run it again).
 */
function humanDecisions(dbPath: string, dataDir: string, runId: string, waiting: { kind: string; capability?: string; request?: string }[]): Record<string, Decision> {
  const { actions } = chainOf(dataDir, runId);
  const c = counters(dbPath);
  const out: Record<string, Decision> = {};
  for (const w of waiting) {
    assert.equal(w.kind, 'outcome-unknown', `only outcome-unknown pauses are expected here: ${JSON.stringify(w)}`);
    const call = actions.find((a) => a.type === 'CapabilityCall' && a.data.request === w.request);
    assert.ok(call, `the waiting call ${w.request} is on the chain`);
    const arg = String(call.data.args).replace(/^\[|\]$/g, '').replace(/^"|"$/g, '');
    const kind = w.capability!.replace('svc.', '');
    // In these plans each (capability, argument) is called once, so its effect counter says
    // whether this very call took effect.
    const happened = c[`${kind}:${arg}`] ?? 0;
    assert.ok(happened <= 1, `${w.capability} ${arg} took effect ${happened} times`);
    out[w.request!] = happened === 1 ? { answer: true } : { retry: true };
  }
  return out;
}

/** Resumes until the run ends, deciding outcome-unknown pauses like a person; at most `max` resumes. */
async function resumeToEnd(dir: string, dataDir: string, dbPath: string, runId: string, crashAgain: number | null = null, max = 8): Promise<{ end: Outcome; resumes: number; pauses: string[]; kills: number }> {
  let resume: DriverConfig['resume'];
  const pauses: string[] = [];
  let kills = 0;
  for (let i = 0; i < max; i++) {
    // A second crash: the first resuming process that gets that far is killed.
    const bombAt = crashAgain !== null && kills === 0 ? crashAgain : undefined;
    const r = await drive(dir, { mode: 'resume', dataDir, runId, resume, bombAt, bombWhen: 'after' });
    resume = undefined;
    if (r.killed) {
      kills++;
      continue;
    }
    if (r.status === 'paused') {
      const waiting = Array.isArray(r.waiting) ? r.waiting : [r.waiting!];
      for (const w of waiting) pauses.push(w.kind);
      resume = { decisions: humanDecisions(dbPath, dataDir, runId, waiting) };
      continue;
    }
    return { end: r, resumes: i + 1, pauses, kills };
  }
  throw new Error('the run did not end after several resumes');
}

function chainOf(dataDir: string, runId: string): { actions: Action[]; ok: boolean } {
  const ccos = openCcos({ dataDir });
  try {
    return { actions: ccos.chain.list({ runId }), ok: ccos.verifyChain().ok };
  } finally {
    ccos.close();
  }
}

const sagaStep = (i: number): string => `(step.with-compensation (step "s${i}" (call :svc.do ${i})) (step "u${i}" (call :svc.undo ${i})))`;
const failingStep = (i: number): string => `(step "s${i}" (call :svc.fail ${i}))`;
/** A saga of `n` steps; step `failAt` (1-based) fails, or none. */
const saga = (n: number, failAt: number | null): string => `(do ${Array.from({ length: n }, (_, k) => (k + 1 === failAt ? failingStep(k + 1) : sagaStep(k + 1))).join('\n')} :done)`;

// -------------------------------------------------------------------------------------------------
// (a) A crash during a compensation

for (const when of ['before', 'after'] as const) {
  test(`crash ${when} a compensation's effect: a new process finishes the compensations; no primary re-runs`, { timeout: 60_000 }, async (t) => {
    const { dir, dataDir, dbPath, cleanup } = tempDir();
    t.after(cleanup);
    // 3 primaries (effects 1-3), step 4 fails, compensations undo 3 (effect 4), undo 2 (effect 5): kill there.
    const first = await drive(dir, { mode: 'run', dataDir, source: saga(5, 4), bombAt: 5, bombWhen: when });
    assert.equal(first.killed, true, 'the compensation of s2 killed its process');
    const runId = first.runId!;
    const at = counters(dbPath);
    assert.deepEqual([at['do:1'], at['do:2'], at['do:3'], at['undo:3'], at['undo:2'] ?? 0], [1, 1, 1, 1, when === 'after' ? 1 : 0]);

    const { end, pauses } = await resumeToEnd(dir, dataDir, dbPath, runId);
    assert.equal(end.status, 'failed', JSON.stringify(end));
    assert.equal(end.error?.code, 'provider-failed', 'the saga fails with the failure of step 4');
    assert.deepEqual(pauses, ['outcome-unknown'], 'the non-idempotent compensation in flight was put to a person once');
    const c = counters(dbPath);
    assert.deepEqual([c['do:1'], c['do:2'], c['do:3'], c['do:4'] ?? 0, c['do:5'] ?? 0], [1, 1, 1, 0, 0], 'each primary ran exactly once, none re-ran on resume');
    assert.deepEqual([c['undo:3'], c['undo:2'], c['undo:1'], c['undo:4'] ?? 0], [1, 1, 1, 0], 'each compensation ran exactly once');

    const { actions, ok } = chainOf(dataDir, runId);
    assert.equal(ok, true);
    const resumedAt = actions.find((a) => a.type === 'PlanResumed')!.seq;
    assert.ok(!actions.some((a) => a.seq > resumedAt && a.type === 'StepStarted' && /^s\d$/.test(a.data.name as string)), 'no primary step started after the resume');
    assert.deepEqual([...new Set(actions.filter((a) => a.type === 'CompensationStarted').map((a) => a.data.primary))], ['s3', 's2', 's1'], 'LIFO across the crash');
    assert.deepEqual(actions.filter((a) => a.type === 'CompensationCompleted' && a.data.ok === true).map((a) => a.data.primary), ['s3', 's2', 's1']);
  });
}

// -------------------------------------------------------------------------------------------------
// (b) A crash during a step.parallel block

test('crash in a step.parallel block of 3 branches × 4 calls: resume completes every branch at its own point, each effect exactly once', { timeout: 60_000 }, async (t) => {
  const { dir, dataDir, dbPath, cleanup } = tempDir();
  t.after(cleanup);
  const branch = (b: string): string => `(do ${[1, 2, 3, 4].map((i) => `(step "${b}${i}" (call :svc.do "${b}${i}"))`).join(' ')} :${b})`;
  const source = `(step.parallel ${branch('a')} ${branch('b')} ${branch('c')})`;
  const first = await drive(dir, { mode: 'run', dataDir, source, bombAt: 7, bombWhen: 'after', delayMs: 5 });
  assert.equal(first.killed, true);
  const runId = first.runId!;
  const at = counters(dbPath);
  assert.equal(at.do, 7, 'killed after the 7th of 12 effects');
  const { end, pauses } = await resumeToEnd(dir, dataDir, dbPath, runId);
  assert.equal(end.status, 'completed', JSON.stringify(end));
  assert.deepEqual(end.value, ['a', 'b', 'c'], 'the join is in branch order');
  assert.ok(pauses.every((p) => p === 'outcome-unknown'));
  const c = counters(dbPath);
  for (const b of ['a', 'b', 'c']) for (const i of [1, 2, 3, 4]) assert.equal(c[`do:${b}${i}`], 1, `${b}${i} ran exactly once`);
  assert.equal(c.do, 12);
  const { actions, ok } = chainOf(dataDir, runId);
  assert.equal(ok, true);
  // Effects done before the crash were not redone: after the resume, only the others were called.
  const resumedAt = actions.find((a) => a.type === 'PlanResumed')!.seq;
  const before = actions.filter((a) => a.seq < resumedAt && a.type === 'CapabilityResult').map((a) => a.stepPath.join('/'));
  const after = actions.filter((a) => a.seq > resumedAt && a.type === 'CapabilityResult').map((a) => a.stepPath.join('/'));
  assert.equal(before.length + after.length, 12, `${JSON.stringify(before)} + ${JSON.stringify(after)}`);
  assert.deepEqual(before.filter((s) => after.includes(s)), [], 'no step has a result both before and after the crash');
  // Each branch resumed at its own point: every branch's steps completed in order.
  for (const b of ['a', 'b', 'c']) {
    const done = actions.filter((a) => a.type === 'StepCompleted' && String(a.data.name).startsWith(b)).map((a) => a.data.name);
    assert.deepEqual(done, [`${b}1`, `${b}2`, `${b}3`, `${b}4`]);
  }
});

// -------------------------------------------------------------------------------------------------
// (c) Property: random sagas, failure points and crashes

test('property: random saga length, failing step and crash point → every effect that happened is compensated exactly once iff the saga failed; none runs twice', { timeout: 180_000 }, async (t) => {
  const seen = { runs: 0, crashed: 0, crashedTwice: 0, failed: 0, paused: 0 };
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 2, max: 6 }).chain((n) =>
        fc.record({
          n: fc.constant(n),
          failAt: fc.option(fc.integer({ min: 1, max: n }), { nil: null, freq: 3 }),
          // The k-th effect of the first process kills it (effects: at most n primaries + n-1 undos).
          crashAt: fc.option(fc.integer({ min: 1, max: 2 * n }), { nil: null, freq: 4 }),
          when: fc.constantFrom('before' as const, 'after' as const),
          // A second crash, in the first resuming process.
          crashAgain: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
        }),
      ),
      async ({ n, failAt, crashAt, when, crashAgain }) => {
        const { dir, dataDir, dbPath, cleanup } = tempDir();
        try {
          const first = await drive(dir, { mode: 'run', dataDir, source: saga(n, failAt), bombAt: crashAt ?? undefined, bombWhen: when });
          const runId = first.runId!;
          let end: Outcome = first;
          seen.runs++;
          if (first.killed) seen.crashed++;
          if (failAt !== null) seen.failed++;
          if (first.killed || first.status === 'paused') {
            if (first.status === 'paused') {
              // (Not expected: nothing pauses before a crash.)
              throw new Error(`unexpected pause ${JSON.stringify(first.waiting)}`);
            }
            const resumed = await resumeToEnd(dir, dataDir, dbPath, runId, first.killed ? crashAgain : null);
            end = resumed.end;
            if (resumed.kills > 0) seen.crashedTwice++;
            if (resumed.pauses.length > 0) seen.paused++;
          }
          const c = counters(dbPath);
          const failed = failAt !== null;
          assert.equal(end.status, failed ? 'failed' : 'completed', JSON.stringify(end));
          const last = failed ? failAt - 1 : n; // primaries that ran
          for (let i = 1; i <= n; i++) {
            const did = c[`do:${i}`] ?? 0;
            const undid = c[`undo:${i}`] ?? 0;
            assert.equal(did, i <= last ? 1 : 0, `step ${i} ran ${did} times (n=${n}, failAt=${failAt})`);
            assert.equal(undid, failed && i <= last ? 1 : 0, `step ${i} compensated ${undid} times (n=${n}, failAt=${failAt}, crashAt=${crashAt} ${when})`);
          }
          const { actions, ok } = chainOf(dataDir, runId);
          assert.equal(ok, true, 'the chain verifies');
          const order = [...new Set(actions.filter((a) => a.type === 'CompensationStarted').map((a) => a.data.primary as string))];
          assert.deepEqual(order, failed ? Array.from({ length: last }, (_, k) => `s${last - k}`) : [], 'compensations ran newest first');
        } finally {
          cleanup();
        }
      },
    ),
    { numRuns: 12, seed: Number(process.env.SAGA_SEED ?? 20240604), verbose: true },
  );
  t.diagnostic(JSON.stringify(seen));
  // The fixed seed explores crashes (once and twice), failures and person-decided pauses.
  if (process.env.SAGA_SEED === undefined) assert.ok(seen.crashed >= 3 && seen.failed >= 3 && seen.failed < seen.runs, `the property explored too little: ${JSON.stringify(seen)}`);
});
