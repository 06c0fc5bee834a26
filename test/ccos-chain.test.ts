// The causal chain is tamper-evident: after real runs, the database is edited directly (as an
// attacker with file access but without the node's private key would) and verification must fail,
// naming the sequence number where the chain stops being trustworthy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { canonicalJson, type Json } from '../src/common/canonical.js';
import { openCcos, type VerifyReport } from '../src/ccos/index.js';
import { prStr, readOne } from '../src/rtfs/index.js';
import { tempNode } from './support.js';

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

interface Row {
  seq: number;
  id: string;
  type: string;
  run_id: string | null;
  body: string;
  hash: string;
}

interface Fixture {
  dataDir: string;
  dbPath: string;
  /** All actions, in order, as written by the node. */
  rows: Row[];
  seals: { seq: number; head_hash: string; key_id: string; signature: string }[];
  runIds: string[];
}

/** A data dir with a few finished runs (each sealed at its end) and a paused one. */
async function fixture(t: { after: (fn: () => void) => void }): Promise<Fixture> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-chain-'));
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const ccos = openCcos({ dataDir });
  const runIds: string[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const r = await ccos.run(`(step "twice" [(call :ccos.echo ${i}) (call :ccos.state.counter.inc "n")])`);
      assert.equal(r.status, 'completed');
      runIds.push(r.runId);
    }
    const failed = await ccos.run(`(call :no.such.capability 1)`);
    assert.equal(failed.status, 'failed');
    runIds.push(failed.runId);
    const paused = await ccos.run(`(step "ask" (call :ccos.user.ask "ok?"))`);
    assert.equal(paused.status, 'paused');
    runIds.push(paused.runId);
    const ok = ccos.verifyChain();
    assert.equal(ok.ok, true, JSON.stringify(ok.problems));
  } finally {
    ccos.close();
  }
  const dbPath = path.join(dataDir, 'ccos.db');
  const db = new Database(dbPath, { readonly: true });
  const rows = db.prepare('SELECT seq, id, type, run_id, body, hash FROM actions ORDER BY seq').all() as Row[];
  const seals = db.prepare('SELECT seq, head_hash, key_id, signature FROM seals ORDER BY seq').all() as Fixture['seals'];
  db.close();
  assert.ok(rows.length > 20, `enough actions (${rows.length})`);
  assert.ok(seals.length >= 4, `each finished or paused run sealed the chain (${seals.length} seals)`);
  return { dataDir, dbPath, rows, seals, runIds };
}

function tamper(f: Fixture, fn: (db: Database.Database) => void): void {
  const db = new Database(f.dbPath);
  try {
    db.transaction(() => fn(db))();
  } finally {
    db.close();
  }
}

function verify(f: Fixture): VerifyReport {
  const ccos = openCcos({ dataDir: f.dataDir, mustExist: true });
  try {
    return ccos.verifyChain();
  } finally {
    ccos.close();
  }
}

/** A middle action: a CapabilityResult of the second run, well inside the sealed region. */
function middle(f: Fixture): Row {
  const r = f.rows.find((x) => x.run_id === f.runIds[1] && x.type === 'CapabilityResult');
  assert.ok(r);
  assert.ok(r.seq > 1 && r.seq < f.seals[f.seals.length - 1].seq);
  return r;
}

/** Rewrites a body canonically (as the node would have written it). */
function rewriteBody(body: string, edit: (b: Record<string, unknown>) => void): string {
  const b = JSON.parse(body) as Record<string, unknown>;
  edit(b);
  return canonicalJson(b);
}

/** Recomputes every hash from `fromSeq` on, keeping the links consistent (no key needed). */
function rehashFrom(db: Database.Database, fromSeq: number): void {
  const rows = db.prepare('SELECT seq, body FROM actions WHERE seq >= ? ORDER BY seq').all(fromSeq) as { seq: number; body: string }[];
  let prev = (db.prepare('SELECT hash FROM actions WHERE seq = ?').pluck().get(fromSeq - 1) as string | undefined) ?? '0'.repeat(64);
  const upd = db.prepare('UPDATE action_rows SET hash = ? WHERE seq = ?');
  for (const r of rows) {
    const h = sha256(prev + r.body);
    upd.run(h, r.seq);
    prev = h;
  }
}

function assertFails(report: VerifyReport, seq: number, pattern: RegExp): void {
  assert.equal(report.ok, false, 'verification must fail');
  assert.ok(report.problems.length > 0);
  assert.ok(
    report.problems.some((p) => p.seq === seq && pattern.test(p.problem)),
    `expected a problem at seq ${seq} matching ${pattern}, got ${JSON.stringify(report.problems)}`,
  );
  // The first problem is where trust ends: never after the tampered place.
  assert.ok(report.problems[0].seq <= seq, `first problem at ${report.problems[0].seq}, expected at or before ${seq}`);
}

test('an untouched chain verifies, every finished or paused run is sealed at its last action', async (t) => {
  const f = await fixture(t);
  const report = verify(f);
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.equal(report.actions, f.rows.length);
  assert.equal(report.seals, f.seals.length);
  assert.equal(report.sealed, f.seals[f.seals.length - 1].seq);
  // Sequence numbers are contiguous and every link holds (checked independently of verify()).
  let prev = '0'.repeat(64);
  f.rows.forEach((r, i) => {
    assert.equal(r.seq, i + 1);
    assert.equal(r.hash, sha256(prev + r.body));
    assert.equal(canonicalJson(JSON.parse(r.body)), r.body, 'bodies are stored canonically');
    prev = r.hash;
  });
  const sealedSeqs = new Set(f.seals.map((s) => s.seq));
  for (const r of f.rows) if (['PlanCompleted', 'PlanPaused', 'PlanAborted', 'PlanCancelled'].includes(r.type)) assert.ok(sealedSeqs.has(r.seq), `${r.type} at ${r.seq} is sealed`);
  for (const s of f.seals) assert.equal(s.head_hash, f.rows[s.seq - 1].hash);
});

test('(a) editing one action body is detected at that action, and only there', async (t) => {
  const f = await fixture(t);
  const target = middle(f);
  tamper(f, (db) => {
    const body = rewriteBody(target.body, (b) => ((b.data as Record<string, unknown>).result = '"forged"'));
    assert.notEqual(body, target.body);
    db.prepare('UPDATE action_rows SET body = ? WHERE seq = ?').run(body, target.seq);
  });
  const report = verify(f);
  assertFails(report, target.seq, /edited/);
  assert.deepEqual(report.problems.map((p) => p.seq), [target.seq]);
  assert.ok(report.sealed < target.seq, 'the sealed prefix ends before the edited action');
});

test('(a2) a one-character edit that keeps valid JSON (whitespace) is detected', async (t) => {
  const f = await fixture(t);
  const target = middle(f);
  tamper(f, (db) => db.prepare('UPDATE action_rows SET body = ? WHERE seq = ?').run(target.body.replace(/^\{/, '{ '), target.seq));
  assertFails(verify(f), target.seq, /edited/);
});

test('(a3) the columns queries filter on are read from the hashed body, or checked against it (the run id)', async (t) => {
  const f = await fixture(t);
  const target = middle(f);
  for (const column of ['type', 'run_id', 'id', 'parent_id', 'plan_id', 'intent_id', 'step_path', 'time']) {
    assert.throws(() => tamper(f, (db) => db.prepare(`UPDATE actions SET ${column} = 'x' WHERE seq = ?`).run(target.seq)), /view/, column);
  }
  const other = f.runIds.find((r) => r !== JSON.parse(target.body).run)!;
  // Moving an action to another run's listing by its stored run id: verification says so.
  tamper(f, (db) => db.prepare('UPDATE action_rows SET run_id = ? WHERE seq = ?').run(other, target.seq));
  let ccos = openCcos({ dataDir: f.dataDir, mustExist: true });
  try {
    assert.ok(ccos.chain.list({ runId: other }).some((a) => a.seq === target.seq), 'the listing follows the column');
    const report = ccos.verifyChain();
    assertFails(report, target.seq, /run id column/);
    assert.ok(!report.problems.some((p) => /hash|link/.test(p.problem)), 'the hashes themselves are intact');
  } finally {
    ccos.close();
  }
  // Moving it by editing its body (and the column with it): its hash gives it away.
  tamper(f, (db) => db.prepare('UPDATE action_rows SET body = ? WHERE seq = ?').run(rewriteBody(target.body, (b) => (b.run = other)), target.seq));
  ccos = openCcos({ dataDir: f.dataDir, mustExist: true });
  try {
    assertFails(ccos.verifyChain(), target.seq, /edited/);
  } finally {
    ccos.close();
  }
});

test('(a4) the run id column is checked against the top-level run of the body, not a "run" nested in its data', (t) => {
  const ccos = tempNode(t, 'ccos-chain-run-');
  const [r1, r2] = ['run-00000000-0000-7000-8000-000000000001', 'run-00000000-0000-7000-8000-000000000002'];
  // Data shaped to look like the end of an action: a nested run right before a nested seq.
  const tricky = { nested: { run: r2, seq: 1 }, run: r2 };
  const inRun = ccos.store.tx(() => ccos.orchestrator.record({ type: 'CapabilityRegistered', runId: r1, data: tricky }));
  const noRun = ccos.store.tx(() => ccos.orchestrator.record({ type: 'CapabilityRegistered', data: tricky }));
  assert.equal(ccos.verifyChain().ok, true, JSON.stringify(ccos.verifyChain().problems));
  const setRun = (seq: number, run: string | null): void => void ccos.store.db.prepare('UPDATE action_rows SET run_id = ? WHERE seq = ?').run(run, seq);
  setRun(inRun.seq, r2);
  setRun(noRun.seq, r2);
  const report = ccos.verifyChain();
  assert.deepEqual(report.problems.filter((p) => /run id column/.test(p.problem)).map((p) => p.seq), [inRun.seq, noRun.seq]);
  setRun(inRun.seq, null);
  setRun(noRun.seq, null);
  assert.deepEqual(ccos.verifyChain().problems.filter((p) => /run id column/.test(p.problem)).map((p) => p.seq), [inRun.seq]);
});

test('step names with quotes, backslashes and control characters verify', async (t) => {
  const ccos = tempNode(t, 'ccos-chain-esc-');
  // RTFS escapes for the quote, backslash, newline and tab; a raw U+0001 inside the string.
  const r = await ccos.run('(step "say \\"hi\\"" (step "back\\\\slash\\nand\\ttab\u0001" (call :ccos.echo 1)))');
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  const report = ccos.verifyChain();
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.ok(ccos.chain.list({ runId: r.runId }).some((a) => a.stepPath.includes('say "hi"')));
});

test('(b) deleting a middle action is detected at the next one, naming the missing number', async (t) => {
  const f = await fixture(t);
  const target = middle(f);
  tamper(f, (db) => db.prepare('DELETE FROM action_rows WHERE seq = ?').run(target.seq));
  const report = verify(f);
  assertFails(report, target.seq + 1, new RegExp(`${target.seq}\\.\\.${target.seq} are missing|deleted`));
  assert.ok(report.problems.some((p) => p.seq === target.seq + 1 && /link/.test(p.problem)), 'the link of the next action is broken');
});

test('(b2) deleting the sealed tail of the chain is detected by the seal over it', async (t) => {
  const f = await fixture(t);
  const lastSeal = f.seals[f.seals.length - 1];
  tamper(f, (db) => db.prepare('DELETE FROM action_rows WHERE seq >= ?').run(lastSeal.seq - 2));
  const report = verify(f);
  assertFails(report, lastSeal.seq, /missing|deleted/);
});

test('(c) inserting a forged action in the middle, with a correctly recomputed hash, is detected', async (t) => {
  const f = await fixture(t);
  const target = middle(f);
  const k = target.seq;
  tamper(f, (db) => {
    // Make room at k, then insert a forged action linked to the real k-1.
    db.prepare('UPDATE action_rows SET seq = seq + 1000000 WHERE seq >= ?').run(k);
    db.prepare('UPDATE action_rows SET seq = seq - 999999 WHERE seq >= 1000000').run();
    const prev = f.rows[k - 2].hash;
    const body = rewriteBody(target.body, (b) => {
      b.seq = k;
      b.id = 'act-forged';
      (b.data as Record<string, unknown>).result = '"forged"';
    });
    db.prepare('INSERT INTO action_rows (seq, body, hash, run_id) VALUES (?, ?, ?, ?)').run(k, body, sha256(prev + body), JSON.parse(body).run ?? null);
  });
  const report = verify(f);
  // The forged action itself is internally consistent; the chain breaks right after it.
  assert.ok(!report.problems.some((p) => p.seq < k), JSON.stringify(report.problems));
  assertFails(report, k + 1, /link|indexed|order/);
});

test('(c2) a forged action appended after the last seal (hash correctly linked) is at least outside the sealed prefix', async (t) => {
  const f = await fixture(t);
  const last = f.rows[f.rows.length - 1];
  tamper(f, (db) => appendForged(db, last, f.runIds[0]));
  const report = verify(f);
  assert.equal(report.actions, f.rows.length + 1);
  assert.ok(report.sealed <= last.seq, 'the forged action is not vouched for by any seal');
});

test(
  '(c3) a forged PlanCompleted appended after the last seal, for a run that is still paused, is reported',
  async (t) => {
    const f = await fixture(t);
    const last = f.rows[f.rows.length - 1];
    tamper(f, (db) => appendForged(db, last, f.runIds[f.runIds.length - 1]));
    const report = verify(f);
    assertFails(report, last.seq + 1, /./);
  },
);

/** Appends, without the key, a PlanCompleted action for `runId` correctly linked to `last`. */
function appendForged(db: Database.Database, last: Row, runId: string): void {
  const seq = last.seq + 1;
  const body = canonicalJson({ seq, id: 'act-forged-tail', type: 'PlanCompleted', time: new Date().toISOString(), step: [], data: { result: '"forged"' }, run: runId });
  db.prepare('INSERT INTO action_rows (seq, body, hash, run_id) VALUES (?, ?, ?, ?)').run(seq, body, sha256(last.hash + body), runId);
}

test('(d) swapping two actions (reorder) is detected at the first of them', async (t) => {
  const f = await fixture(t);
  const i = middle(f).seq;
  const j = i + 3;
  tamper(f, (db) => {
    db.prepare('UPDATE action_rows SET seq = -1 WHERE seq = ?').run(i);
    db.prepare('UPDATE action_rows SET seq = ? WHERE seq = ?').run(i, j);
    db.prepare('UPDATE action_rows SET seq = ? WHERE seq = -1').run(j);
  });
  const report = verify(f);
  assertFails(report, i, /link|order|indexed/);
  assert.equal(report.problems[0].seq, i);
  assert.ok(report.problems.some((p) => p.seq === j));
});

test('(d2) reordering with every hash and body recomputed (seq fields rewritten) is caught by the seals', async (t) => {
  const f = await fixture(t);
  const i = middle(f).seq;
  const j = i + 1;
  tamper(f, (db) => {
    const bi = f.rows[i - 1];
    const bj = f.rows[j - 1];
    db.prepare('UPDATE action_rows SET seq = -1 WHERE seq = ?').run(i);
    db.prepare('UPDATE action_rows SET seq = ?, body = ? WHERE seq = ?').run(i, rewriteBody(bj.body, (b) => (b.seq = i)), j);
    db.prepare('UPDATE action_rows SET seq = ?, body = ? WHERE seq = -1').run(j, rewriteBody(bi.body, (b) => (b.seq = j)));
    rehashFrom(db, i);
  });
  const firstSealAfter = f.seals.find((s) => s.seq >= i)!.seq;
  assertFails(verify(f), firstSealAfter, /seal/);
});

test('(e) an edit with every later hash recomputed (no key) breaks the next seal', async (t) => {
  const f = await fixture(t);
  const target = middle(f);
  tamper(f, (db) => {
    db.prepare('UPDATE action_rows SET body = ? WHERE seq = ?').run(rewriteBody(target.body, (b) => ((b.data as Record<string, unknown>).result = '"forged"')), target.seq);
    rehashFrom(db, target.seq);
  });
  const firstSealAfter = f.seals.find((s) => s.seq >= target.seq)!.seq;
  const report = verify(f);
  assertFails(report, firstSealAfter, /seal does not match/);
  assert.equal(report.problems[0].seq, firstSealAfter, 'links and hashes are consistent, so the seal is the first thing that fails');
  assert.ok(report.sealed < target.seq);
});

test('(e2) ... and also rewriting the seals head hashes is caught by their signatures', async (t) => {
  const f = await fixture(t);
  const target = middle(f);
  tamper(f, (db) => {
    db.prepare('UPDATE action_rows SET body = ? WHERE seq = ?').run(rewriteBody(target.body, (b) => ((b.data as Record<string, unknown>).result = '"forged"')), target.seq);
    rehashFrom(db, target.seq);
    db.prepare('UPDATE seals SET head_hash = (SELECT hash FROM actions WHERE actions.seq = seals.seq)').run();
  });
  const firstSealAfter = f.seals.find((s) => s.seq >= target.seq)!.seq;
  assertFails(verify(f), firstSealAfter, /signature/);
});

test('(e3) ... and re-signing the seals with another key (published in the db) is rejected', async (t) => {
  const f = await fixture(t);
  const target = middle(f);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const keyId = `node-${sha256(pub).slice(0, 16)}`;
  tamper(f, (db) => {
    db.prepare('UPDATE action_rows SET body = ? WHERE seq = ?').run(rewriteBody(target.body, (b) => ((b.data as Record<string, unknown>).result = '"forged"')), target.seq);
    rehashFrom(db, target.seq);
    db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(`key:${keyId}`, pub);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'node_key'").run(keyId);
    for (const s of f.seals) {
      const head = db.prepare('SELECT hash FROM actions WHERE seq = ?').pluck().get(s.seq) as string;
      const sig = sign(null, Buffer.from(`ccos-chain-seal\n${s.seq}\n${head}`), privateKey).toString('base64');
      db.prepare('UPDATE seals SET head_hash = ?, key_id = ?, signature = ? WHERE seq = ?').run(head, keyId, sig, s.seq);
    }
  });
  const report = verify(f);
  assert.equal(report.ok, false);
  assert.equal(report.problems[0].seq, f.seals[0].seq, 'the first re-signed seal is already rejected');
  assert.match(report.problems[0].problem, /signature/);
});

test(
  '(e4) an edit with every later hash recomputed and the seals over it deleted is reported',
  async (t) => {
    const f = await fixture(t);
    const target = middle(f);
    tamper(f, (db) => {
      db.prepare('UPDATE action_rows SET body = ? WHERE seq = ?').run(rewriteBody(target.body, (b) => ((b.data as Record<string, unknown>).result = '"forged"')), target.seq);
      rehashFrom(db, target.seq);
      db.prepare('DELETE FROM seals WHERE seq >= ?').run(target.seq);
    });
    const report = verify(f);
    assertFails(report, f.seals.find((s) => s.seq >= target.seq)!.seq, /./);
  },
);

test('large payloads (> 4 KB) are stored once as blobs, referenced by content hash; verify stays ok', async (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-chain-'));
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const ccos = openCcos({ dataDir });
  try {
    const big = Array.from({ length: 600 }, (_, i) => `line ${i} ${'é✓'.repeat(i % 5)}`).join('\n');
    assert.ok(big.length > 4096);
    const r = await ccos.run(`(call :ccos.echo (:big input))`, { inputs: { big } });
    assert.equal(r.status, 'completed');
    assert.equal(r.value, big);
    const actions = ccos.chain.list({ runId: r.runId });
    const result = actions.find((a) => a.type === 'CapabilityResult')!;
    const ref = result.data.result as { $blob: string; bytes: number; summary: string };
    assert.equal(typeof ref, 'object', 'the large result is not inline');
    assert.match(ref.$blob, /^sha256:[0-9a-f]{64}$/);
    const content = ccos.chain.blob(ref.$blob);
    assert.equal(typeof content, 'string');
    // The blob holds the printed value (an RTFS string literal) and is addressed by its hash.
    assert.equal(content, prStr(big));
    assert.equal(readOne(content as string, '<blob>'), big, 'the blob reads back to the exact value');
    assert.equal(`sha256:${sha256(canonicalJson(content))}`, ref.$blob);
    assert.equal(ref.bytes, canonicalJson(content).length);
    assert.ok(ref.summary.length <= 200 && canonicalJson(content).startsWith(ref.summary));
    // The action body stays small: the payload is not duplicated into it.
    const bodyLen = (ccos.store.db.prepare('SELECT length(body) FROM actions WHERE seq = ?').pluck().get(result.seq) as number);
    assert.ok(bodyLen < 2000, `body is ${bodyLen} characters`);
    // Same payload again: the same blob (content addressing), no second copy.
    const r2 = await ccos.run(`(call :ccos.echo (:big input))`, { inputs: { big } });
    const ref2 = ccos.chain.list({ runId: r2.runId }).find((a) => a.type === 'CapabilityResult')!.data.result as { $blob: string };
    assert.equal(ref2.$blob, ref.$blob);
    assert.equal(ccos.store.db.prepare('SELECT COUNT(*) FROM blobs WHERE hash = ?').pluck().get(ref.$blob), 1);
    assert.equal(ccos.chain.blob('sha256:' + '0'.repeat(64)), undefined);
    const report = ccos.verifyChain();
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    // The full value is still in the run's record.
    assert.equal(ccos.runDetails(r.runId)!.result, big);
  } finally {
    ccos.close();
  }
});

test(
  'editing a blob referenced by the chain is detected by verify',
  async (t) => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-chain-'));
    t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    const ccos = openCcos({ dataDir });
    let seq: number;
    try {
      const r = await ccos.run(`(call :ccos.echo (:big input))`, { inputs: { big: 'y'.repeat(5000) } });
      seq = ccos.chain.list({ runId: r.runId }).find((a) => a.type === 'CapabilityResult')!.seq;
    } finally {
      ccos.close();
    }
    const db = new Database(path.join(dataDir, 'ccos.db'));
    db.prepare("UPDATE blobs SET content = replace(content, 'yyyy', 'zzzz')").run();
    db.close();
    const again = openCcos({ dataDir });
    try {
      const report = again.verifyChain();
      assert.equal(report.ok, false);
      assert.ok(report.problems.some((p) => p.seq <= seq), JSON.stringify(report.problems));
    } finally {
      again.close();
    }
  },
);

test('property: every appended action body is canonical JSON of what list() reads back, large values as blobs', async (t) => {
  const ccos = tempNode(t, 'ccos-chain-prop-');
  const json = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>;
  const data = fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(json, fc.string({ minLength: 4000, maxLength: 5000 })), { maxKeys: 5 });
  fc.assert(
    fc.property(data, fc.option(fc.double({ noNaN: true, noDefaultInfinity: true, min: 0, max: 1e6 }), { nil: undefined }), fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }), (d, cost, step) => {
      const a = ccos.store.tx(() => ccos.chain.append({ type: 'CapabilityResult', runId: 'run-p', stepPath: step, data: d as Record<string, Json>, costUsd: cost }));
      const row = ccos.store.db.prepare('SELECT body FROM actions WHERE seq = ?').get(a.seq) as { body: string };
      assert.equal(canonicalJson(JSON.parse(row.body)), row.body);
      const back = ccos.chain.list({ runId: 'run-p' }).at(-1)!;
      assert.equal(back.seq, a.seq);
      assert.equal(canonicalJson(back.data), canonicalJson(a.data));
      for (const [k, v] of Object.entries(d)) {
        if (v === undefined) continue;
        const stored = a.data[k] as { $blob?: string };
        if (canonicalJson(v as Json).length > 4096) assert.equal(canonicalJson(ccos.chain.blob(stored.$blob!) as Json), canonicalJson(v as Json));
        else assert.equal(canonicalJson(stored as Json), canonicalJson(v as Json));
      }
    }),
    { numRuns: 150 },
  );
  assert.equal(ccos.verifyChain().ok, true);
});
