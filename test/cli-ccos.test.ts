// The `ccos` command-line tool: runs, pauses and resumes across processes, replay, cancel, runs,
// chain (show, verify incl. tamper detection, export), capabilities, intents, call, help and exit
// codes. Runs the compiled CLI in child processes over temporary data directories (no TTY).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { Action } from '../src/ccos/chain.js';
import { LiveView } from '../src/cli/ccos-live.js';
import { stepTreeOf } from '../src/cli/ccos-format.js';
import { jsonLine, noStack, rewriteAsSchema2 } from './support.js';

const CLI = fileURLToPath(new URL('../src/cli/ccos.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ccos-cli-'));
const DATA = join(dir, 'data');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function ccosIn(dataDir: string | null, args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Run {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: '1', ...opts.env };
  if (!opts.env?.CCOS_HOME) delete env.CCOS_HOME;
  const r = spawnSync(process.execPath, [CLI, ...(dataDir ? ['--data-dir', dataDir] : []), ...args], { input: opts.input ?? '', encoding: 'utf8', cwd: dir, env, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ccos = (args: string[], opts?: { input?: string; env?: Record<string, string> }): Run => ccosIn(DATA, args, opts);

const json = <T = Record<string, unknown>>(r: Run): T => jsonLine<T>(r);

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const noAnsi = (s: string): void => assert.doesNotMatch(s, /\x1b\[/, 'no ANSI escapes without a terminal');

function chainOf(dataDir: string, runId?: string): Action[] {
  const r = ccosIn(dataDir, ['chain', 'show', '--json', ...(runId ? ['--run', runId] : [])]);
  assert.equal(r.status, 0, r.stderr);
  return json<{ actions: Action[] }>(r).actions;
}

const PLAN = file(
  'plan.rtfs',
  `;; a plan with steps and durable state
(let [n (step "count" (call :ccos.state.counter.inc "visits"))
      _ (step "remember" (call :ccos.state.kv.put "last" {:n n}))]
  (step "read" (call :ccos.state.kv.get "last")))
`,
);

// ---------------------------------------------------------------------------------------------
// run

test('run a plan with steps and state capabilities', () => {
  const r = ccos(['run', PLAN]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '{:n 1}\n');
  assert.match(r.stderr, /^run run-[0-9a-f-]+ completed\n$/);
  noAnsi(r.stdout + r.stderr);
  const again = ccos(['run', PLAN, '--json']);
  assert.equal(again.status, 0, again.stderr);
  const j = json(again);
  assert.equal(j.ok, true);
  assert.equal(j.status, 'completed');
  assert.equal(j.value, '{:n 2}');
  assert.deepEqual(j.valueJson, { n: 2 });
  assert.match(String(j.runId), /^run-/);
});

test('--input values reach `input`: RTFS data, else strings', () => {
  const p = file('inputs.rtfs', '[(:n input) (* 2 (:n input)) (:name input) (:tags input) (:word input) (:m input)]');
  const r = ccos(['run', p, '--input', 'n=5', '--input', 'name="x y"', '--input', 'tags=[:a :b]', '--input', 'word=hello', '--input', 'm={:k 1}']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '[5 10 "x y" [:a :b] "hello" {:k 1}]\n');
  const jf = file('in.json', JSON.stringify({ n: 7, name: 'from-json' }));
  const r2 = ccos(['run', p, '--input-file', jf, '--input', 'word=over']);
  assert.equal(r2.status, 0, r2.stderr);
  assert.equal(r2.stdout, '[7 14 "from-json" nil "over" nil]\n');
  const rf = file('in.rtfs', '{:n 3 :tags #{:z}}');
  const r3 = ccos(['run', p, '--input-file', rf]);
  assert.equal(r3.status, 0, r3.stderr);
  assert.equal(r3.stdout, '[3 6 nil #{:z} nil nil]\n');
  const bad = ccos(['run', p, '--input', 'novalue']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--input needs k=v/);
});

test('a failing plan exits 1 with file:line:col and a caret', () => {
  const p = file('fails.rtfs', '(step "a" (+ 1 2))\n(step "b"\n  (/ 1 0))\n');
  const r = ccos(['run', p]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[[a-z-]+\]: .*divi/i);
  assert.match(r.stderr, new RegExp(`--> ${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:3`));
  assert.match(r.stderr, /3 \|   \(\/ 1 0\)\)\n\s+\|   \^/);
  assert.match(r.stderr, /run run-[0-9a-f-]+ failed/);
  noStack(r.stderr);
  const j = json(ccos(['run', p, '--json']));
  assert.equal(j.ok, false);
  assert.equal(j.status, 'failed');
  const e = j.error as Record<string, unknown>;
  assert.equal(e.file, p);
  assert.equal(e.line, 3);
  assert.equal(e.col, 3);
});

test('a compile error is a diagnostic before anything runs (exit 1)', () => {
  const p = file('syntax.rtfs', '(step "a"\n  (call :ccos.state.counter.inc "never")\n');
  const r = ccos(['run', p]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error\[/);
  assert.match(r.stderr, /syntax\.rtfs:\d+:\d+/);
  noStack(r.stderr);
  const c = ccos(['call', 'ccos.state.counter.get', '"never"']);
  assert.equal(c.stdout, '0\n');
  const missing = ccos(['run', join(dir, 'nope.rtfs')]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read plan .*nope\.rtfs: no such file/);
});

// ---------------------------------------------------------------------------------------------
// pause, resume in a new process, replay, cancel

const ASK = file(
  'ask.rtfs',
  `(let [n (step "count" (call :ccos.state.counter.inc "asked"))
      who (step "ask" (call :ccos.user.ask "who are you?"))]
  (step "greet" (str "hello " who " #" n)))
`,
);

let pausedRun = '';

test('a plan waiting for a person exits 3 with the resume command; resume in a new process completes it once', () => {
  const r = ccos(['run', ASK]);
  assert.equal(r.status, 3, r.stderr);
  const m = /run (run-[0-9a-f-]+) paused, waiting for an answer to "who are you\?"/.exec(r.stdout);
  assert.ok(m, r.stdout);
  pausedRun = m[1];
  assert.match(r.stdout, /checkpoint: cp-[0-9a-f]{64}/);
  assert.ok(r.stdout.includes(`resume with: ccos resume ${pausedRun} --data-dir ${DATA} --answer VALUE`), r.stdout);
  assert.equal(ccos(['call', 'ccos.state.counter.get', '"asked"']).stdout, '1\n');

  const list = json<{ runs: { id: string; status: string; waiting: { kind: string } }[] }>(ccos(['runs', 'list', '--status', 'paused', '--json']));
  assert.deepEqual(list.runs.map((x) => x.id), [pausedRun]);
  assert.equal(list.runs[0].waiting.kind, 'answer');

  const resumed = ccos(['resume', pausedRun, '--answer', '"bob"']);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.equal(resumed.stdout, '"hello bob #1"\n');
  // The counter was incremented before the pause and not again on resume.
  const c = ccos(['call', 'ccos.state.counter.get', '"asked"']);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(c.stdout, '1\n');
  const incs = chainOf(DATA, pausedRun).filter((a) => a.type === 'CapabilityCall' && a.data.capability === 'ccos.state.counter.inc');
  assert.equal(incs.length, 1);

  const again = ccos(['resume', pausedRun, '--answer', '"eve"']);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already completed/);
});

test('replay says identical', () => {
  const r = ccos(['replay', pausedRun]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^identical \(\d+ requests\)/);
  const j = json(ccos(['replay', pausedRun.slice(0, -4), '--json'])); // a unique start of the id
  assert.equal(j.identical, true);
  assert.equal(j.runId, pausedRun);
});

test('runs made close together share the start of their ids: a short start is ambiguous, and the error says to give more', () => {
  // Run ids begin with their creation time in ms (hex), so the runs of this suite share "run-0".
  const r = ccos(['replay', 'run-0']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[ambiguous\]: run-0 matches \d+ run ids/);
  assert.match(r.stderr, /hint: give more characters/);
});

test('resume by the end of a run id with --fail; resume with --json', () => {
  const r = ccos(['run', ASK, '--json']);
  assert.equal(r.status, 3);
  const j = json(r);
  assert.equal(j.status, 'paused');
  assert.match(String(j.resume), /^ccos resume run-/);
  const f = ccos(['resume', String(j.runId).slice(-10), '--fail', 'nobody there', '--json']); // a unique end of the id
  assert.equal(f.status, 1);
  const fj = json(f);
  assert.equal(fj.status, 'failed');
  assert.match(JSON.stringify(fj.error), /nobody there/);
  const both = ccos(['resume', String(j.runId), '--answer', '1', '--fail', 'x']);
  assert.equal(both.status, 2);
});

test('cancel a paused run', () => {
  const r = ccos(['run', ASK]);
  assert.equal(r.status, 3);
  const id = /run (run-[0-9a-f-]+) paused/.exec(r.stdout)![1];
  const c = ccos(['cancel', id]);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(c.stdout, `run ${id} cancelled\n`);
  const show = json<{ run: { status: string } }>(ccos(['runs', 'show', id, '--json']));
  assert.equal(show.run.status, 'cancelled');
  assert.ok(chainOf(DATA, id).some((a) => a.type === 'PlanCancelled'));
  const again = ccos(['cancel', id]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already cancelled/);
  const resume = ccos(['resume', id, '--answer', '"x"']);
  assert.equal(resume.status, 1);
  const unknown = ccos(['cancel', 'run-does-not-exist']);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /no run run-does-not-exist/);
});

// ---------------------------------------------------------------------------------------------
// runs

test('runs list and runs show (text and --json)', () => {
  const list = ccos(['runs', 'list']);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /^ID\s+STATUS\s+FILE\s+CREATED\s+WAITING FOR\n/);
  assert.ok(list.stdout.includes(pausedRun));
  const j = json<{ ok: boolean; runs: Record<string, unknown>[] }>(ccos(['runs', 'list', '--json']));
  assert.equal(j.ok, true);
  for (const key of ['id', 'planId', 'intentId', 'file', 'status', 'created', 'updated', 'checkpoint', 'waiting', 'error']) assert.ok(key in j.runs[0], key);
  assert.equal(json<{ runs: unknown[] }>(ccos(['runs', 'list', '--limit', '1', '--json'])).runs.length, 1);

  const show = ccos(['runs', 'show', pausedRun]);
  assert.equal(show.status, 0, show.stderr);
  assert.match(show.stdout, /status:\s+completed/);
  assert.match(show.stdout, /file:\s+.*ask\.rtfs/);
  assert.match(show.stdout, /result:\s+"hello bob #1"/);
  assert.match(show.stdout, /steps:\n\s+✓ count \S+\s+=> 1\n\s+→ ccos\.state\.counter\.inc \["asked"\]\s+=> 1/);
  assert.match(show.stdout, /✓ ask .*=> "bob"\n\s+→ ccos\.user\.ask .*=> "bob"/);
  assert.match(show.stdout, /✓ greet/);

  const sj = json<{ ok: boolean; run: Record<string, unknown> & { steps: { name: string; status: string; children: { kind: string; capability?: string }[] }[] } }>(ccos(['runs', 'show', pausedRun, '--json']));
  assert.equal(sj.run.id, pausedRun);
  assert.equal(sj.run.status, 'completed');
  assert.equal(sj.run.value, '"hello bob #1"');
  assert.equal(sj.run.valueJson, 'hello bob #1');
  assert.deepEqual(sj.run.steps.map((s) => [s.name, s.status]), [['count', 'ok'], ['ask', 'ok'], ['greet', 'ok']]);
  assert.equal(sj.run.steps[0].children[0].capability, 'ccos.state.counter.inc');
  assert.equal(typeof sj.run.actions, 'number');
});

test('read-only commands on a missing data dir fail clearly', () => {
  const missing = join(dir, 'no-such-data');
  for (const args of [['runs', 'list'], ['chain', 'verify'], ['chain', 'show'], ['intents', 'list']]) {
    const r = ccosIn(missing, args);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, /no CCOS data in .*no-such-data/);
    noStack(r.stderr);
  }
  assert.equal(existsSync(missing), false);
  const j = json(ccosIn(missing, ['runs', 'list', '--json']));
  assert.equal(j.ok, false);
  assert.equal((j.error as { code: string }).code, 'data-dir');
});

test('CCOS_HOME selects the data directory', () => {
  const home = join(dir, 'home');
  const r = ccosIn(null, ['call', 'ccos.echo', '42'], { env: { CCOS_HOME: home } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '42\n');
  assert.ok(existsSync(join(home, 'ccos.db')));
  const l = ccosIn(null, ['runs', 'list', '--json'], { env: { CCOS_HOME: home } });
  assert.equal(json<{ runs: unknown[] }>(l).runs.length, 1);
});

// ---------------------------------------------------------------------------------------------
// chain

test('chain show and chain verify on an intact chain', () => {
  const r = ccos(['chain', 'show']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0], /^\s+1 \d\d:\d\d:\d\d\.\d{3} PlanStarted\s+run-/);
  assert.ok(lines.some((l) => /CapabilityCall\s+run-\S+\s+count\s+ccos\.state\.counter\.inc \["visits"\]/.test(l)), r.stdout);
  const last2 = ccos(['chain', 'show', '--limit', '2']).stdout.trim().split('\n');
  assert.equal(last2.length, 2);
  const byRun = chainOf(DATA, pausedRun);
  assert.ok(byRun.length > 5);
  assert.ok(byRun.every((a) => a.runId === pausedRun));
  const v = ccos(['chain', 'verify']);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /^ok: \d+ actions, \d+ seals\n$/);
  const vj = json(ccos(['chain', 'verify', '--json']));
  assert.equal(vj.ok, true);
});

test('chain export writes one full action per line', () => {
  const out = join(dir, 'chain.jsonl');
  const r = ccos(['chain', 'export', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  const lines = readFileSync(out, 'utf8').trim().split('\n');
  const total = json<{ actions: number }>(ccos(['chain', 'verify', '--json'])).actions;
  assert.equal(lines.length, total);
  let prev = '0'.repeat(64);
  lines.forEach((l, i) => {
    const a = JSON.parse(l) as Action;
    assert.equal(a.seq, i + 1);
    assert.match(a.hash, /^[0-9a-f]{64}$/);
    assert.equal(a.prevHash, prev);
    prev = a.hash;
    for (const k of ['id', 'type', 'time', 'data', 'stepPath']) assert.ok(k in a, k);
  });
  const one = ccos(['chain', 'export', '--run', pausedRun]);
  assert.equal(one.status, 0, one.stderr);
  const runLines = one.stdout.trim().split('\n').map((l) => JSON.parse(l) as Action);
  assert.ok(runLines.length > 3 && runLines.every((a) => a.runId === pausedRun));
});

test('chain verify detects an edited action and names its seq', () => {
  const data = join(dir, 'tamper-edit');
  assert.equal(ccosIn(data, ['run', PLAN]).status, 0);
  assert.equal(ccosIn(data, ['run', PLAN]).status, 0);
  assert.equal(ccosIn(data, ['chain', 'verify']).status, 0);
  const db = new Database(join(data, 'ccos.db'));
  const row = db.prepare("SELECT seq, body FROM actions WHERE type = 'CapabilityCall' AND body LIKE '%visits%' ORDER BY seq LIMIT 1").get() as { seq: number; body: string };
  assert.ok(row, 'a CapabilityCall of counter.inc is on the chain');
  const edited = row.body.replace('visits', 'visitz');
  assert.notEqual(edited, row.body);
  db.prepare('UPDATE action_rows SET body = ? WHERE seq = ?').run(edited, row.seq);
  db.close();
  const v = ccosIn(data, ['chain', 'verify']);
  assert.equal(v.status, 1, v.stdout);
  assert.match(v.stdout, new RegExp(`^seq ${row.seq}: .*edited`, 'm'));
  assert.match(v.stdout, /NOT OK/);
  const vj = json<{ ok: boolean; problems: { seq: number }[] }>(ccosIn(data, ['chain', 'verify', '--json']));
  assert.equal(vj.ok, false);
  assert.equal(vj.problems[0].seq, row.seq);
});

test('chain verify detects a deleted middle action', () => {
  const data = join(dir, 'tamper-delete');
  assert.equal(ccosIn(data, ['run', PLAN]).status, 0);
  assert.equal(ccosIn(data, ['run', PLAN]).status, 0);
  const db = new Database(join(data, 'ccos.db'));
  const { n } = db.prepare('SELECT COUNT(*) AS n FROM actions').get() as { n: number };
  const middle = Math.floor(n / 2);
  db.prepare('DELETE FROM action_rows WHERE seq = ?').run(middle);
  db.close();
  const v = ccosIn(data, ['chain', 'verify']);
  assert.equal(v.status, 1, v.stdout);
  assert.match(v.stdout, new RegExp(`^seq ${middle + 1}: actions ${middle}\\.\\.${middle} are missing`, 'm'));
});

// ---------------------------------------------------------------------------------------------
// capabilities

test('caps list and caps show', () => {
  const r = ccos(['caps', 'list']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^ID\s+VERSION\s+RISK\s+PROVIDER\s+DESCRIPTION/);
  assert.match(r.stdout, /^ccos\.echo\s+\S+\s+low\s+builtin\s+Returns its argument/m);
  const j = json<{ capabilities: { id: string; provider: string }[] }>(ccos(['caps', 'list', '--json']));
  assert.ok(j.capabilities.some((c) => c.id === 'ccos.user.ask' && c.provider === 'builtin'));
  const s = ccos(['caps', 'show', 'ccos.state.counter.get']);
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stdout, /id:\s+ccos\.state\.counter\.get/);
  assert.match(s.stdout, /params:\s+\[:union :string :keyword\]/);
  const sj = json<{ capability: { id: string; idempotent: boolean } }>(ccos(['caps', 'show', 'ccos.echo', '--json']));
  assert.equal(sj.capability.id, 'ccos.echo');
  const none = ccos(['caps', 'show', 'no.such']);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no capability no\.such/);
});

test('caps add registers RTFS capabilities usable by plans in a new process', () => {
  const caps = file(
    'caps.rtfs',
    `(capability :demo.double {:description "doubles" :input [:map [:x :int]] :output :int}
  (fn [{:keys [x]}] (* 2 x)))
`,
  );
  const r = ccos(['caps', 'add', caps]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'added demo.double\n');
  assert.match(ccos(['caps', 'list']).stdout, /^demo\.double\s+\S+\s+low\s+rtfs\s+doubles/m);
  const p = file('use-double.rtfs', '(step "double" (call :demo.double {:x 21}))');
  const run = ccos(['run', p]);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, '42\n');
  const bad = ccos(['call', 'demo.double', '{:x "no"}']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /demo\.double input/);
  const none = ccos(['caps', 'add', file('empty.rtfs', '(def x 1)')]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /defines no capability/);
});

test('an RTFS capability calling another capability: both calls are governed and on the chain', () => {
  const caps = file(
    'counting.rtfs',
    `(capability :demo.bump {:description "bumps a counter twice"}
  (fn [name] (call :ccos.state.counter.inc name) (call :ccos.state.counter.inc name)))
`,
  );
  assert.equal(ccos(['caps', 'add', caps, '--json']).status, 0);
  const r = ccos(['call', 'demo.bump', '"bumped"', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const j = json(r);
  assert.equal(j.value, '2');
  const actions = chainOf(DATA, String(j.runId));
  const calls = actions.filter((a) => a.type === 'CapabilityCall').map((a) => a.data.capability);
  assert.deepEqual(calls, ['demo.bump', 'ccos.state.counter.inc', 'ccos.state.counter.inc']);
  const results = actions.filter((a) => a.type === 'CapabilityResult').map((a) => a.data.capability);
  assert.deepEqual(results.sort(), ['ccos.state.counter.inc', 'ccos.state.counter.inc', 'demo.bump']);
  // The step tree nests the inner calls under the outer one.
  const show = ccos(['runs', 'show', String(j.runId)]);
  assert.match(show.stdout, /→ demo\.bump \["bumped"\]\s+=> 2.*\n\s+→ ccos\.state\.counter\.inc \["bumped"\]\s+=> 1.*\n\s+→ ccos\.state\.counter\.inc \["bumped"\]\s+=> 2/);
  // A deny pattern applies to the inner calls too.
  const denied = ccos(['run', file('bump.rtfs', '(call :demo.bump "d")'), '--deny', 'ccos.state.*']);
  assert.equal(denied.status, 1);
  assert.match(denied.stderr, /denied/);
});

// ---------------------------------------------------------------------------------------------
// intents

test('intents create, list, show, relate, status, and runs linked with --intent', () => {
  const a = ccos(['intents', 'create', 'cut p99 latency', '--constraint', 'max-cost=100', '--constraint', 'region=eu', '--success', 'p99 < 200ms']);
  assert.equal(a.status, 0, a.stderr);
  const ida = a.stdout.trim();
  assert.match(ida, /^intent-/);
  const b = json<{ intent: { id: string; constraints: unknown } }>(ccos(['intents', 'create', 'add a cache', '--json']));
  const idb = b.intent.id;
  assert.equal(ccos(['intents', 'relate', idb, ida, 'enables']).status, 0);
  const bad = ccos(['intents', 'relate', idb, ida, 'loves']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown relation loves/);
  const st = ccos(['intents', 'status', idb, 'suspended']);
  assert.equal(st.status, 0, st.stderr);
  assert.equal(st.stdout, `${idb} Suspended\n`);
  const run = ccos(['run', PLAN, '--intent', ida]);
  assert.equal(run.status, 0, run.stderr);
  const list = ccos(['intents', 'list']);
  assert.match(list.stdout, /cut p99 latency/);
  assert.match(list.stdout, new RegExp(`${idb}\\s+Suspended`));
  const show = ccos(['intents', 'show', ida]);
  assert.equal(show.status, 0, show.stderr);
  assert.match(show.stdout, /goal:\s+cut p99 latency/);
  assert.match(show.stdout, /status:\s+Completed/);
  assert.match(show.stdout, /constraints:\s+max-cost=100, region="eu"/);
  assert.match(show.stdout, /success:\s+p99 < 200ms/);
  assert.ok(show.stdout.includes(`${idb} enables this`), show.stdout);
  assert.match(show.stdout, /runs:\n\s+run-\S+\s+completed/);
  const sj = json<{ intent: { constraints: Record<string, unknown>; relations: unknown[]; runs: unknown[] } }>(ccos(['intents', 'show', ida, '--json']));
  assert.deepEqual(sj.intent.constraints, { 'max-cost': 100, region: 'eu' });
  assert.equal(sj.intent.relations.length, 1);
  assert.equal(sj.intent.runs.length, 1);
  const types = chainOf(DATA).map((x) => x.type);
  for (const t of ['IntentCreated', 'IntentRelationshipCreated', 'IntentStatusChanged']) assert.ok(types.includes(t as Action['type']), t);
  const missing = ccos(['intents', 'show', 'intent-nope']);
  assert.equal(missing.status, 1);
  const noIntent = ccos(['run', PLAN, '--intent', 'intent-nope']);
  assert.equal(noIntent.status, 1);
});

// ---------------------------------------------------------------------------------------------
// call

test('call goes through the gate and prints the result', () => {
  const r = ccos(['call', 'ccos.echo', '{:a 1}']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '{:a 1}\n');
  const j = json(ccos(['call', 'ccos.echo', '[1 "two" :three]', '--json']));
  assert.deepEqual(j.valueJson, [1, 'two', 'three']);
  const actions = chainOf(DATA, String(j.runId));
  assert.ok(actions.some((a) => a.type === 'CapabilityCall' && a.data.capability === 'ccos.echo'));
  const bad = ccos(['call', 'ccos.echo', '{:a']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^error\[/);
  noStack(bad.stderr);
});

test('call of an unknown capability exits 1 with a clear message and a PolicyDecision deny', () => {
  const r = ccos(['call', 'no.such.cap', '1', '--json']);
  assert.equal(r.status, 1);
  const j = json(r);
  assert.equal(j.status, 'failed');
  assert.match(JSON.stringify(j.error), /unknown capability no\.such\.cap/);
  const actions = chainOf(DATA, String(j.runId));
  const d = actions.find((a) => a.type === 'PolicyDecision');
  assert.ok(d, 'a PolicyDecision is on the chain');
  assert.equal(d.data.decision, 'deny');
  assert.equal(d.data.capability, 'no.such.cap');
  assert.ok(!actions.some((a) => a.type === 'CapabilityCall'));
  const t = ccos(['call', 'no.such.cap']);
  assert.equal(t.status, 1);
  assert.match(t.stderr, /unknown capability no\.such\.cap/);
  noStack(t.stderr);
});

// ---------------------------------------------------------------------------------------------
// help, version, usage errors

const COMMANDS = [
  ['run'], ['resume'], ['replay'], ['cancel'], ['runs'], ['runs', 'list'], ['runs', 'show'], ['chain'], ['chain', 'show'], ['chain', 'verify'], ['chain', 'export'],
  ['caps'], ['caps', 'list'], ['caps', 'show'], ['caps', 'add'], ['intents'], ['intents', 'list'], ['intents', 'show'], ['intents', 'create'], ['intents', 'relate'],
  ['intents', 'status'], ['call'],
];

test('--help on every command, ccos help COMMAND, ccos --help, --version', () => {
  const main = ccosIn(null, ['--help']);
  assert.equal(main.status, 0);
  assert.match(main.stdout, /^ccos — /);
  for (const c of COMMANDS) {
    const r = ccosIn(null, [...c, '--help']);
    assert.equal(r.status, 0, `${c.join(' ')} --help: ${r.stderr}`);
    assert.ok(r.stdout.startsWith(`ccos ${c.join(' ')} — `), `${c.join(' ')}: ${r.stdout.slice(0, 80)}`);
    assert.match(r.stdout, /Usage:/);
    const h = ccosIn(null, ['help', ...c]);
    assert.equal(h.status, 0);
    assert.equal(h.stdout, r.stdout);
  }
  assert.equal(existsSync(join(dir, '.ccos')), false, 'help creates no data dir');
  const v = ccosIn(null, ['--version']);
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^ccos \d+\.\d+\.\d+\n$/);
});

test('usage errors exit 2', () => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command `frobnicate`/],
    [['runs', 'frob'], /unknown command `ccos runs frob`/],
    [['run'], /needs FILE/],
    [['run', PLAN, '--bogus'], /unknown option --bogus/],
    [['run', PLAN, '--fuel', 'lots'], /--fuel needs a positive integer/],
    [['replay'], /needs RUN/],
    [['caps', 'show', 'a', 'b'], /unexpected argument `b`/],
    [['help', 'nothing'], /no help for unknown command/],
    [['--bogus'], /unknown option `--bogus`/],
    [['run', PLAN, '--durability', 'paranoid'], /--durability must be one of normal, strict, fenced, got `paranoid`/],
    [['call', 'ccos.echo', '1', '--strict', '--durability', 'normal'], /--strict and --durability normal contradict each other/],
    [['mcp', '--durability', 'bogus'], /--durability must be one of normal, strict, fenced, got `bogus`/],
  ];
  for (const [args, re] of cases) {
    const r = ccos(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.match(r.stderr, /hint: run `ccos .*--help`/);
    noStack(r.stderr);
  }
  const none = ccosIn(null, []);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /Usage:/);
  const j = json(ccos(['frobnicate', '--json']));
  assert.equal((j.error as { code: string }).code, 'usage');
});

test('--durability (and --strict): a plan that pauses runs and is resumed in another process at each level', () => {
  for (const level of [['--durability', 'normal'], ['--strict'], ['--durability', 'fenced']]) {
    const data = join(dir, `data-durability-${level.at(-1)}`);
    const run = ccosIn(data, ['run', ASK, ...level, '--json']);
    assert.equal(run.status, 3, run.stderr);
    // The resume command it suggests keeps the level.
    const suggested = json(run).resume as string;
    if (level[0] === '--strict') assert.match(suggested, / --durability strict --answer VALUE$/);
    else if (level[1] === 'fenced') assert.match(suggested, / --durability fenced --answer VALUE$/);
    else assert.doesNotMatch(suggested, /--durability/);
    const resumed = ccosIn(data, ['resume', json(run).runId as string, '--answer', '"ann"', ...level, '--json']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.equal(json(resumed).valueJson, 'hello ann #1');
    assert.equal(ccosIn(data, ['chain', 'verify']).status, 0);
  }
});

test('global options may come before the command', () => {
  const r = ccosIn(null, ['--data-dir', DATA, '--json', 'runs', 'list']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(json<{ runs: unknown[] }>(r).runs.length > 0);
});

test('--fuel, --allow and --deny reach the run', () => {
  const loop = file('loop.rtfs', '(loop [i 0] (if (< i 1000000) (recur (inc i)) i))');
  const r = ccos(['run', loop, '--fuel', '1000']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /fuel/);
  const echo = file('echo.rtfs', '(call :ccos.echo 1)');
  const denied = ccos(['run', echo, '--deny', 'ccos.*']);
  assert.equal(denied.status, 1);
  assert.match(denied.stderr, /ccos\.echo matches the deny pattern ccos\.\*/);
  const notAllowed = ccos(['run', echo, '--allow', 'demo.*']);
  assert.equal(notAllowed.status, 1);
  assert.match(notAllowed.stderr, /not in the allow list/);
  const allowed = ccos(['run', echo, '--allow', 'ccos.echo']);
  assert.equal(allowed.status, 0, allowed.stderr);
});

// ---------------------------------------------------------------------------------------------
// The live step tree (a fake terminal)

function fakeActions(): Action[] {
  let seq = 0;
  const mk = (type: Action['type'], stepPath: string[], data: Record<string, unknown>, extra: Partial<Action> = {}): Action =>
    ({ seq: ++seq, id: `act-${seq}`, parentId: null, runId: 'run-1', planId: 'plan-1', intentId: null, stepPath, type, time: new Date(1_700_000_000_000 + seq * 10).toISOString(), data, prevHash: '', hash: '', ...extra }) as Action;
  return [
    mk('PlanStarted', [], { file: 'p.rtfs' }),
    mk('StepStarted', ['load'], { name: 'load' }),
    mk('CapabilityCall', ['load'], { capability: 'svc.get', args: '["k"]', request: 'r1' }),
    mk('CapabilityResult', ['load'], { capability: 'svc.get', ok: true, result: '{:v 1}' }, { parentId: 'act-3', durationMs: 12 }),
    mk('StepCompleted', ['load'], { name: 'load', value: '{:v 1}' }),
    mk('StepStarted', ['ask'], { name: 'ask' }),
    mk('CapabilityCall', ['ask'], { capability: 'slow.thing', args: '[1]', request: 'r2' }),
  ];
}

test('the live view redraws a step tree with ANSI escapes and a spinner on a terminal', async () => {
  const writes: string[] = [];
  const out = { isTTY: true, columns: 80, rows: 30, write: (s: string) => writes.push(s) };
  const live = new LiveView(out, { color: true, intervalMs: 5 });
  for (const a of fakeActions()) live.onAction(a);
  await new Promise((r) => setTimeout(r, 60));
  const during = writes.join('');
  assert.match(during, /\x1b\[\?25l/, 'hides the cursor');
  assert.match(during, /\x1b\[\d+F\x1b\[J/, 'redraws in place');
  const frames = new Set([...during.matchAll(/([⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏])\x1b\[39m slow\.thing/g)].map((m) => m[1]));
  assert.ok(frames.size >= 2, `the spinner turns for the call in flight (frames: ${[...frames].join('')})`);
  live.stop();
  const all = writes.join('');
  assert.match(all, /\x1b\[\?25h$/, 'shows the cursor at the end');
  const tree = stepTreeOf(fakeActions());
  const lines = tree.render();
  assert.match(lines[0], /^✓ load 30ms\s+=> \{:v 1\}$/);
  assert.match(lines[1], /^ {2}→ svc\.get \["k"\]\s+=> \{:v 1\} 12ms$/);
  assert.match(lines[2], /^. ask /);
  assert.equal(tree.busy(), true);
});

test('runs on a non-terminal print no live output', () => {
  const r = ccos(['run', PLAN]);
  assert.equal(r.status, 0);
  assert.equal(r.stdout, `{:n ${json<{ value: string }>(ccos(['call', 'ccos.state.counter.get', '"visits"', '--json'])).value}}\n`);
  noAnsi(r.stdout + r.stderr);
});

test('a data dir written by an older CCOS is upgraded on open, saying so on stderr; --json output stays clean', () => {
  const data = join(dir, 'upgrade-data');
  const first = ccosIn(data, ['run', ASK, '--json']);
  assert.equal(first.status, 3, first.stderr);
  const runId = jsonLine<{ runId: string }>(first).runId;
  rewriteAsSchema2(join(data, 'ccos.db'));
  const list = ccosIn(data, ['runs', 'list', '--json']);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stderr, /upgrading the data dir from schema 2 to 4/);
  assert.ok(list.stdout.includes(runId), list.stdout);
  const again = ccosIn(data, ['resume', runId, '--answer', '"me"', '--json']);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stderr, '', 'upgraded once');
  const verify = ccosIn(data, ['chain', 'verify', '--json']);
  assert.equal(verify.status, 0, verify.stdout + verify.stderr);
});
