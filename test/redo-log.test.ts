// The redo log: what a store persists without committing survives a crash, and is redone exactly
// once by the next node to open the data dir — even when another process wrote in between.
// Crashes are real (`kill -9` of a child process) or simulated on a copy of the files (afterCrash).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CcosError, openCcos, type Ccos } from '../src/ccos/index.js';
import { processAlive, processStartTime } from '../src/ccos/processes.js';
import { readLog, redoBatch, redoDir, redoLine, redoMapped, RedoLog } from '../src/ccos/store/redo-log.js';
import { journalKey } from '../src/ccos/store/sqlite.js';
import { canonicalJson } from '../src/common/canonical.js';
import { afterCrash } from './support.js';

const LIB_URL = new URL('../src/ccos/index.js', import.meta.url).href;

/**
 * Child: opens the data dir, then for each group writes state_kv keys and chain actions with
 * `deferredTx`, persists them, and commits if told to; then writes `unpersisted` keys; then runs
 * `plan` if given (printing its result), or resumes run `resume` with the answer "yes", dying
 * inside the first call of `test.effect`, after its effect; and dies by SIGKILL without closing
 * anything.
 */
const CHILD = `
import fs from 'node:fs';
import { openCcos } from ${JSON.stringify(LIB_URL)};
const cfg = JSON.parse(process.argv[2]);
// Groups end where the test says (no commit by age, however slow the machine).
const ccos = openCcos({ dataDir: cfg.dataDir, groupCommitMs: 600000 });
const put = (k) => ccos.store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run(k, 'v');
for (const g of cfg.groups) {
  ccos.store.deferredTx(() => {
    for (const k of g.keys ?? []) put(k);
    for (const a of g.actions ?? []) ccos.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: a } });
  });
  ccos.store.persist();
  if (g.commit) ccos.store.commit();
}
ccos.store.deferredTx(() => (cfg.unpersisted ?? []).forEach(put));
if (cfg.plan) {
  const r = await ccos.run(cfg.plan);
  process.stdout.write(JSON.stringify({ runId: r.runId, status: r.status }) + '\\n');
}
if (cfg.resume) {
  // A non-idempotent effect outside CCOS (a line in a file); the process dies right after it.
  ccos.registerCapability({ id: 'test.effect' }, () => {
    fs.appendFileSync(cfg.effects, 'x\\n');
    process.kill(process.pid, 'SIGKILL');
  });
  await ccos.resume(cfg.resume, { answer: 'yes' });
}
process.kill(process.pid, 'SIGKILL');
`;

interface Group {
  keys?: string[];
  actions?: string[];
  commit?: boolean;
}

interface ChildExtra {
  plan?: string;
  resume?: string;
  effects?: string;
}

function setup(t: { after: (fn: () => void) => void }): { dir: string; dataDir: string; crash: (groups: Group[], unpersisted?: string[], extra?: ChildExtra) => string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-redo-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'child.mjs'), CHILD);
  const dataDir = path.join(dir, 'data');
  const crash = (groups: Group[], unpersisted: string[] = [], extra: ChildExtra = {}): string => {
    const r = spawnSync(process.execPath, [path.join(dir, 'child.mjs'), JSON.stringify({ dataDir, groups, unpersisted, ...extra })], { encoding: 'utf8' });
    assert.equal(r.signal, 'SIGKILL', `the child died by SIGKILL; stderr: ${r.stderr}`);
    return r.stdout;
  };
  return { dir, dataDir, crash };
}

/** A node in this process over a fresh data dir whose groups end only where the test commits. */
function groupedNode(t: { after: (fn: () => void) => void }): { ccos: Ccos; dataDir: string } {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-redo-'));
  const ccos = openCcos({ dataDir, groupCommitMs: 600_000 });
  t.after(() => {
    ccos.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return { ccos, dataDir };
}

const keys = (dataDir: string): string[] => {
  const db = new Database(path.join(dataDir, 'ccos.db'), { readonly: true });
  try {
    return db.prepare("SELECT key FROM state_kv WHERE key LIKE 'k%' ORDER BY key").pluck().all() as string[];
  } finally {
    db.close();
  }
};

const registered = (actions: { type: string; data: Record<string, unknown> }[]): string[] =>
  actions.filter((a) => a.type === 'CapabilityRegistered' && String(a.data.capability).startsWith('x')).map((a) => String(a.data.capability));

test('redo: what was persisted survives kill -9 without a commit and is redone on open; what was not is lost', (t) => {
  const { dataDir, crash } = setup(t);
  crash([{ keys: ['k1', 'k2'], actions: ['x1'] }, { keys: ['k3'], actions: ['x2'] }], ['k4']);
  assert.deepEqual(keys(dataDir), [], 'nothing was committed');
  assert.equal(fs.readdirSync(path.join(dataDir, 'redo')).length, 1, 'the dead process left its log');
  const ccos = openCcos({ dataDir });
  try {
    assert.deepEqual(keys(dataDir), ['k1', 'k2', 'k3'], 'the persisted writes were redone (and committed), the last one lost');
    assert.deepEqual(registered(ccos.chain.list()), ['x1', 'x2']);
    assert.equal(ccos.verifyChain().ok, true, JSON.stringify(ccos.verifyChain().problems));
    assert.deepEqual(fs.readdirSync(path.join(dataDir, 'redo')), [], 'the log is gone once redone');
    assert.equal(ccos.store.db.prepare("SELECT COUNT(*) FROM meta WHERE key LIKE 'redo:%'").pluck().get(), 0, 'and so is its marker');
  } finally {
    ccos.close();
  }
});

test('redo: a run that paused just before kill -9 is paused, not lost, and resumes in another process', async (t) => {
  const { dataDir, crash } = setup(t);
  const out = JSON.parse(crash([], [], { plan: '(str "answer: " (call :ccos.user.ask "ok?"))' })) as { runId: string; status: string };
  assert.equal(out.status, 'paused');
  const db = new Database(path.join(dataDir, 'ccos.db'), { readonly: true });
  assert.equal(db.prepare('SELECT status FROM runs WHERE id = ?').pluck().get(out.runId), 'running', 'the pause was not committed');
  db.close();
  const ccos = openCcos({ dataDir });
  try {
    assert.equal(ccos.runs().find((r) => r.id === out.runId)?.status, 'paused');
    const r = await ccos.resume(out.runId, { answer: 'yes' });
    assert.equal(r.status, 'completed');
    assert.equal(r.value, 'answer: yes');
    assert.equal(ccos.verifyChain().ok, true);
  } finally {
    ccos.close();
  }
});

test('redo: a paused run resumed by a process that died before committing is not re-run by a node that was open all along', async (t) => {
  const { dir, dataDir, crash } = setup(t);
  const effects = path.join(dir, 'effects');
  const count = (): number => (fs.existsSync(effects) ? fs.readFileSync(effects, 'utf8').length / 2 : 0);
  const ccos = openCcos({ dataDir });
  try {
    ccos.registerCapability({ id: 'test.effect' }, () => (fs.appendFileSync(effects, 'x\n'), count()));
    const paused = await ccos.run('(do (call :ccos.user.ask "go?") (call :test.effect 1) :done)');
    assert.equal(paused.status, 'paused');
    ccos.store.commit();
    // Another process resumes the run, runs the effect, and dies before its group is committed:
    // on disk the run still looks paused, and this node still holds its parked machine.
    crash([], [], { resume: paused.runId, effects });
    assert.equal(count(), 1);
    // A replay here sees what the dead process journaled: the answer to the ask, then the effect.
    const replayed = ccos.replay(paused.runId);
    assert.equal(replayed.requests, 1, JSON.stringify(replayed));
    assert.match(replayed.result ?? '', /run is running/);
    // The answer is the dead process's (it is journaled there); the call in flight at its death
    // is not run again: `answer` also settles a call whose outcome is unknown.
    const r = await ccos.resume(paused.runId, { answer: 'yes' });
    assert.equal(r.status, 'completed', JSON.stringify(r));
    assert.equal(count(), 1, 'the effect was not run again');
    const results = ccos.chain.list({ runId: paused.runId }).filter((a) => a.type === 'CapabilityResult' && a.data.capability === 'test.effect');
    assert.deepEqual(results.map((a) => a.data.answered_by), ['resume'], 'its outcome was taken as unknown and settled by the resume');
    assert.equal(ccos.verifyChain().ok, true);
  } finally {
    ccos.close();
  }
});

test('redo: groups already committed are not redone again, though their lines are still in the file', (t) => {
  const { dataDir, crash } = setup(t);
  // Group 1 is long and committed; group 2, shorter, overwrites its start and is only persisted:
  // the file holds group 2's lines, then what is left of group 1's.
  const long = Array.from({ length: 30 }, (_, i) => `k1-${String(i).padStart(2, '0')}`);
  crash([{ keys: long, actions: ['x1'], commit: true }, { keys: ['k2'], actions: ['x2'] }]);
  const log = fs.readdirSync(path.join(dataDir, 'redo'))[0];
  const text = fs.readFileSync(path.join(dataDir, 'redo', log), 'utf8');
  assert.ok(text.includes('k1-29'), 'group 1 is still in the file');
  assert.deepEqual([...new Set(readLog(path.join(dataDir, 'redo', log)).map((r) => r.group))], [2], 'the log reads as group 2 alone');
  const ccos = openCcos({ dataDir });
  try {
    assert.deepEqual(keys(dataDir), [...long, 'k2']);
    assert.deepEqual(registered(ccos.chain.list()), ['x1', 'x2'], 'x1 once: its group was marked committed');
    assert.equal(ccos.verifyChain().ok, true);
  } finally {
    ccos.close();
  }
});

test('redo: actions are appended again at the head when another process appended meanwhile (renumbered, the chain verifies)', (t) => {
  const { dataDir, crash } = setup(t);
  const before = openCcos({ dataDir }); // open before the crash: it does not redo the log
  try {
    crash([{ actions: ['x-lost-1', 'x-lost-2'] }]);
    before.store.tx(() => before.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: 'x-meanwhile' } }));
  } finally {
    before.close();
  }
  const ccos = openCcos({ dataDir });
  try {
    assert.deepEqual(registered(ccos.chain.list()), ['x-meanwhile', 'x-lost-1', 'x-lost-2']);
    const report = ccos.verifyChain();
    assert.equal(report.ok, true, JSON.stringify(report.problems));
  } finally {
    ccos.close();
  }
});

test('redo: a log of the previous version (a call as an action and a "started" mark, journal rows as SQL) is redone', (t) => {
  const { dataDir } = setup(t);
  openCcos({ dataDir }).close();
  const runId = 'run-legacy';
  const call = canonicalJson({ data: { args: '[2]', capability: 'legacy.cap', decision: { decision: 'allow', rationale: 'r', rule: 'gate.default' }, request: 'r2.f0' }, id: 'act-legacy-call', run: runId, seq: 1, step: [], time: '2026-01-01T00:00:00.000Z', type: 'CapabilityCall' });
  const upsert = 'INSERT INTO journal (run_id, request_key, request_id, kind, capability, args_hash, status, answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, request_key) DO UPDATE SET status = excluded.status, answer = excluded.answer';
  const lines =
    redoLine(1, 'sql', JSON.stringify([upsert, [runId, journalKey('r1.f0'), 'r1.f0', 'call', 'legacy.cap', 'hash-1', 'answered', '{"value":1}']])) +
    redoLine(1, 'action', call) +
    redoLine(1, 'started', JSON.stringify([runId, 'r2.f0', 'legacy.cap', 'hash-2']));
  // Written as that version wrote it, by a process that is gone (no live process has id 0).
  const log = new RedoLog(redoDir(dataDir));
  log.append(lines, false);
  fs.copyFileSync(log.file, path.join(redoDir(dataDir), '0-1-1e9ac7.redo'));
  log.close();
  const ccos = openCcos({ dataDir });
  try {
    const journal = ccos.store.db.prepare('SELECT request_id, args_hash, status, answer FROM journal WHERE run_id = ? ORDER BY request_key').all(runId);
    assert.deepEqual(journal, [
      { request_id: 'r1.f0', args_hash: 'hash-1', status: 'answered', answer: '{"value":1}' },
      { request_id: 'r2.f0', args_hash: 'hash-2', status: 'started', answer: null },
    ]);
    assert.deepEqual(ccos.chain.list({ runId }).map((a) => [a.id, a.type]), [['act-legacy-call', 'CapabilityCall']]);
    assert.equal(ccos.verifyChain().ok, true);
    assert.deepEqual(fs.readdirSync(redoDir(dataDir)), [], 'the log is removed once redone');
  } finally {
    ccos.close();
  }
});

test('redo: a write made around the store (db.prepare) cannot be redone, so persist commits instead', (t) => {
  const { ccos, dataDir } = groupedNode(t);
  const commits = ccos.store.commits;
  ccos.store.deferredTx(() => ccos.store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('k-captured', 'v'));
  ccos.store.persist();
  assert.equal(ccos.store.commits, commits, 'captured writes are persisted, not committed');
  ccos.store.deferredTx(() => ccos.store.db.prepare('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('k-raw', 'v'));
  ccos.store.persist();
  assert.equal(ccos.store.commits, commits + 1, 'a raw write makes persist commit');
  assert.deepEqual(keys(dataDir), ['k-captured', 'k-raw']);
});

test('redo: when SQLite rolls back a group under the store, its persisted writes are redone by the next transaction', (t) => {
  const { ccos, dataDir } = groupedNode(t);
  const put = (k: string): void => void ccos.store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run(k, 'v');
  ccos.store.deferredTx(() => {
    put('k1');
    ccos.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: 'x1' } });
  });
  ccos.store.persist();
  ccos.store.deferredTx(() => put('k2')); // not persisted
  ccos.store.db.exec('ROLLBACK'); // as SQLite does after a full disk
  assert.throws(() => ccos.store.tx(() => put('k3')), /rolled back/);
  // Meanwhile a crash would leave the persisted writes, from the log.
  assert.deepEqual(afterCrash(dataDir, (db) => db.prepare("SELECT key FROM state_kv WHERE key LIKE 'k%' ORDER BY key").pluck().all()), ['k1']);
  ccos.store.tx(() => put('k4'));
  assert.deepEqual(keys(dataDir), ['k1', 'k4'], 'k1 redone, k2 lost with the group, k3 refused');
  assert.deepEqual(registered(ccos.chain.list()), ['x1']);
  assert.equal(ccos.verifyChain().ok, true);
});

test('redo: reading a log stops at its first line that is not a whole record', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-redo-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'x.redo');
  const good = redoLine(3, 'sql', JSON.stringify(['DELETE FROM meta WHERE key = ?', ['a']])) + redoLine(3, 'seal', 'null');
  fs.writeFileSync(file, good + '3 sql ["DELETE FROM meta WHE');
  assert.deepEqual(readLog(file).map((r) => [r.group, r.kind]), [[3, 'sql'], [3, 'seal']], 'a batch cut off mid-line');
  fs.writeFileSync(file, good + 'e = ?",["b"]]]\n' + redoLine(1, 'seal', 'null'));
  assert.deepEqual(readLog(file).map((r) => [r.group, r.kind]), [[3, 'sql'], [3, 'seal']], 'the remainder of an overwritten line ends the log');
  assert.deepEqual(readLog(path.join(dir, 'missing.redo')), []);
});

const line = (group: number, n: number): string => redoLine(group, 'sql', JSON.stringify(['DELETE FROM meta WHERE key = ?', [`k${n}`]]));
const keysOf = (file: string): string[] => readLog(file).map((r) => (JSON.parse(r.json) as [string, string[]])[1][0]);

test('redo: the addon that maps the log is built (npm install builds native/redo_map.c with node-gyp)', () => {
  assert.equal(redoMapped, true, 'without it, appends fall back to write(): correct, but slower; see the output of npm install');
});

for (const sync of [false, true]) {
  // A log that syncs is written; it syncs some batches, as a strict store's does (an effect's
  // start is written, its result written and synced).
  test(`redo: batches ${sync ? 'written, some of them synced,' : 'stored into the mapped file'} read back in order; started over, the older batches left after the new ones are not read`, (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-redo-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const log = new RedoLog(dir, sync);
    t.after(() => log.close());
    for (let n = 0; n < 5; n++) log.append(line(1, 2 * n) + line(1, 2 * n + 1), sync && n % 2 === 1);
    assert.deepEqual(keysOf(log.file), Array.from({ length: 10 }, (_, n) => `k${n}`));
    log.empty();
    log.append(line(2, 100), sync);
    log.append(line(2, 101) + line(2, 102), sync);
    assert.deepEqual(keysOf(log.file), ['k100', 'k101', 'k102'], 'what follows the new batches is older batches, not their continuation');
    // A batch larger than the mapping (1 MiB) makes it grow; the batches before it stay.
    const big = Array.from({ length: 30_000 }, (_, n) => line(2, 1000 + n)).join('');
    assert.ok(Buffer.byteLength(big) > 1024 * 1024);
    log.append(big, sync);
    log.append(line(2, 103), sync);
    const keys = keysOf(log.file);
    assert.equal(keys.length, 3 + 30_000 + 1);
    assert.deepEqual([keys[0], keys[3], keys.at(-2), keys.at(-1)], ['k100', 'k1000', 'k30999', 'k103']);
  });
}

const REDO_URL = new URL('../src/ccos/store/redo-log.js', import.meta.url).href;

/**
 * Child: appends batches to a redo log without end (each batch: two lines of ~3 KB with multi-byte
 * characters, numbered), starting the log over every 40 batches; prints the log's path once its
 * first batch is in.
 */
const APPENDER = `
import { RedoLog, redoLine } from ${JSON.stringify(REDO_URL)};
const log = new RedoLog(process.argv[2]);
const payload = (n) => JSON.stringify({ n, text: ('é-' + n + '-').repeat(400) });
for (let n = 1; ; n++) {
  log.append(redoLine(n, 'sql', payload(n)) + redoLine(n, 'seal', payload(n)), false);
  if (n === 1) process.stdout.write(log.file + '\\n'); // once a batch is in: the log is never empty
  if (n % 40 === 0) log.empty();
}
`;

test('redo: a log killed (kill -9) while batches are being stored reads back as whole batches, in order, and nothing else', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-redo-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'appender.mjs'), APPENDER);
  let roundsWithRecords = 0;
  for (let round = 0; round < 6; round++) {
    const child = spawn(process.execPath, [path.join(dir, 'appender.mjs'), path.join(dir, `logs-${round}`)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const started = new Promise<void>((resolve) => child.stdout.on('data', () => resolve()));
    await Promise.race([started, exited]);
    await new Promise((r) => setTimeout(r, 30 + round * 17)); // killed at a different point each round
    child.kill('SIGKILL');
    await exited;
    const file = out.split('\n')[0];
    assert.ok(file.endsWith('.redo'), `the child printed its log; stderr: ${err}`);
    const records = readLog(file);
    assert.ok(records.length % 2 === 0, `whole batches only (${records.length} records)`);
    // None: killed while the first batch after a start-over was stored (its header is broken
    // first), when everything before it was committed, so the log owes nothing.
    if (records.length === 0) continue;
    roundsWithRecords++;
    const first = records[0].group;
    records.forEach((r, i) => {
      const n = first + Math.floor(i / 2);
      assert.equal(r.group, n, `record ${i}: batches in order, none missing`);
      assert.equal(r.kind, i % 2 === 0 ? 'sql' : 'seal');
      assert.equal(r.json, JSON.stringify({ n, text: ('é-' + n + '-').repeat(400) }), `record ${i}: intact`);
    });
    assert.equal((first - 1) % 40, 0, 'the log reads from where it last started over');
  }
  assert.ok(roundsWithRecords >= 3, `most kills leave batches to read (${roundsWithRecords} of 6 did)`);
});

test('redo: reading stops at a batch a crash cut off (its trailer missing or not its own) and at one out of sequence', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-redo-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'x.redo');
  const a = redoBatch(7, line(1, 1));
  const b = redoBatch(8, line(1, 2) + line(1, 3));
  fs.writeFileSync(file, a + b);
  assert.deepEqual(keysOf(file), ['k1', 'k2', 'k3']);
  fs.writeFileSync(file, a + b.slice(0, -8));
  assert.deepEqual(keysOf(file), ['k1'], 'the second batch lost the end of its trailer');
  fs.writeFileSync(file, a + b.slice(0, 40) + a.slice(40 - b.length));
  assert.deepEqual(keysOf(file), ['k1'], "the second batch's start over an older batch's end: the trailer is not its own");
  fs.writeFileSync(file, a + redoBatch(9, line(1, 4)));
  assert.deepEqual(keysOf(file), ['k1'], 'a batch that does not follow the one before');
  fs.writeFileSync(file, Buffer.concat([Buffer.from(a), Buffer.alloc(4096)]));
  assert.deepEqual(keysOf(file), ['k1'], 'the zeros of a mapped file not written yet');
  fs.writeFileSync(file, Buffer.alloc(4096));
  assert.deepEqual(keysOf(file), []);
  const broken = Buffer.from(a + b);
  broken[0] = 0;
  fs.writeFileSync(file, broken);
  assert.deepEqual(keysOf(file), [], 'a first batch whose header is broken (being stored when the process died)');
  // Lines changed between a batch's header and trailer, as a process killed while storing a batch
  // over an older one of the same size, or a power loss writing back some pages of a batch and
  // not others, could leave them: the checksum does not match.
  assert.ok(b.includes('"k3"'));
  fs.writeFileSync(file, a + b.replace('"k3"', '"k9"'));
  assert.deepEqual(keysOf(file), ['k1'], 'a batch whose lines are not the ones its header was made for');
});

test('redo: a log framed before batches carried a checksum still reads, and still stops where a crash cut it off', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-redo-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'x.redo');
  const digits = (n: number, width: number): string => String(n).padStart(width, '0');
  const unchecked = (seq: number, lines: string): string => `~${digits(seq, 12)} ${digits(Buffer.byteLength(lines), 10)}\n${lines}~${digits(seq, 12)}\n`;
  const a = unchecked(7, line(1, 1));
  const b = unchecked(8, line(1, 2) + line(1, 3));
  fs.writeFileSync(file, a + b);
  assert.deepEqual(keysOf(file), ['k1', 'k2', 'k3']);
  fs.writeFileSync(file, a + b.slice(0, -8));
  assert.deepEqual(keysOf(file), ['k1']);
  fs.writeFileSync(file, a + unchecked(9, line(1, 4)));
  assert.deepEqual(keysOf(file), ['k1']);
});

test('redo: a log that cannot be redone stops the open with an error naming the file and the way out', (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-redo-'));
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  openCcos({ dataDir }).close();
  const file = path.join(dataDir, 'redo', '0-1-abcd.redo');
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(file, redoLine(1, 'sql', JSON.stringify(['INSERT INTO state_kv (key, value) VALUES (?, ?)', ['k-before', 'v']])) + redoLine(1, 'sql', JSON.stringify(['INSERT INTO no_such_table (x) VALUES (?)', [1]])));
  assert.throws(
    () => openCcos({ dataDir }),
    (e: unknown) => e instanceof CcosError && e.code === 'data-dir' && e.message.includes(file) && /no_such_table/.test(e.message) && /move the file/.test(e.hint ?? ''),
  );
  assert.deepEqual(keys(dataDir), [], 'nothing of it was applied');
  fs.renameSync(file, path.join(dataDir, 'set-aside.redo'));
  openCcos({ dataDir }).close();
});

test('processes: a zombie (exited, not reaped) and another incarnation of a pid count as dead', { skip: !fs.existsSync('/proc/self/stat') && 'needs /proc' }, async (t) => {
  assert.equal(processAlive(process.pid), true);
  const start = processStartTime(process.pid)!;
  assert.ok(start > 0);
  assert.equal(processAlive(process.pid, start), true);
  assert.equal(processAlive(process.pid, start + 1), false, 'the same pid, started at another time');
  // `sleep 0.05` is left unreaped by its parent, which becomes `sleep 5`: a zombie until then.
  const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  const zombie = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString()))));
  await new Promise((r) => setTimeout(r, 300));
  assert.match(fs.readFileSync(`/proc/${zombie}/stat`, 'utf8'), /\) Z /, 'the child is a zombie');
  assert.equal(processAlive(zombie), false);
  assert.equal(processAlive(parent.pid!), true);
});
