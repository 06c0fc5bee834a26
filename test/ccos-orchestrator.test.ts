// The orchestrator in one process: step semantics (retries with backoff, :on-fail, timeouts),
// the gate's checks (schemas, unknown capabilities, allow/deny lists), concurrency of
// step.parallel, checkpoints and resume, replay and divergence, journaled time, intents,
// cancellation, and clear errors for a damaged data dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CcosError, openCcos, valueToPlainJson, type Action, type Ccos, type RunResult } from '../src/ccos/index.js';
import { failsWith, tempNode } from './support.js';

const node = (t: { after: (fn: () => void) => void }): Ccos => tempNode(t, 'ccos-orch-');

const plain = (r: RunResult): unknown => (r.value === undefined ? undefined : valueToPlainJson(r.value));
const sleep = <T>(ms: number, v: T): Promise<T> => new Promise((r) => setTimeout(() => r(v), ms));
const of = (ccos: Ccos, runId: string, type: Action['type']): Action[] => ccos.chain.list({ runId }).filter((a) => a.type === type);

/** A run's journal in the order its requests were asked (request ids are numbered in that order). */
function journal(ccos: Ccos, runId: string): { request_id: string; kind: string; capability: string | null; status: string; answer: string | null; args_hash: string | null }[] {
  const rows = ccos.store.db.prepare('SELECT * FROM journal WHERE run_id = ?').all(runId) as ReturnType<typeof journal>;
  return rows.sort((a, b) => a.request_id.localeCompare(b.request_id, 'en', { numeric: true }));
}


function assertChainOk(ccos: Ccos): void {
  const report = ccos.verifyChain();
  assert.equal(report.ok, true, JSON.stringify(report.problems));
}

// ---------------------------------------------------------------------------------------------
// Steps

test('step retries with backoff: two failures then success → StepRetrying ×2, StepCompleted, 3 invocations', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'test.flaky' }, () => {
    calls++;
    if (calls <= 2) throw new Error(`transient failure ${calls}`);
    return calls * 10;
  });
  const r = await ccos.run(`(step "flaky" {:retries {:max 3 :backoff-ms 1}} (call :test.flaky))`);
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(plain(r), 30);
  assert.equal(calls, 3);
  const steps = ccos.chain.list({ runId: r.runId }).filter((a) => a.type.startsWith('Step'));
  assert.deepEqual(steps.map((a) => a.type), ['StepStarted', 'StepRetrying', 'StepRetrying', 'StepCompleted']);
  const retrying = steps.filter((a) => a.type === 'StepRetrying');
  assert.deepEqual(retrying.map((a) => [a.data.attempt, a.data.of, a.data.backoff_ms]), [[1, 3, 1], [2, 3, 2]], 'exponential backoff: 1 ms, then 2 ms');
  assert.match(JSON.stringify(retrying[0].data.error), /transient failure 1/);
  assert.deepEqual(of(ccos, r.runId, 'CapabilityResult').map((a) => a.data.ok), [false, false, true]);
  assertChainOk(ccos);
  // Replay reproduces the retries from the journal, without calling the capability.
  const replay = ccos.replay(r.runId);
  assert.equal(replay.identical, true, replay.divergence);
  assert.equal(calls, 3);
});

test('step retries wait with exponential backoff, and give up after :max retries with the last error', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'test.down' }, () => {
    calls++;
    throw new Error(`down #${calls}`);
  });
  const started = performance.now();
  const r = await ccos.run(`(step "down" {:retries {:max 2 :backoff-ms 40}} (call :test.down))`);
  const elapsed = performance.now() - started;
  assert.equal(r.status, 'failed');
  assert.equal(calls, 3, 'one attempt plus two retries');
  assert.equal(r.error?.code, 'provider-failed');
  assert.match(r.error!.message, /test\.down/);
  assert.match(r.error!.message, /down #3/, 'the error of the last attempt');
  assert.ok(elapsed >= 115, `waited 40 + 80 ms between attempts (took ${elapsed.toFixed(0)} ms)`);
  const types = ccos.chain.list({ runId: r.runId }).map((a) => a.type).filter((x) => x.startsWith('Step') || x === 'PlanAborted');
  assert.deepEqual(types, ['StepStarted', 'StepRetrying', 'StepRetrying', 'StepFailed', 'PlanAborted']);
  assert.equal(of(ccos, r.runId, 'StepFailed')[0].data.continued, false);
});

test(':on-fail :continue makes a failed step evaluate to nil and the plan goes on', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'test.broken' }, () => {
    calls++;
    throw new Error('broken');
  });
  const r = await ccos.run(`(let [a (step "may fail" {:on-fail :continue :retries {:max 1}} (call :test.broken))
                                  b (step "after" (call :ccos.echo "went on"))]
                              [a b (nil? a)])`);
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(plain(r), [null, 'went on', true]);
  assert.equal(calls, 2, 'retried once before continuing');
  const failed = of(ccos, r.runId, 'StepFailed');
  assert.equal(failed.length, 1);
  assert.equal(failed[0].data.continued, true);
  assert.match(JSON.stringify(failed[0].data.error), /broken/);
});

test('a step timeout stops a call that never answers: the run fails with code timeout, journal and chain intact', async (t) => {
  const ccos = node(t);
  let signal: AbortSignal | undefined;
  ccos.registerCapability({ id: 'test.hang' }, (_args, ctx) => {
    signal = ctx.signal;
    return new Promise(() => {});
  });
  const started = performance.now();
  // The inner step's larger limit cannot widen the outer one.
  const r = await ccos.run(`(step "outer" {:timeout-ms 50} (step "inner" {:timeout-ms 60000} (call :test.hang)))`);
  const elapsed = performance.now() - started;
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'timeout');
  assert.match(r.error!.message, /test\.hang/);
  assert.match(r.error!.message, /50 ms/);
  assert.ok(elapsed >= 45 && elapsed < 5000, `timed out after ~50 ms (${elapsed.toFixed(0)} ms)`);
  assert.equal(signal?.aborted, true, 'the provider was told to stop');
  const j = journal(ccos, r.runId);
  assert.deepEqual(j.filter((x) => x.status !== 'answered'), [], 'no call is left "started"');
  const call = j.find((x) => x.kind === 'call')!;
  assert.equal(call.capability, 'test.hang');
  assert.match(call.answer!, /timeout/);
  const result = of(ccos, r.runId, 'CapabilityResult');
  assert.equal(result.length, 1);
  assert.equal(result[0].data.ok, false);
  assert.equal(ccos.runs().find((x) => x.id === r.runId)!.status, 'failed');
  assertChainOk(ccos);
  assert.equal(ccos.replay(r.runId).identical, true);
});

test('a step timeout with retries retries a hung idempotent call and succeeds when it answers in time', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'test.slowfirst', idempotent: true }, () => (++calls === 1 ? new Promise(() => {}) : sleep(1, 'ok')));
  const r = await ccos.run(`(step "s" {:timeout-ms 30 :retries {:max 1}} (call :test.slowfirst))`);
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(plain(r), 'ok');
  assert.equal(calls, 2);
});

test('a timed-out NON-idempotent call has an unknown outcome: step retries do not run it again', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'test.charge' }, () => (++calls === 1 ? new Promise(() => {}) : sleep(1, 'charged again')));
  const r = await ccos.run(`(step "pay" {:timeout-ms 30 :retries {:max 2 :backoff-ms 1}} (call :test.charge))`);
  assert.equal(calls, 1, 'the charge that may have happened was not repeated');
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'timeout');
  assert.match(r.error!.message, /test\.charge/);
});

test('a provider that throws fails the run with a clear error naming the capability; plans can catch it', async (t) => {
  const ccos = node(t);
  ccos.registerCapability({ id: 'test.throws' }, () => {
    throw new TypeError('cannot read property of undefined');
  });
  const r = await ccos.run(`(call :test.throws 1)`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'provider-failed');
  assert.match(r.error!.message, /test\.throws/);
  assert.match(r.error!.message, /cannot read property of undefined/);
  assert.equal(r.error?.line, 1, 'the error points at the call in the plan');
  const res = of(ccos, r.runId, 'CapabilityResult');
  assert.equal(res[0].data.ok, false);
  const caught = await ccos.run(`(try (call :test.throws 1) (catch :provider-failed e (str "caught: " (ex-message e))))`);
  assert.equal(caught.status, 'completed');
  assert.match(plain(caught) as string, /^caught: .*test\.throws/);
});

test('arguments that do not match the input schema are refused before the provider runs (invalid-input, with the path)', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'test.typed', input: { rtfs: '[:map [:x :int]]' } }, () => ++calls);
  const r = await ccos.run(`(call :test.typed {:x "a"})`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'invalid-input');
  assert.match(r.error!.message, /test\.typed/);
  assert.match(r.error!.message, /\[:x\]/, 'names the path of the bad value');
  assert.match(r.error!.message, /:int/);
  assert.equal(calls, 0, 'the provider never ran');
  const decisions = of(ccos, r.runId, 'PolicyDecision');
  assert.equal(decisions.length, 1);
  assert.equal(decisions[0].data.decision, 'deny');
  assert.equal(decisions[0].data.rule, 'schema.input');
  assert.equal(of(ccos, r.runId, 'CapabilityCall').length, 0);
  // A valid call goes through.
  const ok = await ccos.run(`(call :test.typed {:x 7})`);
  assert.equal(ok.status, 'completed');
  assert.equal(calls, 1);
  // A missing key is also refused.
  const missing = await ccos.run(`(call :test.typed {:y 1})`);
  assert.equal(missing.error?.code, 'invalid-input');
  assert.match(missing.error!.message, /:x/);
});

test('a result that does not match the output schema fails the call with invalid-output', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'test.liar', output: { rtfs: '[:map [:n :int]]' } }, () => {
    calls++;
    return 'not a map';
  });
  const r = await ccos.run(`(call :test.liar)`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'invalid-output');
  assert.match(r.error!.message, /test\.liar/);
  assert.equal(calls, 1);
  const res = of(ccos, r.runId, 'CapabilityResult');
  assert.equal(res.length, 1);
  assert.equal(res[0].data.ok, false);
  assert.equal(res[0].data.result, undefined, 'the invalid value is not passed on as a result');
});

test('an unknown capability is denied with a PolicyDecision on the chain; nothing is journaled as started', async (t) => {
  const ccos = node(t);
  const r = await ccos.run(`(call :no.such.capability 1 2)`);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'unknown-capability');
  assert.match(r.error!.message, /no\.such\.capability/);
  const d = of(ccos, r.runId, 'PolicyDecision');
  assert.equal(d.length, 1);
  assert.deepEqual([d[0].data.capability, d[0].data.decision, d[0].data.rule], ['no.such.capability', 'deny', 'registry.unknown']);
  assert.equal(of(ccos, r.runId, 'CapabilityCall').length, 0);
  assert.deepEqual(journal(ccos, r.runId).map((j) => j.status), ['answered']);
  assertChainOk(ccos);
});

test('run allow and deny lists: deny wins, allow limits, wildcards match; denied providers never run', async (t) => {
  const ccos = node(t);
  const ran: string[] = [];
  for (const id of ['acme.read', 'acme.write', 'other.x']) ccos.registerCapability({ id }, () => (ran.push(id), id));
  const denied = await ccos.run(`(call :acme.write)`, { deny: ['acme.w*'] });
  assert.equal(denied.status, 'failed');
  assert.equal(denied.error?.code, 'policy-denied');
  assert.match(denied.error!.message, /acme\.w\*/);
  assert.equal(of(ccos, denied.runId, 'PolicyDecision')[0].data.rule, 'acl.deny');

  const notAllowed = await ccos.run(`(call :other.x)`, { allow: ['acme.*'] });
  assert.equal(notAllowed.error?.code, 'policy-denied');
  assert.equal(of(ccos, notAllowed.runId, 'PolicyDecision')[0].data.rule, 'acl.allow');

  const both = await ccos.run(`(call :acme.write)`, { allow: ['acme.*'], deny: ['acme.write'] });
  assert.equal(both.error?.code, 'policy-denied', 'deny takes precedence over allow');

  const allowed = await ccos.run(`[(call :acme.read) (try (call :acme.write) (catch :policy-denied e :refused))]`, { allow: ['acme.*'], deny: ['*.write'] });
  assert.equal(allowed.status, 'completed');
  assert.deepEqual(plain(allowed), ['acme.read', 'refused']);
  assert.deepEqual(ran, ['acme.read'], 'only the allowed capability ran');

  // A '.' in a pattern is literal, not a regex wildcard.
  const dot = await ccos.run(`(call :acme.read)`, { deny: ['acmeXread'] });
  assert.equal(dot.status, 'completed');
  const dot2 = await ccos.run(`(call :acme.read)`, { allow: ['acme?read'] });
  assert.equal(dot2.error?.code, 'policy-denied');
  // The lists are part of the run: a resumed run keeps them.
  const paused = await ccos.run(`(do (call :ccos.user.ask "go?") (call :acme.write))`, { deny: ['acme.write'] });
  assert.equal(paused.status, 'paused');
  const resumed = await ccos.resume(paused.runId, { answer: true });
  assert.equal(resumed.status, 'failed');
  assert.equal(resumed.error?.code, 'policy-denied');
  assert.deepEqual(ran, ['acme.read', 'acme.read']);
});

test('step.parallel runs branches concurrently and returns results in branch order', async (t) => {
  const ccos = node(t);
  const log: string[] = [];
  ccos.registerCapability({ id: 'test.slow' }, async ([name, ms]) => {
    log.push(`start ${name}`);
    await sleep(ms as number, null);
    log.push(`end ${name}`);
    return name;
  });
  // Warm up (compilation, statements) so the timing measures the calls.
  await ccos.run(`(call :ccos.echo 1)`);
  const started = performance.now();
  const r = await ccos.run(`(step.parallel (call :test.slow "a" 100) (call :test.slow "b" 100))`);
  const elapsed = performance.now() - started;
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(plain(r), ['a', 'b']);
  assert.ok(elapsed < 180, `two 100 ms calls in parallel took ${elapsed.toFixed(0)} ms`);
  assert.deepEqual(log.slice(0, 2).sort(), ['start a', 'start b'], 'both started before either ended');
  // The slower first branch still comes first.
  log.length = 0;
  const r2 = await ccos.run(`(step.parallel (call :test.slow "slow" 80) (call :test.slow "fast" 5) (+ 1 2))`);
  assert.deepEqual(plain(r2), ['slow', 'fast', 3]);
  assert.deepEqual(log, ['start slow', 'start fast', 'end fast', 'end slow']);
});

test('step.parallel with a failing branch raises the first failed branch error (in branch order)', async (t) => {
  const ccos = node(t);
  ccos.registerCapability({ id: 'test.failafter' }, async ([name, ms]) => {
    await sleep(ms as number, null);
    throw new Error(`branch ${name} failed`);
  });
  const r = await ccos.run(`(step.parallel (call :ccos.echo 0) (call :test.failafter "one" 40) (call :test.failafter "two" 1))`);
  assert.equal(r.status, 'failed');
  assert.match(r.error!.message, /branch one failed/);
});

// ---------------------------------------------------------------------------------------------
// Checkpoints, resume, replay

const TWO_ASKS = `(let [a (step "first" (call :ccos.user.ask "a?"))
                         b (step "second" (call :ccos.user.ask "b?"))]
                     [a b (call :ccos.state.counter.inc "after-asks")])`;

test('checkpoint ids are cp-<sha256>; resuming by explicit checkpoint id works, also from an older one', async (t) => {
  const ccos = node(t);
  const p1 = await ccos.run(TWO_ASKS);
  assert.equal(p1.status, 'paused');
  assert.match(p1.checkpoint!, /^cp-[0-9a-f]{64}$/);
  assert.deepEqual(p1.waiting, { kind: 'answer', prompt: 'a?' });
  const cps = ccos.store.db.prepare('SELECT id, reason FROM checkpoints WHERE run_id = ?').all(p1.runId) as { id: string; reason: string }[];
  assert.ok(cps.length >= 2);
  for (const c of cps) assert.match(c.id, /^cp-[0-9a-f]{64}$/);
  // The checkpoint id is the hash of the saved state.
  const state = ccos.store.db.prepare('SELECT state FROM checkpoints WHERE id = ?').pluck().get(p1.checkpoint) as string;
  const { createHash } = await import('node:crypto');
  assert.equal(p1.checkpoint, `cp-${createHash('sha256').update(state).digest('hex')}`);

  const p2 = await ccos.resume(p1.checkpoint!, { answer: 'A' });
  assert.equal(p2.status, 'paused');
  assert.equal(p2.runId, p1.runId);
  assert.notEqual(p2.checkpoint, p1.checkpoint);
  assert.equal((p2.waiting as { kind: string }).kind, 'answer');

  // Resume from the OLDER checkpoint: the first answer comes from the journal, not asked again.
  const done = await ccos.resume(p1.checkpoint!, { answer: 'B' });
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(plain(done), ['A', 'B', 1]);
  const resumed = of(ccos, p1.runId, 'PlanResumed');
  assert.deepEqual(resumed.map((a) => a.data.checkpoint), [p1.checkpoint, p1.checkpoint]);
  await assert.rejects(ccos.resume(p2.checkpoint!), (e: CcosError) => e.code === 'run-finished');
  await assert.rejects(ccos.resume('cp-' + '0'.repeat(64)), (e: CcosError) => e.code === 'not-found');
  assertChainOk(ccos);
  assert.equal(ccos.replay(p1.runId).identical, true);
});

test(
  'two runs of the same plan have distinct checkpoints: resuming by checkpoint id resumes that run',
  async (t) => {
    const ccos = node(t);
    const r1 = await ccos.run(`(step "ask" (call :ccos.user.ask "approve?"))`);
    const r2 = await ccos.run(`(step "ask" (call :ccos.user.ask "approve?"))`);
    assert.equal(r1.status, 'paused');
    assert.equal(r2.status, 'paused');
    assert.notEqual(r1.checkpoint, r2.checkpoint);
    const resumed = await ccos.resume(r2.checkpoint!, { answer: 'for run 2' });
    assert.equal(resumed.runId, r2.runId, 'the checkpoint of run 2 resumes run 2');
    assert.equal(ccos.runs().find((r) => r.id === r1.runId)!.status, 'paused', 'run 1 is untouched');
  },
);

test('two waiting calls in parallel: one answer serves one call, the run pauses again for the other', async (t) => {
  const ccos = node(t);
  const p = await ccos.run(`(step.parallel (call :ccos.user.ask "x?") (call :ccos.user.ask "y?"))`);
  assert.equal(p.status, 'paused');
  assert.ok(Array.isArray(p.waiting) && p.waiting.length === 2);
  const p2 = await ccos.resume(p.runId, { answer: 1 });
  assert.equal(p2.status, 'paused');
  const done = await ccos.resume(p.runId, { answer: 2 });
  assert.equal(done.status, 'completed');
  assert.deepEqual(plain(done), [1, 2]);
});

test('replay of a completed run is identical and runs no effect; editing the journal is reported as divergence', async (t) => {
  const ccos = node(t);
  let calls = 0;
  ccos.registerCapability({ id: 'test.add' }, ([a, b]) => (calls++, (a as number) + (b as number)));
  const r = await ccos.run(`(let [x (step "one" (call :test.add 1 2)) y (call :test.add x 10)] (call :ccos.state.counter.inc "c") (* y 2))`);
  assert.equal(r.status, 'completed');
  assert.equal(plain(r), 26);
  assert.equal(calls, 2);
  const replay = ccos.replay(r.runId);
  assert.equal(replay.identical, true, replay.divergence);
  assert.equal(replay.result, '26');
  assert.ok(replay.requests >= 5, `answered every request from the journal (${replay.requests})`);
  assert.equal(calls, 2, 'replay ran no capability');
  assert.equal(ccos.store.db.prepare("SELECT value FROM counters WHERE name = 'c'").pluck().get(), 1, 'nor any built-in effect');

  const rows = journal(ccos, r.runId).filter((j) => j.kind === 'call' && j.capability === 'test.add');
  assert.equal(rows.length, 2);
  // (1) The second call's arguments hash no longer matches what the plan asks.
  const db = new Database(ccos.store.dbPath);
  try {
    db.prepare('UPDATE journal SET args_hash = ? WHERE run_id = ? AND request_id = ?').run('0'.repeat(64), r.runId, rows[1].request_id);
    const d1 = ccos.replay(r.runId);
    assert.equal(d1.identical, false);
    assert.match(d1.divergence!, new RegExp(rows[1].request_id.replace('.', '\\.')));
    assert.match(d1.divergence!, /test\.add/);
    db.prepare('UPDATE journal SET args_hash = ? WHERE run_id = ? AND request_id = ?').run(rows[1].args_hash, r.runId, rows[1].request_id);
    assert.equal(ccos.replay(r.runId).identical, true, 'restored');
    // (2) An answer changed (y = 14 instead of 13): the final value differs from the recorded one.
    db.prepare('UPDATE journal SET answer = ? WHERE run_id = ? AND request_id = ?').run(JSON.stringify({ value: 14 }), r.runId, rows[1].request_id);
    const d2 = ccos.replay(r.runId);
    assert.equal(d2.identical, false);
    assert.match(d2.divergence!, /28/);
    assert.match(d2.divergence!, /26/);
    // (3) A journaled answer removed.
    db.prepare('DELETE FROM journal WHERE run_id = ? AND request_id = ?').run(r.runId, rows[0].request_id);
    const d3 = ccos.replay(r.runId);
    assert.equal(d3.identical, false);
    assert.match(d3.divergence!, /no journaled answer/);
  } finally {
    db.close();
  }
  // A different plan source (same run id) diverges too.
  const r2 = await ccos.run(`(call :test.add 5 5)`);
  ccos.store.db.prepare('UPDATE runs SET source = ? WHERE id = ?').run('(call :test.add 5 6)', r2.runId);
  assert.equal(ccos.replay(r2.runId).identical, false);
});

test(
  'replay detects an edited answer of a call made inside a step',
  async (t) => {
    const ccos = node(t);
    ccos.registerCapability({ id: 'test.add' }, ([a, b]) => (a as number) + (b as number));
    const r = await ccos.run(`(let [x (step "one" (call :test.add 1 2))] (* x 2))`);
    assert.equal(plain(r), 6);
    const call = journal(ccos, r.runId).find((j) => j.capability === 'test.add')!;
    const db = new Database(ccos.store.dbPath);
    try {
      db.prepare('UPDATE journal SET answer = ? WHERE run_id = ? AND request_id = ?').run(JSON.stringify({ value: 4 }), r.runId, call.request_id);
    } finally {
      db.close();
    }
    const d = ccos.replay(r.runId);
    assert.equal(d.identical, false, 'the journal says the call returned 4, but the step completed with 3');
  },
);

test('ccos.time.now is journaled: replay sees the recorded time, not the current one', async (t) => {
  const ccos = node(t);
  const r = await ccos.run(`(let [t (call :ccos.time.now)] [(:iso t) (:epoch-ms t)])`);
  assert.equal(r.status, 'completed');
  const [iso, ms] = plain(r) as [string, number];
  assert.equal(new Date(iso).getTime(), ms);
  await sleep(15, null);
  const replay = ccos.replay(r.runId);
  assert.equal(replay.identical, true, replay.divergence);
  assert.equal(replay.result, `["${iso}" ${ms}]`);
  const j = journal(ccos, r.runId).find((x) => x.capability === 'ccos.time.now')!;
  assert.match(j.answer!, new RegExp(iso.replace(/[.]/g, '\\.')));
});

test('a replay of a failed run is identical; a run that paused replays up to where it waits', async (t) => {
  const ccos = node(t);
  const f = await ccos.run(`(do (call :ccos.echo 1) (call :nope.nothing))`);
  assert.equal(f.status, 'failed');
  const rf = ccos.replay(f.runId);
  assert.equal(rf.identical, true, rf.divergence);
  const p = await ccos.run(`(do (call :ccos.echo 1) (call :ccos.user.ask "?"))`);
  const rp = ccos.replay(p.runId);
  assert.equal(rp.identical, true);
  assert.equal(rp.requests, 1);
});

// ---------------------------------------------------------------------------------------------
// Intents, cancellation, fuel, damaged data dirs

test('a run serving an intent moves it Active → Executing → Completed, recorded as IntentStatusChanged', async (t) => {
  const ccos = node(t);
  const intent = ccos.intents.create('count to two', { successCriteria: 'counter is 2' });
  assert.equal(intent.status, 'Active');
  const r = await ccos.run(`[(call :ccos.state.counter.inc "i") (call :ccos.state.counter.inc "i")]`, { intentId: intent.id });
  assert.equal(r.status, 'completed');
  assert.equal(ccos.intents.get(intent.id)!.status, 'Completed');
  const changes = ccos.chain.list().filter((a) => a.type === 'IntentStatusChanged' && a.intentId === intent.id);
  assert.deepEqual(changes.map((a) => [a.data.from, a.data.to]), [['Active', 'Executing'], ['Executing', 'Completed']]);
  // Ordered with the run: Executing after PlanStarted, Completed after PlanCompleted.
  const all = ccos.chain.list();
  const seqOf = (pred: (a: Action) => boolean): number => all.find(pred)!.seq;
  assert.ok(changes[0].seq > seqOf((a) => a.type === 'PlanStarted' && a.runId === r.runId));
  assert.ok(changes[1].seq > seqOf((a) => a.type === 'PlanCompleted' && a.runId === r.runId));
  assert.deepEqual(ccos.intents.runs(intent.id).map((x) => x.id), [r.runId]);
  assert.ok(of(ccos, r.runId, 'PlanStarted')[0].intentId === intent.id);
  assertChainOk(ccos);
});

test('an intent follows pauses and failures: Suspended while paused, Executing on resume, Failed when the run fails', async (t) => {
  const ccos = node(t);
  const intent = ccos.intents.create('ask then fail');
  const p = await ccos.run(`(do (call :ccos.user.ask "go?") (call :missing.cap))`, { intentId: intent.id });
  assert.equal(p.status, 'paused');
  assert.equal(ccos.intents.get(intent.id)!.status, 'Suspended');
  const r = await ccos.resume(p.runId, { answer: true });
  assert.equal(r.status, 'failed');
  assert.equal(ccos.intents.get(intent.id)!.status, 'Failed');
  const changes = ccos.chain.list().filter((a) => a.type === 'IntentStatusChanged').map((a) => a.data.to);
  assert.deepEqual(changes, ['Executing', 'Suspended', 'Executing', 'Failed']);
  assertChainOk(ccos);
});

test(
  'resuming a run that this same process is still driving is refused (run-busy), not reported as outcome-unknown',
  async (t) => {
    const ccos = node(t);
    let runId = '';
    ccos.subscribe((a) => {
      if (a.type === 'PlanStarted') runId = a.runId!;
    });
    let calls = 0;
    ccos.registerCapability({ id: 'test.slowinc' }, async () => {
      calls++;
      await sleep(5, null);
      return calls;
    });
    const first = ccos.run(`(loop [i 0] (if (< i 20) (do (call :test.slowinc) (recur (inc i))) :done))`);
    await sleep(30, null);
    assert.ok(runId);
    const second = ccos.resume(runId).then(
      (r) => ({ ok: true as const, r }),
      (e: CcosError) => ({ ok: false as const, e }),
    );
    const [r1, r2] = await Promise.all([first, second]);
    assert.equal(r1.status, 'completed');
    assert.equal(calls, 20);
    assert.equal(r2.ok, false, `the second driver should be refused, got ${JSON.stringify(r2.ok ? r2.r : null)}`);
    if (!r2.ok) assert.equal(r2.e.code, 'run-busy');
    assert.equal(of(ccos, runId, 'PlanPaused').length, 0, 'no false outcome-unknown pause was recorded');
  },
);

test('cancelling a paused run: cancelled at once, recorded and sealed; it can no longer be resumed', async (t) => {
  const ccos = node(t);
  const p = await ccos.run(`(do (call :ccos.user.ask "ok?") (call :ccos.state.counter.inc "never"))`);
  assert.equal(p.status, 'paused');
  const c = await ccos.cancel(p.runId);
  assert.equal(c.runId, p.runId);
  assert.equal(c.status, 'cancelled');
  assert.equal(ccos.runs().find((r) => r.id === p.runId)!.status, 'cancelled');
  const cancelled = of(ccos, p.runId, 'PlanCancelled');
  assert.equal(cancelled.length, 1);
  const seal = ccos.store.db.prepare('SELECT seq FROM seals WHERE seq = ?').get(cancelled[0].seq);
  assert.ok(seal, 'the cancellation is sealed');
  await failsWith(() => ccos.resume(p.runId, { answer: true }), 'run-finished', /cancelled/);
  await failsWith(() => ccos.cancel(p.runId), 'run-finished');
  await failsWith(() => ccos.cancel('run-nope'), 'not-found');
  assert.equal(ccos.store.db.prepare("SELECT COUNT(*) FROM counters WHERE name = 'never'").pluck().get(), 0);
  assertChainOk(ccos);
});

/**
 * Runs `n` calls of a slow capability whose third call cancels the run (as `ccos.cancel` from the
 * same process would, while it is being driven); checks that cancel() and the run both said
 * cancelled. Returns the run's result and how many calls started.
 */
async function cancelAtThirdTick(ccos: Ccos, n: number): Promise<{ r: RunResult; calls: number }> {
  let calls = 0;
  let runId = '';
  ccos.subscribe((a) => {
    if (a.type === 'PlanStarted') runId = a.runId!;
  });
  let cancelled: Promise<RunResult> | undefined;
  ccos.registerCapability({ id: 'test.tick' }, async () => {
    calls++;
    await sleep(2, null);
    if (calls === 3) cancelled = Promise.resolve(ccos.cancel(runId));
    return calls;
  });
  const r = await ccos.run(`(loop [i 0] (if (< i ${n}) (do (call :test.tick) (recur (inc i))) :done))`);
  assert.equal((await cancelled)?.status, 'cancelled');
  assert.equal(r.status, 'cancelled');
  return { r, calls };
}

test(
  'cancelling a running run in its own process: no call starts after cancel(), one driver, PlanCancelled recorded once',
  async (t) => {
    const ccos = node(t);
    const { r, calls } = await cancelAtThirdTick(ccos, 50);
    assert.equal(calls, 3, `calls after cancel: ${calls - 3}`);
    assert.equal(of(ccos, r.runId, 'PlanResumed').length, 0, 'no second driver');
    assert.equal(ccos.runs().find((x) => x.id === r.runId)!.status, 'cancelled');
    assert.equal(of(ccos, r.runId, 'PlanCancelled').length, 1);
    assertChainOk(ccos);
  },
);

test(
  'a run cancelled during its last call ends cancelled, not completed (cancel() said cancelled)',
  async (t) => {
    const ccos = node(t);
    let runId = '';
    ccos.subscribe((a) => {
      if (a.type === 'PlanStarted') runId = a.runId!;
    });
    let told: Promise<RunResult> | undefined;
    ccos.registerCapability({ id: 'test.cancelme' }, () => {
      told = Promise.resolve(ccos.cancel(runId));
      return 1;
    });
    const r = await ccos.run(`(do (call :test.cancelme) (call :ccos.state.counter.inc "after-cancel") 42)`);
    assert.equal((await told)?.status, 'cancelled');
    assert.equal(r.status, 'cancelled');
    assert.equal(ccos.runs().find((x) => x.id === r.runId)!.status, 'cancelled');
    assert.equal(ccos.store.db.prepare("SELECT COUNT(*) FROM counters WHERE name = 'after-cancel'").pluck().get(), 0);
  },
);

test('cancelling a running run stops it at a later request: status cancelled, recorded once, chain ok', async (t) => {
  const ccos = node(t);
  const { r, calls } = await cancelAtThirdTick(ccos, 200);
  assert.ok(calls >= 3 && calls < 200, `stopped early (${calls} calls)`);
  assert.equal(ccos.runs().find((x) => x.id === r.runId)!.status, 'cancelled');
  assert.ok(of(ccos, r.runId, 'PlanCancelled').length >= 1);
  assert.equal(of(ccos, r.runId, 'PlanCompleted').length, 0);
  await failsWith(() => ccos.resume(r.runId), 'run-finished');
  assertChainOk(ccos);
});

test('fuel limits runaway pure loops with a clear error', async (t) => {
  const ccos = node(t);
  const r = await ccos.run(`(loop [i 0] (recur (inc i)))`, { fuel: 10_000 });
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'fuel-exhausted');
  assert.match(r.error!.hint ?? '', /fuel/);
});

test('a data dir whose ccos.db is garbage gives CcosError data-dir with a clear message', (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-orch-'));
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dataDir, 'ccos.db'), Buffer.from('this is not a database at all\n'.repeat(400)));
  assert.throws(
    () => openCcos({ dataDir }),
    (e: unknown) => {
      assert.ok(e instanceof CcosError, `a CcosError, got ${(e as Error)?.constructor?.name}: ${(e as Error).message}`);
      assert.equal(e.code, 'data-dir');
      assert.match(e.message, /corrupt/);
      assert.ok(e.message.includes(path.join(dataDir, 'ccos.db')), 'names the file');
      assert.ok(e.hint && e.hint.length > 0, 'says what to do');
      return true;
    },
  );
  // A missing data dir with mustExist is a clear error too, and nothing is created.
  const missing = path.join(dataDir, 'nope');
  assert.throws(() => openCcos({ dataDir: missing, mustExist: true }), (e: CcosError) => e.code === 'data-dir' && e.message.includes(missing));
  assert.equal(fs.existsSync(missing), false);
});

test(
  'a data dir with damaged pages: reading the chain gives a CcosError (or a failed report), not a raw SQLite error',
  async (t) => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-orch-'));
    t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    const ccos = openCcos({ dataDir });
    for (let i = 0; i < 30; i++) await ccos.run(`(call :ccos.echo (:big input))`, { inputs: { big: `${'x'.repeat(3000)}${i}` } });
    ccos.close();
    const file = path.join(dataDir, 'ccos.db');
    const size = fs.statSync(file).size;
    const fd = fs.openSync(file, 'r+');
    const junk = Buffer.alloc(Math.floor(size / 2 / 4096) * 4096, 0xab);
    fs.writeSync(fd, junk, 0, junk.length, Math.floor(size / 4 / 4096) * 4096);
    fs.closeSync(fd);
    let again: Ccos;
    try {
      again = openCcos({ dataDir });
    } catch (e) {
      assert.ok(e instanceof CcosError && e.code === 'data-dir');
      return;
    }
    try {
      let report;
      try {
        report = again.verifyChain();
      } catch (e) {
        assert.ok(e instanceof CcosError, `verifyChain threw ${(e as Error).constructor.name}: ${(e as Error).message}`);
        assert.equal(e.code, 'data-dir');
        return;
      }
      assert.equal(report.ok, false);
    } finally {
      again.close();
    }
  },
);

// ---------------------------------------------------------------------------------------------
// Checkpoint storage: unit sources are stored once, as blobs

const STEPPED = `;; ${'a comment that makes the source larger than the rest of a checkpoint '.repeat(40)}
(let [a (step "one" (call :ccos.echo 1))
      b (step "two" (call :ccos.user.ask "go on?"))]
  (step "three" (+ a b)))`;

/** A data dir with one run of STEPPED paused at its question; the node is closed. */
async function pausedStepped(t: { after: (fn: () => void) => void }): Promise<{ dataDir: string; runId: string; checkpoint: string }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-cp-src-'));
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const ccos = openCcos({ dataDir });
  try {
    const r = await ccos.run(STEPPED);
    assert.equal(r.status, 'paused');
    return { dataDir, runId: r.runId, checkpoint: r.checkpoint! };
  } finally {
    ccos.close();
  }
}

/** Resumes the run in a new node (so from its stored checkpoint) and checks it completes with 1 + 2. */
async function resumeFresh(t: { after: (fn: () => void) => void }, dataDir: string, runId: string): Promise<Ccos> {
  const ccos = openCcos({ dataDir });
  t.after(() => ccos.close());
  const done = await ccos.resume(runId, { answer: 2 });
  assert.equal(done.status, 'completed', JSON.stringify(done.error));
  assert.equal(plain(done), 3);
  return ccos;
}

test('checkpoints name the plan source by its blob: stored once for every checkpoint; a new process restores from it', async (t) => {
  const { dataDir, runId } = await pausedStepped(t);
  const db = new Database(path.join(dataDir, 'ccos.db'), { readonly: true });
  const states = db.prepare('SELECT state FROM checkpoints WHERE run_id = ?').pluck().all(runId) as string[];
  const blobs = db.prepare('SELECT content FROM blobs').pluck().all() as string[];
  db.close();
  assert.ok(states.length >= 4, `checkpoints at step boundaries and the pause (${states.length})`);
  for (const s of states) assert.ok(!s.includes('a comment that makes'), 'no checkpoint repeats the source');
  assert.ok(states.every((s) => s.length < STEPPED.length), 'each checkpoint is smaller than the source alone');
  assert.equal(blobs.filter((b) => JSON.parse(b) === STEPPED).length, 1, 'the source is stored once');
  const ccos = await resumeFresh(t, dataDir, runId);
  const plan = (JSON.parse(states[states.length - 1]) as { units: { file: string; sourceBlob: string }[] }).units.find((u) => u.file === '<plan>')!;
  assert.equal(ccos.chain.blob(plan.sourceBlob), STEPPED, 'the blob reads back as JSON after a restore read it');
  assert.equal(ccos.chain.blobText(plan.sourceBlob), JSON.stringify(STEPPED));
});

test('a checkpoint written with its sources inline (before they were blobs) still restores', async (t) => {
  const { dataDir, runId, checkpoint } = await pausedStepped(t);
  const db = new Database(path.join(dataDir, 'ccos.db'));
  const state = JSON.parse(db.prepare('SELECT state FROM checkpoints WHERE id = ?').pluck().get(checkpoint) as string) as { units: { id: string; file: string; sourceBlob?: string; source?: string }[] };
  state.units = state.units.map((u) => ({ id: u.id, file: u.file, source: JSON.parse(db.prepare('SELECT content FROM blobs WHERE hash = ?').pluck().get(u.sourceBlob) as string) as string }));
  const text = JSON.stringify(state);
  const inlineId = `cp-${createHash('sha256').update(text).digest('hex')}`;
  db.prepare("INSERT INTO checkpoints (id, run_id, created, reason, state) VALUES (?, ?, ?, 'pause', ?)").run(inlineId, runId, new Date().toISOString(), text);
  db.prepare('UPDATE runs SET checkpoint = ? WHERE id = ?').run(inlineId, runId);
  db.close();
  await resumeFresh(t, dataDir, runId);
});

test('a checkpoint whose source blob was altered is refused on resume, naming the unit; chain verify reports the blob', async (t) => {
  const { dataDir, runId, checkpoint } = await pausedStepped(t);
  const db = new Database(path.join(dataDir, 'ccos.db'));
  const state = JSON.parse(db.prepare('SELECT state FROM checkpoints WHERE id = ?').pluck().get(checkpoint) as string) as { units: { file: string; sourceBlob: string }[] };
  const plan = state.units.find((u) => u.file === '<plan>')!;
  db.prepare('UPDATE blobs SET content = ? WHERE hash = ?').run(JSON.stringify('(+ 1 1)'), plan.sourceBlob);
  db.close();
  const ccos = openCcos({ dataDir });
  t.after(() => ccos.close());
  await failsWith(() => ccos.resume(runId, { answer: 2 }), 'checkpoint', /source of unit u-[0-9a-f]+ \(<plan>\).*missing or altered/);
  const report = ccos.verifyChain();
  assert.equal(report.ok, false);
  assert.ok(report.problems.some((p) => p.problem.includes(plan.sourceBlob)), JSON.stringify(report.problems));
});
