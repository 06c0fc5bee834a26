// Group commit: with normal durability, answers and bookkeeping wait in one open transaction and
// ride on the next commit that must happen anyway. These tests look at the database through a
// second connection (as another process, or the disk after a crash, would) to show what is
// durable when, and that nothing a later effect depends on is ever left uncommitted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { openCcos, type Ccos, type Durability } from '../src/ccos/index.js';
import fc from 'fast-check';
import { SqliteStore, journalKey } from '../src/ccos/store/sqlite.js';
import { PAUSE_SEAL_DELAY_MS } from '../src/ccos/chain.js';
import { afterCrash, rewriteAsSchema2, rewriteAsSchema3 } from './support.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-group-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A second, read-only connection: sees only what is committed. */
function onDisk<T>(dataDir: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path.join(dataDir, 'ccos.db'), { readonly: true, fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

function node(t: { after: (fn: () => void) => void }, durability: Durability = 'normal', groupCommitMs?: number): { ccos: Ccos; dataDir: string } {
  const dataDir = tempDir(t);
  const ccos = openCcos({ dataDir, workspaceRoot: dataDir, durability, groupCommitMs });
  t.after(() => ccos.close());
  return { ccos, dataDir };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Registers `id` as a capability that, each time it runs, records a count read by `sql` (whose one
 * parameter is the current run's id) from what a crash at that instant would leave.
 */
function probe(ccos: Ccos, dataDir: string, id: string, idempotent: boolean, sql: string): number[] {
  let runId = '';
  ccos.subscribe((a) => {
    if (a.type === 'PlanStarted') runId = a.runId!;
  });
  const seen: number[] = [];
  ccos.registerCapability({ id, idempotent }, (args) => {
    seen.push(afterCrash(dataDir, (db) => db.prepare(sql).pluck().get(runId) as number));
    return args[0];
  });
  return seen;
}

test('store: deferred writes are visible at once in-process, on disk only after a commit', (t) => {
  const dir = tempDir(t);
  const store = new SqliteStore(dir);
  t.after(() => store.close());
  const countOnDisk = (): number => onDisk(dir, (db) => db.prepare("SELECT COUNT(*) FROM state_kv WHERE key LIKE 'g/%'").pluck().get() as number);
  const put = (k: string): void => void store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run(`g/${k}`, '1');

  store.deferredTx(() => put('a'));
  store.deferredTx(() => put('b'));
  assert.equal(store.stmt("SELECT COUNT(*) FROM state_kv WHERE key LIKE 'g/%'").pluck().get(), 2, 'this connection reads its deferred writes');
  assert.equal(countOnDisk(), 0, 'another connection does not see them yet');
  const before = store.commits;
  store.tx(() => put('c'));
  assert.equal(store.commits, before + 1, 'one commit carried all three');
  assert.equal(countOnDisk(), 3);
});

test('store: a failing transaction inside an open group rolls back only itself', (t) => {
  const dir = tempDir(t);
  const store = new SqliteStore(dir);
  t.after(() => store.close());
  store.deferredTx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('kept', '1'));
  assert.throws(() =>
    store.tx(() => {
      store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('dropped', '1');
      throw new Error('boom');
    }),
  );
  store.commit();
  const keys = onDisk(dir, (db) => db.prepare('SELECT key FROM state_kv ORDER BY key').pluck().all());
  assert.deepEqual(keys, ['kept']);
});

test('store: a body that fails after writing in an open group takes back only its own writes (chain actions, provisional marks and rows before it are kept)', (t) => {
  const { ccos, dataDir } = node(t, 'normal', 600_000);
  const store = ccos.store;
  const put = (k: string): void => void store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run(k, '1');
  const journaled: string[] = [];
  store.onReplay('test-mark', (json) => journaled.push(json));
  store.deferredTx(() => {
    put('kept-1');
    ccos.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: 'kept.a' } });
    store.provisional('test-mark', '"in flight"', () => put('in-flight-mark'));
    const settled = store.provisional('test-mark', '"settled"', () => put('settled-mark'));
    assert.equal(settled.state, 'pending');
    store.settle(settled);
  });
  store.persist();
  store.deferredTx(() => put('kept-2'));
  const commits = store.commits;
  assert.throws(
    () =>
      store.deferredTx(() => {
        put('dropped');
        ccos.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: 'dropped.b' } });
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.equal(store.commits, commits + 1, 'the rows before the failed body were made again and committed');
  // Made again: the settled mark as any logged record (by its kind's replayer, as after a crash);
  // the one still in flight by its own write, as a commit would have.
  assert.deepEqual(journaled, ['"settled"']);
  store.deferredTx(() => put('after'));
  store.commit();
  const keys = onDisk(dataDir, (db) => db.prepare('SELECT key FROM state_kv ORDER BY key').pluck().all());
  assert.deepEqual(keys, ['after', 'in-flight-mark', 'kept-1', 'kept-2'], 'no row of the failed body; each mark made once');
  const caps = onDisk(dataDir, (db) => db.prepare("SELECT json_extract(body, '$.data.capability') FROM actions WHERE type = 'CapabilityRegistered' ORDER BY seq").pluck().all());
  assert.deepEqual(caps, ['kept.a']);
  assert.equal(ccos.chain.verify().ok, true);
});

test('store: after a write made around the store, a failing body uses a savepoint and keeps that write', (t) => {
  const { ccos, dataDir } = node(t, 'normal', 600_000);
  const store = ccos.store;
  store.deferredTx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('captured', '1'));
  store.deferredTx(() => store.db.prepare('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('raw', '1'));
  const commits = store.commits;
  assert.throws(
    () =>
      store.deferredTx(() => {
        store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('dropped', '1');
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.equal(store.commits, commits, 'rolled back to its savepoint, no commit');
  store.commit();
  assert.deepEqual(onDisk(dataDir, (db) => db.prepare('SELECT key FROM state_kv ORDER BY key').pluck().all()), ['captured', 'raw']);
});

test('store: deferred writes are committed by the group timer, and by close', async (t) => {
  const dir = tempDir(t);
  const store = new SqliteStore(dir);
  store.deferredTx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('timer', '1'));
  await sleep(30);
  assert.equal(onDisk(dir, (db) => db.prepare("SELECT COUNT(*) FROM state_kv WHERE key = 'timer'").pluck().get()), 1, 'committed within the group window');
  store.deferredTx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('close', '1'));
  store.close();
  assert.equal(onDisk(dir, (db) => db.prepare("SELECT COUNT(*) FROM state_kv WHERE key = 'close'").pluck().get()), 1, 'committed by close');
});

/** A store with strict durability that does not commit by itself, and the fdatasyncs made from then on. */
function strictStore(t: { after: (fn: () => void) => void }): { dir: string; store: SqliteStore; synced: number[] } {
  const dir = tempDir(t);
  const store = new SqliteStore(dir, { durability: 'strict', groupCommitMs: 600_000 });
  t.after(() => store.close());
  const synced: number[] = [];
  const fdatasyncSync = fs.fdatasyncSync;
  fs.fdatasyncSync = (fd: number) => {
    synced.push(fd);
    fdatasyncSync(fd);
  };
  t.after(() => (fs.fdatasyncSync = fdatasyncSync));
  return { dir, store, synced };
}

test('store: with strict durability a deferred write is in the synced redo log when deferredTx returns, committed later', (t) => {
  const { dir, store, synced } = strictStore(t);
  const before = store.commits;
  store.deferredTx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('s', '1'));
  assert.equal(store.commits, before, 'not committed');
  assert.equal(synced.length, 1, 'one fdatasync, of the redo log');
  assert.equal(onDisk(dir, (db) => db.prepare('SELECT COUNT(*) FROM state_kv').pluck().get()), 0);
  assert.equal(afterCrash(dir, (db) => db.prepare('SELECT COUNT(*) FROM state_kv').pluck().get()), 1, 'a crash now keeps it');
  store.commit();
  assert.equal(onDisk(dir, (db) => db.prepare('SELECT COUNT(*) FROM state_kv').pluck().get()), 1);
});

test('store: with strict durability a fence is written to the redo log unsynced, and the next deferred write syncs it, even one that writes nothing', (t) => {
  const { dir, store, synced } = strictStore(t);
  store.deferredTx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('before', '1'));
  assert.equal(synced.length, 1);
  store.durableTx(() => store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('fence', '1'), { fence: true });
  assert.equal(synced.length, 1, 'a fence is not synced with strict durability');
  assert.equal(afterCrash(dir, (db) => db.prepare('SELECT COUNT(*) FROM state_kv').pluck().get()), 2, 'but a crash of the process keeps it');
  store.deferredTx(() => store.stmt('SELECT COUNT(*) FROM state_kv').pluck().get());
  assert.equal(synced.length, 2, 'a deferred write with nothing new of its own syncs the fence before it');
  store.deferredTx(() => store.stmt('SELECT COUNT(*) FROM state_kv').pluck().get());
  assert.equal(synced.length, 2, 'and once it is synced, nothing more is');
});

test('a non-idempotent effect starts only once every earlier answer and its own start are on disk', async (t) => {
  const { ccos, dataDir } = node(t);
  const seen: { journaled: number; started: number }[] = [];
  let runId = '';
  ccos.subscribe((a) => {
    if (a.type === 'PlanStarted') runId = a.runId!;
  });
  ccos.registerCapability({ id: 'test.idem', idempotent: true }, (args) => args[0]);
  ccos.registerCapability({ id: 'test.effect', idempotent: false }, (args) => {
    // What a crash at this instant would leave: read from a copy of the files, not from this connection.
    seen.push(
      afterCrash(dataDir, (db) => ({
        journaled: db.prepare("SELECT COUNT(*) FROM journal WHERE run_id = ? AND status = 'answered' AND kind = 'call'").pluck().get(runId) as number,
        started: db.prepare("SELECT COUNT(*) FROM journal WHERE run_id = ? AND status = 'started'").pluck().get(runId) as number,
      })),
    );
    return args[0];
  });
  const r = await ccos.run('(loop [i 0] (if (< i 5) (do (call :test.idem i) (call :test.idem i) (call :test.effect i) (recur (inc i))) i))');
  assert.equal(r.status, 'completed');
  // Before the effect of round i: 3 calls per earlier round and this round's 2 idempotent ones.
  assert.deepEqual(seen, [0, 1, 2, 3, 4].map((i) => ({ journaled: 3 * i + 2, started: 1 })));
});

test('a call still in flight when its group commits has its "started" mark committed (another process sees it while the effect runs)', async (t) => {
  const { ccos, dataDir } = node(t, 'normal', 5);
  let runId = '';
  ccos.subscribe((a) => {
    if (a.type === 'PlanStarted') runId = a.runId!;
  });
  const statusOnDisk = (request: string): string | undefined =>
    onDisk(dataDir, (db) => db.prepare('SELECT status FROM journal WHERE run_id = ? AND request_id = ?').pluck().get(runId, request) as string | undefined);
  const seen: (string | undefined)[] = [];
  const requests: string[] = [];
  ccos.subscribe((a) => {
    if (a.type === 'CapabilityCall') requests.push(String(a.data.request));
  });
  ccos.registerCapability({ id: 'test.quick', idempotent: false }, (args) => args[0]);
  ccos.registerCapability({ id: 'test.slow', idempotent: false }, async (args) => {
    await sleep(30); // several group windows: the group commits while this effect runs
    seen.push(statusOnDisk(requests[requests.length - 1]));
    return args[0];
  });
  const r = await ccos.run('(do (call :test.quick 1) (call :test.slow 2) (call :test.quick 3))');
  assert.equal(r.status, 'completed');
  assert.deepEqual(seen, ['started'], 'another process sees the slow call as started while it runs');
  const rows = onDisk(dataDir, (db) => db.prepare("SELECT request_id, status FROM journal WHERE run_id = ? AND kind = 'call' ORDER BY request_key").all(runId));
  assert.deepEqual(rows, requests.map((request_id) => ({ request_id, status: 'answered' })));
});

/**
 * Each call request of the run on disk: how many CapabilityCall and CapabilityResult actions it
 * has, and whether its result follows its call and names it as parent.
 */
function callsOnChain(dataDir: string, runId: string): { request: string; calls: number; results: number; resultAfterCall: boolean }[] {
  return onDisk(dataDir, (db) => {
    const actions = db.prepare("SELECT seq, id, type, body FROM actions WHERE run_id = ? AND type IN ('CapabilityCall', 'CapabilityResult') ORDER BY seq").all(runId) as { seq: number; id: string; type: string; body: string }[];
    const requests = db.prepare("SELECT request_id FROM journal WHERE run_id = ? AND kind = 'call' ORDER BY request_key").pluck().all(runId) as string[];
    return requests.map((request) => {
      const calls = actions.filter((a) => a.type === 'CapabilityCall' && JSON.parse(a.body).data.request === request);
      const results = actions.filter((a) => a.type === 'CapabilityResult' && calls.some((c) => JSON.parse(a.body).parent === c.id));
      return { request, calls: calls.length, results: results.length, resultAfterCall: calls.length === 1 && results.length === 1 && results[0].seq > calls[0].seq };
    });
  });
}

test('a non-idempotent call goes on the chain once, before its result: within its group, found running by a commit, or redone when a failing body makes its group again', async (t) => {
  const { ccos, dataDir } = node(t, 'normal', 5);
  const store = ccos.store;
  let runId = '';
  ccos.subscribe((a) => {
    if (a.type === 'PlanStarted') runId = a.runId!;
  });
  const callsSeen: string[] = [];
  ccos.subscribe((a) => {
    if (a.type === 'CapabilityCall') callsSeen.push(String(a.data.capability));
  });
  let onDiskWhileRunning: number | undefined;
  ccos.registerCapability({ id: 'test.quick', idempotent: false }, (args) => args[0]);
  ccos.registerCapability({ id: 'test.slow', idempotent: false }, async (args) => {
    await sleep(30); // several group windows: the group commits while this effect runs
    onDiskWhileRunning = onDisk(dataDir, (db) => db.prepare("SELECT COUNT(*) FROM actions WHERE run_id = ? AND type = 'CapabilityCall' AND json_extract(body, '$.data.capability') = 'test.slow'").pluck().get(runId) as number);
    return args[0];
  });
  // A write into the open group, then a failure in the same body: the group is rolled back and
  // its records made again (this call's own record among them) while the call is in flight.
  ccos.registerCapability({ id: 'test.undo', idempotent: false }, (args) => {
    assert.throws(() =>
      store.deferredTx(() => {
        store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('dropped', '1');
        throw new Error('boom');
      }),
    );
    return args[0];
  });
  const r = await ccos.run('(do (call :test.quick 1) (call :test.slow 2) (call :test.quick 3) (call :test.undo 4) (call :test.quick 5))');
  assert.equal(r.status, 'completed');
  assert.equal(onDiskWhileRunning, 1, 'another process sees the slow call on the chain while it runs');
  assert.deepEqual(callsSeen, ['test.quick', 'test.slow', 'test.quick', 'test.undo', 'test.quick'], 'subscribers hear of each call once');
  const chain = callsOnChain(dataDir, runId);
  assert.equal(chain.length, 5);
  assert.deepEqual(chain.filter((c) => !c.resultAfterCall), [], 'one call action each, and its result after it');
  assert.equal(onDisk(dataDir, (db) => db.prepare("SELECT COUNT(*) FROM state_kv WHERE key = 'dropped'").pluck().get()), 0);
  assert.equal(ccos.verifyChain().ok, true);
});

test('calls whose results cannot be written stay marked started and on the chain once (a failed body owes again what it settled), and the run resumes without running them again', async (t) => {
  const { ccos, dataDir } = node(t);
  const effects: string[] = [];
  let aroundTheStore = false;
  for (const id of ['test.quick', 'test.doomed']) {
    ccos.registerCapability({ id, idempotent: false }, (args) => {
      effects.push(`${id} ${String(args[0])}`);
      // A write around the store: the body that records the results then runs in a savepoint.
      if (aroundTheStore && id === 'test.doomed') ccos.store.db.prepare('INSERT INTO state_kv (key, value) VALUES (?, ?)').run('raw', '1');
      return args[0];
    });
  }
  // SQLite refuses the doomed call's answer. The two branches finish together, so one body
  // records both results: the quick branch's call, result and answer are written, then the
  // doomed branch's answer fails the body, and the quick branch's records go with it.
  const refuse = "CREATE TEMP TRIGGER refuse_answer BEFORE INSERT ON journal WHEN NEW.capability = 'test.doomed' AND NEW.status = 'answered' BEGIN SELECT RAISE(ABORT, 'answer refused'); END";
  const plan = '(do (call :test.quick 1) (step.parallel (call :test.quick 2) (call :test.doomed 3)) (call :test.quick 4))';
  for (const around of [false, true]) {
    aroundTheStore = around;
    effects.length = 0;
    ccos.store.db.exec(refuse);
    const before = new Set(ccos.runs().map((r) => r.id));
    try {
      const r = await ccos.run(plan);
      assert.notEqual(r.status, 'completed');
    } catch (e) {
      assert.match((e as Error).message, /answer refused/);
    }
    const runId = ccos.runs().find((r) => !before.has(r.id))!.id;
    const what = around ? 'after a write around the store' : 'all writes captured';
    assert.deepEqual(effects, ['test.quick 1', 'test.quick 2', 'test.doomed 3'], what);
    ccos.store.commit();
    const journal = onDisk(dataDir, (db) => db.prepare("SELECT capability, status FROM journal WHERE run_id = ? AND kind = 'call' ORDER BY request_key").all(runId));
    assert.deepEqual(journal, [{ capability: 'test.quick', status: 'answered' }, { capability: 'test.quick', status: 'started' }, { capability: 'test.doomed', status: 'started' }], `${what}: both branches marked started (their effects happened)`);
    assert.deepEqual(callsOnChain(dataDir, runId).map((c) => [c.calls, c.results]), [[1, 1], [1, 0], [1, 0]], `${what}: each call on the chain once`);
    assert.equal(ccos.verifyChain().ok, true);
    ccos.store.db.exec('DROP TRIGGER refuse_answer');
    let r = await ccos.resume(runId);
    for (let i = 0; r.status === 'paused' && i < 3; i++) {
      const waiting = [r.waiting].flat() as { kind: string }[];
      assert.ok(waiting.every((w) => w.kind === 'outcome-unknown'), JSON.stringify(r.waiting));
      r = await ccos.resume(runId, { answer: 'it ran' });
    }
    assert.equal(r.status, 'completed');
    assert.deepEqual(effects, ['test.quick 1', 'test.quick 2', 'test.doomed 3', 'test.quick 4'], `${what}: each effect once`);
    assert.equal(ccos.verifyChain().ok, true);
  }
});

test('normal durability: far fewer commits than calls, idempotent or not, alone or in a step.parallel; all on disk when run() returns', async (t) => {
  const { ccos, dataDir } = node(t);
  ccos.registerCapability({ id: 'test.effect', idempotent: false }, (args) => args[0]);
  ccos.registerCapability({ id: 'test.idem', idempotent: true }, (args) => args[0]);
  for (const cap of ['test.effect', 'test.idem']) {
    const before = ccos.store.commits;
    const r = await ccos.run(`(loop [i 0] (if (< i 100) (do (step.parallel (call :${cap} i) (call :${cap} (- i))) (call :${cap} i) (recur (inc i))) i))`);
    assert.equal(r.status, 'completed');
    const perCall = (ccos.store.commits - before) / 300;
    assert.ok(perCall <= 0.2, `${cap}: ${perCall} commits per call`);
    const onFile = onDisk(dataDir, (db) => ({
      status: db.prepare('SELECT status FROM runs WHERE id = ?').pluck().get(r.runId),
      results: db.prepare("SELECT COUNT(*) FROM actions WHERE run_id = ? AND type = 'CapabilityResult'").pluck().get(r.runId),
      answered: db.prepare("SELECT COUNT(*) FROM journal WHERE run_id = ? AND status = 'answered'").pluck().get(r.runId),
    }));
    assert.deepEqual(onFile, { status: 'completed', results: 300, answered: 300 });
  }
});

test('strict durability: every answer is on disk before the plan uses it', async (t) => {
  const { ccos, dataDir } = node(t, 'strict');
  const seen = probe(ccos, dataDir, 'test.idem', true, "SELECT COUNT(*) FROM journal WHERE run_id = ? AND status = 'answered'");
  const r = await ccos.run('(loop [i 0] (if (< i 4) (do (call :test.idem i) (recur (inc i))) i))');
  assert.equal(r.status, 'completed');
  assert.deepEqual(seen, [0, 1, 2, 3]);
});

test('a pause is sealed soon after, and the chain verifies from another process meanwhile and after', async (t) => {
  const { ccos, dataDir } = node(t);
  const r = await ccos.run('(call :ccos.user.ask "ok?")');
  assert.equal(r.status, 'paused');
  const sealed = (db: Database.Database): boolean => {
    const paused = db.prepare("SELECT seq FROM actions WHERE run_id = ? AND type = 'PlanPaused'").pluck().get(r.runId) as number;
    assert.ok(paused > 0, 'the pause is recorded');
    return (db.prepare('SELECT MAX(seq) FROM seals').pluck().get() as number | null ?? 0) >= paused;
  };
  assert.equal(sealed(ccos.store.db), false, 'not signed with the pause');
  await sleep(PAUSE_SEAL_DELAY_MS + 100);
  assert.equal(onDisk(dataDir, sealed), true, `committed and signed within ${PAUSE_SEAL_DELAY_MS} ms`);
  const other = openCcos({ dataDir, mustExist: true });
  try {
    assert.equal(other.verifyChain().ok, true);
  } finally {
    other.close();
  }
  const resumed = await ccos.resume(r.runId, { answer: 'yes' });
  assert.equal(resumed.status, 'completed');
  assert.equal(ccos.verifyChain().ok, true);
});

for (const durability of ['normal', 'strict', 'fenced'] as const) {
  // Fenced: the marks of a step.parallel share one fdatasync of the redo log, made before any of
  // their effects. Normal and strict: each mark goes to the redo log just before its own effect.
  const title = durability === 'fenced' ? 'the "started" marks of a step.parallel are synced together, before any of its effects' : 'each "started" mark of a step.parallel survives a crash before its effect begins, without a commit';
  test(`${durability}: ${title}`, async (t) => {
    // The probe's copies take milliseconds: a long group window keeps the timer from committing.
    const { ccos, dataDir } = node(t, durability, 600_000);
    const startedOnDisk = probe(ccos, dataDir, 'test.effect', false, "SELECT COUNT(*) FROM journal WHERE run_id = ? AND kind = 'call' AND status IN ('started', 'answered')");
    const branches = Array.from({ length: 5 }, (_, b) => `(call :test.effect [i ${b}])`).join(' ');
    const before = ccos.store.commits;
    const r = await ccos.run(`(loop [i 0] (if (< i 4) (do (step.parallel ${branches}) (recur (inc i))) i))`);
    assert.equal(r.status, 'completed');
    // Round i: the 5 calls of every earlier round are durable at each effect, and this round's
    // 5 marks (fenced), or the marks up to its own.
    const expected = [0, 1, 2, 3].flatMap((i) => [1, 2, 3, 4, 5].map((b) => 5 * i + (durability === 'fenced' ? 5 : b)));
    assert.deepEqual(startedOnDisk, expected);
    const perCall = (ccos.store.commits - before) / 20;
    assert.ok(perCall <= 0.5, `${perCall} commits per call`);
  });
}

for (const durability of ['strict', 'fenced'] as const) {
  // What reaches the redo log, and when it is synced, around each effect of a plan of
  // non-idempotent calls: `write` (a batch into the log's page cache: it survives the process
  // dying), `sync` (its fdatasync: a power loss too), `effect` (the provider runs).
  const title =
    durability === 'strict'
      ? "a non-idempotent call's start is written before its effect, and synced with its result, before the plan uses it: one fdatasync per call"
      : "a non-idempotent call's start is synced before its effect, and its result before the plan uses it";
  test(`${durability}: ${title}`, async (t) => {
    const { ccos } = node(t, durability, 600_000);
    const events: string[] = [];
    const { writeSync, fdatasyncSync } = fs;
    const isRedoLog = (fd: number): boolean => fs.readlinkSync(`/proc/self/fd/${fd}`).endsWith('.redo');
    fs.writeSync = ((fd: number, ...rest: unknown[]) => {
      if (isRedoLog(fd)) events.push('write');
      return (writeSync as (...a: unknown[]) => number)(fd, ...rest);
    }) as typeof fs.writeSync;
    fs.fdatasyncSync = (fd: number) => {
      if (isRedoLog(fd)) events.push('sync');
      fdatasyncSync(fd);
    };
    t.after(() => Object.assign(fs, { writeSync, fdatasyncSync }));
    const used: number[] = [];
    ccos.registerCapability({ id: 'test.effect', idempotent: false }, (args) => {
      events.push('effect');
      used.push(args[0] as number);
      return (args[0] as number) * 10;
    });
    // Each call's argument is the previous call's result: the plan uses every result.
    const r = await ccos.run('(loop [i 0 x 1] (if (< i 4) (recur (inc i) (call :test.effect x)) x))');
    assert.equal(r.status, 'completed');
    assert.equal(r.value, 10_000);
    assert.deepEqual(used, [1, 10, 100, 1000]);
    const between = events.join(' ').split('effect').map((s) => s.trim());
    const start = durability === 'strict' ? 'write' : 'write sync';
    // Before the first effect: its start, last. Between two effects: the result of the first
    // (synced), then the start of the next. After the last: its result, synced.
    assert.match(between[0], new RegExp(`${start}$`));
    for (const gap of between.slice(1, -1)) assert.equal(gap, `write sync ${start}`);
    assert.match(between.at(-1)!, /^write sync/);
  });
}

test('disk full mid-run: a clear error, the chain verifies, and once there is room the run resumes with every effect exactly once', async (t) => {
  const { ccos, dataDir } = node(t);
  const db = ccos.store.db;
  const effects: number[] = [];
  ccos.registerCapability({ id: 'test.effect', idempotent: false }, (args) => {
    effects.push((args[0] as { get(i: number): number }).get(0));
    return args[0];
  });
  // The "disk" fills up once the run is under way: SQLite may grow the file by only a few pages.
  ccos.registerCapability({ id: 'test.fill', idempotent: true }, () => {
    db.pragma(`max_page_count = ${(db.pragma('page_count', { simple: true }) as number) + 3}`);
    return null;
  });
  const plan = '(do (call :test.fill) (loop [i 0] (if (< i 50) (do (call :test.effect [i (apply str (repeat 3000 "x"))]) (recur (inc i))) i)))';
  // The run stops: paused if the pause itself could still be written, else with the error (and
  // then it is left as after a crash). Either way nothing is half-written.
  try {
    const first = await ccos.run(plan);
    assert.equal(first.status, 'paused');
    assert.equal((first.waiting as { kind: string }).kind, 'store-failure');
    assert.match((first.waiting as { error: string }).error, /is full/);
  } catch (e) {
    assert.equal((e as { code?: string }).code, 'disk-full', String(e));
    assert.match((e as Error).message, /is full/);
  }
  const ran = effects.length;
  assert.ok(ran >= 1 && ran < 50, `stopped part-way (${ran} effects)`);
  db.pragma('max_page_count = 1073741823'); // room again
  assert.equal(ccos.verifyChain().ok, true, 'nothing half-written');
  const [run] = ccos.runs();
  // The effect whose result was not saved is in doubt: the run asks, and is told what happened.
  let r = await ccos.resume(run.id);
  while (r.status === 'paused') {
    const waiting = r.waiting as { kind: string; request: string };
    assert.equal(waiting.kind, 'outcome-unknown');
    r = await ccos.resume(run.id, { answer: 'it ran' });
  }
  assert.equal(r.status, 'completed');
  assert.deepEqual([...effects].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i), 'every effect ran exactly once');
  assert.equal(ccos.verifyChain().ok, true);
  const calls = callsOnChain(dataDir, run.id).filter((c) => c.calls !== 1);
  assert.deepEqual(calls, [], 'each call on the chain once, the one in doubt included');
});

test('store: a data dir of schema 1 is migrated on open (journal rows kept, WITHOUT ROWID; unused index dropped)', (t) => {
  const dir = tempDir(t);
  const old = new Database(path.join(dir, 'ccos.db'));
  old.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta VALUES ('schema_version', '1');
    CREATE TABLE checkpoints (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, created TEXT NOT NULL, reason TEXT NOT NULL, state TEXT NOT NULL);
    CREATE INDEX checkpoints_run ON checkpoints(run_id, created);
    CREATE TABLE journal (run_id TEXT NOT NULL, request_id TEXT NOT NULL, kind TEXT NOT NULL, capability TEXT, args_hash TEXT,
      status TEXT NOT NULL, answer TEXT, PRIMARY KEY (run_id, request_id));
    INSERT INTO journal VALUES ('run-1', 'r1', 'call', 'ccos.echo', 'h1', 'answered', '{"value":1}'), ('run-1', 'r2', 'call', 'x.y', 'h2', 'started', NULL);`);
  old.close();
  const store = new SqliteStore(dir);
  t.after(() => store.close());
  assert.equal(store.getMeta('schema_version'), '4');
  const sql = store.db.prepare("SELECT sql FROM sqlite_master WHERE name = 'journal'").pluck().get() as string;
  assert.match(sql, /WITHOUT ROWID/);
  assert.equal(store.db.prepare("SELECT COUNT(*) FROM sqlite_master WHERE name = 'checkpoints_run'").pluck().get(), 0);
  assert.deepEqual(store.db.prepare('SELECT request_id, status, answer FROM journal ORDER BY request_id').all(), [
    { request_id: 'r1', status: 'answered', answer: '{"value":1}' },
    { request_id: 'r2', status: 'started', answer: null },
  ]);
});

test('store: a data dir of schema 2 (action columns stored beside the body) is migrated to the body and its run id; the chain still verifies', async (t) => {
  const dir = tempDir(t);
  let ccos = openCcos({ dataDir: dir });
  const done = await ccos.run('(step "a" (call :ccos.echo 1))');
  const paused = await ccos.run('(call :ccos.user.ask "ok?")');
  const before = ccos.chain.list();
  ccos.close();
  rewriteAsSchema2(path.join(dir, 'ccos.db'));
  const old = new Database(path.join(dir, 'ccos.db'), { readonly: true });
  assert.equal(old.prepare("SELECT COUNT(*) FROM pragma_table_xinfo('actions') WHERE hidden = 2").pluck().get(), 0, 'the old table has no generated columns');
  old.close();
  const upgrades: [number, number][] = [];
  ccos = openCcos({ dataDir: dir, onUpgrade: (from, to) => upgrades.push([from, to]) });
  t.after(() => ccos.close());
  assert.deepEqual(upgrades, [[2, 4]], 'the caller is told before the upgrade');
  assert.equal(ccos.store.getMeta('schema_version'), '4');
  assert.equal(ccos.store.db.prepare("SELECT type FROM sqlite_master WHERE name = 'actions'").pluck().get(), 'view', 'actions is a view over action_rows');
  assert.deepEqual(ccos.store.db.prepare("SELECT name FROM pragma_table_xinfo('action_rows')").pluck().all(), ['seq', 'body', 'hash', 'run_id']);
  assert.equal(ccos.store.db.prepare("SELECT COUNT(*) FROM action_rows WHERE run_id IS NOT (body ->> '$.run')").pluck().get(), 0, 'the run id is the body\'s');
  assert.deepEqual(ccos.chain.list(), before);
  assert.deepEqual(
    ccos.store.db.prepare('SELECT request_id, request_key FROM journal WHERE run_id = ? ORDER BY request_key').all(paused.runId),
    [{ request_id: 'r1.f0', request_key: 'ra1.fa0' }],
    'journal rows are keyed by request number',
  );
  assert.ok(ccos.chain.list({ runId: done.runId }).length >= 4, 'the run index was rebuilt');
  const report = ccos.verifyChain();
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  const resumed = await ccos.resume(paused.runId, { answer: 'yes' });
  assert.equal(resumed.status, 'completed');
  assert.equal(ccos.verifyChain().ok, true);
});

test('store: a data dir of schema 3 (checkpoints keyed by id alone, run ids generated) is migrated: checkpoints kept in order and found by run and id or by id alone; run ids stored', async (t) => {
  const dir = tempDir(t);
  let ccos = openCcos({ dataDir: dir });
  const paused = await ccos.run('(do (step "a" (call :ccos.echo 1)) (call :ccos.user.ask "ok?"))');
  assert.equal(paused.status, 'paused');
  const rows = (db: Database.Database): unknown[] => db.prepare('SELECT id, run_id, reason, state FROM checkpoints ORDER BY rowid').all();
  const before = rows(ccos.store.db);
  const actionsBefore = ccos.chain.list();
  ccos.close();
  rewriteAsSchema3(path.join(dir, 'ccos.db'));
  const upgrades: [number, number][] = [];
  ccos = openCcos({ dataDir: dir, onUpgrade: (from, to) => upgrades.push([from, to]) });
  t.after(() => ccos.close());
  assert.deepEqual(upgrades, [[3, 4]]);
  assert.ok(before.length >= 3, 'step boundaries and the pause made checkpoints');
  assert.deepEqual(rows(ccos.store.db), before);
  const indexes = ccos.store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'checkpoints' ORDER BY name").pluck().all();
  assert.deepEqual(indexes, ['checkpoints_run_id'], 'no index on the id alone');
  assert.equal(ccos.store.db.prepare("SELECT hidden FROM pragma_table_xinfo('action_rows') WHERE name = 'run_id'").pluck().get(), 0, 'a stored column');
  assert.deepEqual(ccos.chain.list(), actionsBefore);
  assert.deepEqual(ccos.chain.list({ runId: paused.runId }), actionsBefore.filter((a) => a.runId === paused.runId), 'the run index was rebuilt');
  // Resumed by its checkpoint id, in a node that never saw the run: restored from the migrated row.
  const resumed = await ccos.resume(paused.checkpoint!, { answer: 'yes' });
  assert.equal(resumed.status, 'completed');
  assert.equal(resumed.runId, paused.runId);
  assert.equal(ccos.verifyChain().ok, true);
});

test('journalKey: text order is the numeric order of request ids, and distinct ids keep distinct keys', () => {
  // The keys are stored: their form (a letter giving each run of digits its length) must not change.
  assert.deepEqual(['r9.f0', 'r10.f0', 'r123.f45/ccos.echo/1', 'x', '', '0'].map(journalKey), ['ra9.fa0', 'rb10.fa0', 'rc123.fb45/ccos.echo/a1', 'x', '', 'a0']);
  const id = fc.tuple(fc.nat({ max: 10 ** 9 }), fc.nat({ max: 999 }), fc.option(fc.constantFrom('/ccos.echo/1', '/x2/10', ''), { nil: '' }));
  fc.assert(
    fc.property(id, id, ([r1, f1, s1], [r2, f2, s2]) => {
      const a = `r${r1}.f${f1}${s1}`;
      const b = `r${r2}.f${f2}${s2}`;
      const ka = journalKey(a);
      const kb = journalKey(b);
      if (a === b) return ka === kb;
      if (ka === kb) return false;
      // Requests are numbered in the order a machine asks them: that order must be the key order.
      if (r1 !== r2) return r1 < r2 === ka < kb;
      if (f1 !== f2) return f1 < f2 === ka < kb;
      return true;
    }),
    { numRuns: 2000 },
  );
});
