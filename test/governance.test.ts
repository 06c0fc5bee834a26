// The governance kernel, library level, over real SQLite data dirs: the constitution (every rule
// kind, deny wins, defaults, its hash on the chain, amendments that need approval, bad input that
// loads nothing), decisions recorded with rule and rationale, approvals (per call, step and plan;
// count, roles, quorum; expiry; pause → approve → resume in another Ccos over the same dir;
// Ed25519 signatures; forged, replayed, unknown and unauthorized approvers), budgets (calls, cost
// from the model and from the provider, :warn, :pause), data labels and locality, and the
// differential-privacy budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { CcosError, approverSigner, openCcos, valueToPlainJson, withCost, type Action, type ApprovalRequest, type Ccos, type RunResult } from '../src/ccos/index.js';
import { collectLabels, type Value } from '../src/rtfs/index.js';
import { failsWith } from './support.js';

// ---------------------------------------------------------------------------------------------
// Helpers

type T = { after: (fn: () => void) => void };

function tempDir(t: T): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-gov-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A node over `dir` (a new temp dir when omitted); closed when the test ends. */
function node(t: T, dir = tempDir(t)): Ccos {
  const ccos = openCcos({ dataDir: dir, workspaceRoot: dir });
  t.after(() => {
    try {
      ccos.close();
    } catch {
      /* already closed */
    }
  });
  return ccos;
}

/** Writes a constitution file into the node's data dir and loads it (must take effect at once). */
function constitute(ccos: Ccos, text: string, name = 'constitution.rtfs'): { file: string; hash: string } {
  const file = path.join(ccos.dataDir, name);
  fs.writeFileSync(file, text);
  const r = ccos.governance.load(file);
  assert.equal(r.status, 'active', JSON.stringify(r));
  return { file, hash: (r as { hash: string }).hash };
}

/** A constitution with these rules (`:default :deny` unless `extra` overrides it). */
const C = (rules: string, extra = ''): string => `{:id "test" :version "1" ${extra.includes(':default') ? '' : ':default :deny '}${extra}\n :rules [${rules}]}`;

const plain = (r: RunResult): unknown => (r.value === undefined ? undefined : valueToPlainJson(r.value));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const actions = (ccos: Ccos, type: Action['type'], runId?: string): Action[] => ccos.chain.list(runId ? { runId } : {}).filter((a) => a.type === type);
const decisions = (ccos: Ccos, runId: string): Record<string, unknown>[] => actions(ccos, 'PolicyDecision', runId).map((a) => a.data);

function assertChainOk(ccos: Ccos): void {
  const report = ccos.verifyChain();
  assert.equal(report.ok, true, JSON.stringify(report.problems));
}


/** The run failed at the gate with this error code, and its PolicyDecision names the rule. */
function assertDenied(ccos: Ccos, r: RunResult, code: string, rule: string | RegExp): Record<string, unknown> {
  assert.equal(r.status, 'failed', `expected a denial, got ${r.status} ${JSON.stringify(plain(r))}`);
  assert.equal(r.error?.code, code, r.error?.message);
  const denies = decisions(ccos, r.runId).filter((d) => d.decision === 'deny');
  assert.ok(denies.length >= 1, 'a denial is recorded as a PolicyDecision');
  const d = denies[denies.length - 1];
  if (typeof rule === 'string') assert.equal(d.rule, rule);
  else assert.match(String(d.rule), rule);
  assert.ok(typeof d.rationale === 'string' && d.rationale.length >= 5, `a human-readable rationale: ${String(d.rationale)}`);
  return d;
}

/** Counts invocations; returns `value` (or what `fn` returns). */
function counter(ccos: Ccos, id: string, manifest: Record<string, unknown> = {}, fn: (args: Value[]) => unknown = () => 'ok'): { n: number } {
  const c = { n: 0 };
  ccos.registerCapability({ id, ...manifest } as Parameters<Ccos['registerCapability']>[0], (args) => {
    c.n++;
    return fn(args) as Value;
  });
  return c;
}

/** Registers approvers; returns signers by name. */
function approvers(ccos: Ccos, ...names: string[]): void {
  for (const n of names) ccos.governance.approvals.createApprover(n);
}

function approve(ccos: Ccos, id: string, who: string, decision: 'approve' | 'deny' = 'approve', reason = decision === 'deny' ? 'not now' : 'ok'): ApprovalRequest {
  return ccos.governance.approvals.decide(id, who, decision, reason, ccos.governance.roles(), approverSigner(ccos.store, who));
}

const approvalId = (r: RunResult): string => {
  assert.equal(r.status, 'paused', `expected a pause, got ${r.status} ${JSON.stringify(r.error ?? plain(r))}`);
  const w = r.waiting as { kind?: string; approval?: string };
  assert.equal(w.kind, 'approval', JSON.stringify(w));
  assert.ok(w.approval);
  return w.approval;
};

/** The current hour:minute and weekday in a time zone. */
function nowIn(tz: string): { minutes: number; day: string } {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone: tz, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(new Date());
  const get = (k: string): string => parts.find((p) => p.type === k)!.value;
  return { minutes: Number(get('hour')) * 60 + Number(get('minute')), day: get('weekday').slice(0, 3).toLowerCase() };
}
const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

// ---------------------------------------------------------------------------------------------
// Rule kinds

test('capability glob: allow `svc.*`, everything else denied by default; unknown capabilities denied', async (t) => {
  const ccos = node(t);
  const a = counter(ccos, 'svc.read');
  const b = counter(ccos, 'other.read');
  constitute(ccos, C(`{:id :allow-svc :match {:capability "svc.*"} :action :allow :reason "service reads are fine"}`));
  const ok = await ccos.run('(call :svc.read)');
  assert.equal(ok.status, 'completed', JSON.stringify(ok.error));
  assert.equal((actions(ccos, 'CapabilityCall', ok.runId)[0].data.decision as { decision: string }).decision, 'allow', 'an allowed call carries its decision');
  assertDenied(ccos, await ccos.run('(call :other.read)'), 'policy-denied', 'constitution.default');
  assertDenied(ccos, await ccos.run('(call :nobody.knows)'), 'unknown-capability', 'registry.unknown');
  assert.deepEqual([a.n, b.n], [1, 0]);
  assertChainOk(ccos);
});

test('effects, risk and regions match on the manifest', async (t) => {
  const ccos = node(t);
  const net = counter(ccos, 'x.net', { effects: [{ kind: 'network' }] });
  const fsx = counter(ccos, 'x.fs', { effects: [{ kind: 'filesystem' }] });
  const crit = counter(ccos, 'x.crit', { risk: 'critical' });
  const us = counter(ccos, 'x.us', { region: 'us-east-1' });
  const eu = counter(ccos, 'x.eu', { region: 'eu-west-1' });
  constitute(
    ccos,
    C(
      `{:id :no-network :match {:effects [:network]} :action :deny :reason "no network from here"}
       {:id :no-critical :match {:risk [:high :critical]} :action :deny :reason "critical risk is not automated"}
       {:id :no-us :match {:regions ["us-east-1"]} :action :deny :reason "US region not allowed"}`,
      ':default :allow',
    ),
  );
  assertDenied(ccos, await ccos.run('(call :x.net)'), 'policy-denied', 'no-network');
  assertDenied(ccos, await ccos.run('(call :x.crit)'), 'policy-denied', 'no-critical');
  assertDenied(ccos, await ccos.run('(call :x.us)'), 'policy-denied', 'no-us');
  for (const id of ['x.fs', 'x.eu']) {
    const r = await ccos.run(`(call :${id})`);
    assert.equal(r.status, 'completed', JSON.stringify(r.error));
  }
  assert.deepEqual([net.n, fsx.n, crit.n, us.n, eu.n], [0, 1, 0, 0, 1]);
});

test('labels: a rule matching :labels [:pii] applies to calls whose arguments carry :pii', async (t) => {
  const ccos = node(t);
  counter(ccos, 'crm.get', { outputLabels: ['pii'] }, () => 'alice@example.com');
  const mail = counter(ccos, 'mail.send');
  constitute(ccos, C(`{:id :no-pii-mail :match {:capability "mail.*" :labels [:pii]} :action :deny :reason "no PII in mail"}`, ':default :allow'));
  const ok = await ccos.run('(call :mail.send "hello")');
  assert.equal(ok.status, 'completed', JSON.stringify(ok.error));
  assertDenied(ccos, await ccos.run('(let [who (call :crm.get)] (call :mail.send (str "to " who)))'), 'policy-denied', 'no-pii-mail');
  assert.equal(mail.n, 1);
});

test('deny wins over allow and approval, whatever the rule order', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'pay.send', { risk: 'high' });
  approvers(ccos, 'ann');
  constitute(
    ccos,
    C(
      `{:id :allow-all :match {:capability "*"} :action :allow}
       {:id :approve-high :match {:risk [:high]} :action :require-approval :approvals 1}
       {:id :deny-pay :match {:capability "pay.*"} :action :deny :reason "payments are frozen"}`,
      ':roles {:ops ["ann"]}',
    ),
  );
  const d = assertDenied(ccos, await ccos.run('(call :pay.send)'), 'policy-denied', 'deny-pay');
  assert.match(String(d.rationale), /payments are frozen/);
  assert.equal(c.n, 0);
  assert.equal(ccos.governance.approvals.list().length, 0, 'no approval is asked for a call that is denied anyway');
});

test(':default :allow lets an unmatched registered capability through; :default :deny (and no :default) does not', async (t) => {
  const ccos = node(t);
  counter(ccos, 'a.b');
  constitute(ccos, C('', ':default :allow'), 'c1.rtfs');
  assert.equal((await ccos.run('(call :a.b)')).status, 'completed');
  // Replacing it is an amendment: approve it (the default amendment rule: 1 approval from anyone).
  approvers(ccos, 'gov');
  const file = path.join(ccos.dataDir, 'c2.rtfs');
  fs.writeFileSync(file, '{:rules []}');
  const p = ccos.governance.load(file);
  assert.equal(p.status, 'pending');
  approve(ccos, (p as { approval: ApprovalRequest }).approval.id, 'gov');
  assert.equal(ccos.governance.load(file).status, 'active');
  assert.equal(ccos.governance.constitution?.defaultAction, 'deny', 'no :default means deny');
  assertDenied(ccos, await ccos.run('(call :a.b)'), 'policy-denied', 'constitution.default');
});

test('time window: always open allows; never open with :outside :deny denies with the window in the rationale; days and TZ', async (t) => {
  const ccos = node(t);
  counter(ccos, 'mkt.open');
  counter(ccos, 'mkt.closed');
  counter(ccos, 'mkt.nodeny');
  counter(ccos, 'mkt.today');
  counter(ccos, 'mkt.otherdays');
  const tz = 'America/New_York';
  const now = nowIn(tz);
  const others = DAYS.filter((d) => d !== now.day).map((d) => ':' + d).join(' ');
  constitute(
    ccos,
    C(
      `{:id :always :match {:capability "mkt.open"} :window {:from "00:00" :to "24:00" :tz "${tz}"} :outside :deny :action :allow}
       {:id :never :match {:capability "mkt.closed"} :window {:days [:mon :tue :wed :thu :fri] :from "09:30" :to "09:30" :tz "${tz}"} :outside :deny :action :allow :reason "market hours"}
       {:id :never-no-outside :match {:capability "mkt.nodeny"} :window {:from "10:00" :to "10:00" :tz "${tz}"} :action :allow}
       {:id :today :match {:capability "mkt.today"} :window {:days [:${now.day}] :tz "${tz}"} :outside :deny :action :allow}
       {:id :other-days :match {:capability "mkt.otherdays"} :window {:days [${others}] :tz "${tz}"} :outside :deny :action :allow :reason "weekdays only"}`,
    ),
  );
  const open = await ccos.run('(call :mkt.open)');
  assert.equal(open.status, 'completed', JSON.stringify(open.error));
  const d = assertDenied(ccos, await ccos.run('(call :mkt.closed)'), 'policy-denied', 'never');
  assert.match(String(d.rationale), /market hours \(outside mon,tue,wed,thu,fri 09:30–09:30 America\/New_York\)/);
  // Outside its window, a rule without :outside does not apply: the default decides.
  assertDenied(ccos, await ccos.run('(call :mkt.nodeny)'), 'policy-denied', 'constitution.default');
  assert.equal((await ccos.run('(call :mkt.today)')).status, 'completed', 'today (in New York) is inside a window of today');
  assertDenied(ccos, await ccos.run('(call :mkt.otherdays)'), 'policy-denied', 'other-days');
});

test('time window: a from/to range around the current time in the time zone is inside; one that ended is outside', async (t) => {
  const ccos = node(t);
  counter(ccos, 'w.now');
  counter(ccos, 'w.past');
  const tz = 'Asia/Tokyo';
  const { minutes } = nowIn(tz);
  // Windows do not wrap midnight: keep clear of it.
  if (minutes < 10 || minutes > 1429) {
    t.skip('too close to midnight in Tokyo');
    return;
  }
  const from = hhmm(minutes - 5);
  const to = hhmm(minutes + 5);
  const pastFrom = hhmm(minutes - 9);
  const pastTo = hhmm(minutes - 6);
  constitute(
    ccos,
    C(
      `{:id :now :match {:capability "w.now"} :window {:from "${from}" :to "${to}" :tz "${tz}"} :outside :deny :action :allow}
       {:id :past :match {:capability "w.past"} :window {:from "${pastFrom}" :to "${pastTo}" :tz "${tz}"} :outside :deny :action :allow}`,
    ),
  );
  const r = await ccos.run('(call :w.now)');
  assert.equal(r.status, 'completed', `now ${hhmm(minutes)} in ${tz} should be inside ${from}–${to}: ${JSON.stringify(r.error)}`);
  assertDenied(ccos, await ccos.run('(call :w.past)'), 'policy-denied', 'past');
});

test('rate: {:max 2 :per-seconds 60} allows two calls, denies the third with the rule and the limit', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'api.hit');
  constitute(ccos, C(`{:id :api-rate :match {:capability "api.*"} :rate {:max 2 :per-seconds 60} :action :allow}`));
  const r = await ccos.run('(do (call :api.hit) (call :api.hit) (call :api.hit))');
  const d = assertDenied(ccos, r, 'policy-denied', 'api-rate');
  assert.match(String(d.rationale), /rate limit: 2 calls per 60 s/);
  assert.equal(c.n, 2);
  // The rate is per rule across runs (and processes: it is kept in the store).
  const again = node(t, ccos.dataDir);
  counter(again, 'api.hit');
  assertDenied(again, await again.run('(call :api.hit)'), 'policy-denied', 'api-rate');
});

test('rate: the window slides (a call is allowed again once the window has passed)', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'api.hit');
  constitute(ccos, C(`{:id :burst :match {:capability "api.*"} :rate {:max 1 :per-seconds 1} :action :allow}`));
  assert.equal((await ccos.run('(call :api.hit)')).status, 'completed');
  assertDenied(ccos, await ccos.run('(call :api.hit)'), 'policy-denied', 'burst');
  await sleep(1100);
  assert.equal((await ccos.run('(call :api.hit)')).status, 'completed');
  assert.equal(c.n, 2);
});

test('fractional numbers in a constitution (:per-seconds 0.5, :expires-in-hours 0.5) are accepted', async (t) => {
  const ccos = node(t);
  counter(ccos, 'api.hit');
  constitute(ccos, C(`{:id :half :match {:capability "api.*"} :rate {:max 1 :per-seconds 0.5} :action :allow} {:id :ask :match {:capability "x.*"} :action :require-approval :expires-in-hours 0.5}`));
  const c = ccos.governance.constitution!;
  assert.equal(c.rules[0].rate?.perMs, 500);
  assert.equal(c.rules[1].approval?.expiresMs, 1_800_000);
});

test(':when predicates are pure RTFS functions of the call; a runaway predicate fails closed; a predicate cannot call', async (t) => {
  const ccos = node(t);
  const pay = counter(ccos, 'pay.send');
  const loop = counter(ccos, 'loop.cap');
  const impure = counter(ccos, 'impure.cap');
  constitute(
    ccos,
    C(
      `{:id :big-payment :match {:capability "pay.*"} :when (fn [call] (> (:amount (first (:args call))) 1000)) :action :deny :reason "payments over 1000 need a human"}
       {:id :runaway :match {:capability "loop.*"} :when (fn [call] (loop [i 0] (recur (inc i)))) :action :allow}
       {:id :sneaky :match {:capability "impure.*"} :when (fn [call] (call :pay.send {:amount 1})) :action :allow}`,
      ':default :allow',
    ),
  );
  assert.equal((await ccos.run('(call :pay.send {:amount 10})')).status, 'completed');
  const d = assertDenied(ccos, await ccos.run('(call :pay.send {:amount 5000})'), 'policy-denied', 'big-payment');
  assert.match(String(d.rationale), /over 1000/);
  const started = Date.now();
  const r = assertDenied(ccos, await ccos.run('(call :loop.cap)'), 'policy-denied', 'runaway');
  assert.match(String(r.rationale), /predicate failed.*fuel.*failing closed/s);
  assert.ok(Date.now() - started < 10_000, 'fuel bounds the predicate');
  assertDenied(ccos, await ccos.run('(call :impure.cap)'), 'policy-denied', 'sneaky');
  assert.deepEqual([pay.n, loop.n, impure.n], [1, 0, 0], 'the predicate did not pay');
});

test(':require-idempotency and :require-contracts', async (t) => {
  const ccos = node(t);
  const w = counter(ccos, 'db.write');
  const x = counter(ccos, 'db.exec');
  constitute(
    ccos,
    C(
      `{:id :allow :match {:capability "db.*"} :action :allow}
       {:id :keyed-writes :match {:capability "db.write"} :action :require-idempotency}
       {:id :checked-exec :match {:capability "db.exec"} :action :require-contracts}`,
    ),
  );
  assertDenied(ccos, await ccos.run('(call :db.write 1)'), 'idempotency-required', /./);
  const keyed = await ccos.run('(step "w" ^{:idempotency {:key "w-1"}} (call :db.write 1))');
  assert.equal(keyed.status, 'completed', JSON.stringify(keyed.error));
  assertDenied(ccos, await ccos.run('(call :db.exec 1)'), 'contracts-required', /./);
  const checked = await ccos.run(`(step "x" ^{:post (fn [ctx ctx'] (= (:result ctx') "ok"))} (call :db.exec 1))`);
  assert.equal(checked.status, 'completed', JSON.stringify(checked.error));
  assert.deepEqual([w.n, x.n], [1, 1]);
});

test(':require-idempotency / :require-contracts denials name the rule that required them', async (t) => {
  const ccos = node(t);
  counter(ccos, 'db.write');
  counter(ccos, 'db.exec');
  constitute(
    ccos,
    C(
      `{:id :allow :match {:capability "db.*"} :action :allow}
       {:id :keyed-writes :match {:capability "db.write"} :action :require-idempotency}
       {:id :checked-exec :match {:capability "db.exec"} :action :require-contracts}`,
    ),
  );
  assertDenied(ccos, await ccos.run('(call :db.write 1)'), 'idempotency-required', 'keyed-writes');
  assertDenied(ccos, await ccos.run('(call :db.exec 1)'), 'contracts-required', 'checked-exec');
});

test(':require-compensation loads as a rule action', async (t) => {
  const ccos = node(t);
  constitute(ccos, C(`{:id :undoable :match {:capability "cfg.*"} :action :require-compensation}`, ':default :allow'));
  assert.equal(ccos.governance.constitution?.rules[0].action, 'require-compensation');
});

test(':require-compensation: the gate refuses a call outside step.with-compensation, allows it inside', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'cfg.apply');
  counter(ccos, 'cfg.revert');
  constitute(ccos, C(`{:id :undoable :match {:capability "cfg.apply"} :action :require-compensation}`, ':default :allow'));
  const inside = await ccos.run('(step.with-compensation (step "apply" (call :cfg.apply)) (step "revert" (call :cfg.revert)))');
  assert.equal(inside.status, 'completed', JSON.stringify(inside.error));
  const outside = await ccos.run('(let [f (fn [id] (call id))] (f (keyword "cfg.apply")))');
  assert.equal(outside.status, 'failed');
  assert.equal(outside.error?.code, 'compensation-required');
  assert.equal(c.n, 1);
});

// ---------------------------------------------------------------------------------------------
// The constitution on the chain; amendments

test('loading a constitution records ConstitutionLoaded with the sha256 of the file; it survives a restart', async (t) => {
  const ccos = node(t);
  const text = C(`{:id :a :match {:capability "x.*"} :action :allow}`);
  const { hash, file } = constitute(ccos, text);
  const want = `sha256:${createHash('sha256').update(fs.readFileSync(file)).digest('hex')}`;
  assert.equal(hash, want);
  const loaded = actions(ccos, 'ConstitutionLoaded');
  assert.equal(loaded.length, 1);
  assert.equal(loaded[0].data.hash, want);
  assert.equal(loaded[0].data.rules, 1);
  assert.equal(loaded[0].data.previous, null);
  // Loading the same file again changes nothing.
  assert.deepEqual(ccos.governance.load(file), { status: 'active', hash: want });
  assert.equal(actions(ccos, 'ConstitutionLoaded').length, 1);
  ccos.close();
  const again = node(t, ccos.dataDir);
  assert.equal(again.governance.constitution?.hash, want, 'the constitution in force is persisted');
  assertChainOk(again);
});

test('amending the constitution needs the approvals its :amendment names; until then the old one stays in force', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'x.y');
  approvers(ccos, 'gov1', 'gov2', 'dev');
  const v1 = constitute(ccos, C(`{:id :deny-x :match {:capability "x.*"} :action :deny :reason "frozen"}`, ':roles {:governor ["gov1" "gov2"] :developer ["dev"]} :amendment {:approvals 2 :roles [:governor]}'), 'v1.rtfs');
  const file = path.join(ccos.dataDir, 'v2.rtfs');
  fs.writeFileSync(file, C(`{:id :allow-x :match {:capability "x.*"} :action :allow}`, ':roles {:governor ["gov1" "gov2"]}'));
  const p = ccos.governance.load(file);
  assert.equal(p.status, 'pending');
  const req = (p as { approval: ApprovalRequest }).approval;
  assert.equal(req.kind, 'amendment');
  assert.deepEqual(req.requirement.roles, ['governor']);
  assert.equal(actions(ccos, 'ApprovalRequested').filter((a) => a.data.approval === req.id).length, 1);
  assert.equal(ccos.governance.constitution?.hash, v1.hash, 'still v1');
  assertDenied(ccos, await ccos.run('(call :x.y)'), 'policy-denied', 'deny-x');
  // Loading again while pending returns the same request.
  assert.equal((ccos.governance.load(file) as { approval: ApprovalRequest }).approval.id, req.id);
  await failsWith(() => approve(ccos, req.id, 'dev'), 'unauthorized-approver', /dev holds none of the roles/);
  approve(ccos, req.id, 'gov1');
  assert.equal(ccos.governance.load(file).status, 'pending', 'one of two approvals');
  approve(ccos, req.id, 'gov2');
  const done = ccos.governance.load(file);
  assert.equal(done.status, 'active');
  const loaded = actions(ccos, 'ConstitutionLoaded');
  assert.equal(loaded.length, 2);
  assert.equal(loaded[1].data.previous, v1.hash);
  assert.equal((await ccos.run('(call :x.y)')).status, 'completed');
  assert.equal(c.n, 1);
  assertChainOk(ccos);
});

test('a denied amendment cannot be loaded', async (t) => {
  const ccos = node(t);
  approvers(ccos, 'gov');
  constitute(ccos, C('', ':roles {:governor ["gov"]} :amendment {:approvals 1 :roles [:governor]}'), 'v1.rtfs');
  const file = path.join(ccos.dataDir, 'v2.rtfs');
  fs.writeFileSync(file, C('', ':default :allow'));
  const p = ccos.governance.load(file) as { approval: ApprovalRequest };
  approve(ccos, p.approval.id, 'gov', 'deny', 'too permissive');
  await failsWith(() => ccos.governance.load(file), 'amendment-denied');
  assert.equal(ccos.governance.constitution?.defaultAction, 'deny');
});

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error naming the rule; nothing loaded; the previous constitution stays

const BAD: [string, string, RegExp][] = [
  ['unknown action', C(`{:id :r1 :action :allow} {:id :oops :action :permit}`), /rule oops: :action must be one of/],
  ['unknown match key', C(`{:id :r1 :match {:capabilty "x.*"} :action :allow}`), /rule r1: unknown :match key :capabilty/],
  ['bad time zone', C(`{:id :tzbad :window {:tz "Mars/Olympus"} :action :allow}`), /rule tzbad: unknown time zone Mars\/Olympus/],
  ['bad HH:MM', C(`{:id :hhmm :window {:from "9.30" :to "16:00"} :action :allow}`), /rule hhmm: :window :from must be "HH:MM"/],
  ['minutes out of range', C(`{:id :hhmm2 :window {:from "09:75"} :action :allow}`), /rule hhmm2: :window :from/],
  ['unknown day', C(`{:id :days :window {:days [:monday]} :action :allow}`), /rule days: unknown day :monday/],
  ['quorum role without approver', C(`{:id :q :action :require-approval :quorum [:arbiter.ethics]}`, ':roles {:arbiter.risk ["rita"]}'), /rule q: role :arbiter.ethics has no approver/],
  ['approval role without approver', C(`{:id :rr :action :require-approval :roles [:cfo]}`), /rule rr: role :cfo has no approver/],
  ['duplicate rule id', C(`{:id :same :action :allow} {:id :same :action :deny}`), /rule same: two rules have this id/],
  ['rules not a vector', `{:rules {:id :x :action :allow}}`, /:rules must be a vector/],
  ['rule not a map', C(`[:id :x]`), /rule 1: each rule is a map/],
  ['rule without id', C(`{:action :allow}`), /rule 1: every rule needs an :id/],
  ['unknown risk tier', C(`{:id :rk :match {:risk [:extreme]} :action :deny}`), /rule rk: unknown risk tier :extreme/],
  ['bad rate', C(`{:id :rt :rate {:max 5} :action :allow}`), /rule rt: :rate needs/],
  [':when not a function', C(`{:id :wn :when true :action :deny}`), /rule wn: :when must be a function/],
  ['bad :default', `{:default :maybe :rules []}`, /:default must be :allow or :deny/],
  ['parse error', `{:rules [{:id :x :action :allow}`, /constitution|unexpected|unclosed|EOF|end of input/i],
  ['not a map', `[:rules]`, /evaluates to a map/],
];

for (const [what, text, msg] of BAD) {
  test(`bad constitution (${what}) → CcosError 'constitution' naming the problem; the previous one stays in force`, async (t) => {
    const ccos = node(t);
    counter(ccos, 'x.y');
    const good = constitute(ccos, C(`{:id :allow-x :match {:capability "x.*"} :action :allow}`), 'good.rtfs');
    const file = path.join(ccos.dataDir, 'bad.rtfs');
    fs.writeFileSync(file, text);
    const err = await failsWith(() => ccos.governance.load(file), 'constitution', msg);
    assert.ok(err.hint, 'the error has a hint');
    assert.equal(ccos.governance.constitution?.hash, good.hash);
    assert.equal(actions(ccos, 'ConstitutionLoaded').length, 1);
    assert.equal(ccos.governance.approvals.list().length, 0, 'no amendment request for a bad file');
    assert.equal((await ccos.run('(call :x.y)')).status, 'completed');
  });
}

test('bad constitution as the first one: nothing is loaded', async (t) => {
  const ccos = node(t);
  const file = path.join(ccos.dataDir, 'bad.rtfs');
  fs.writeFileSync(file, C(`{:id :a :action :allow} {:id :a :action :allow}`));
  await failsWith(() => ccos.governance.load(file), 'constitution', /rule a/);
  assert.equal(ccos.governance.constitution, null);
  assert.equal(actions(ccos, 'ConstitutionLoaded').length, 0);
});

test('contradictory window (:from after :to, e.g. a night window 22:00–06:00) is rejected or wraps midnight', async (t) => {
  const ccos = node(t);
  const file = path.join(ccos.dataDir, 'night.rtfs');
  fs.writeFileSync(file, C(`{:id :night :window {:from "22:00" :to "06:00"} :outside :deny :action :allow}`, ':default :allow'));
  let threw = false;
  try {
    ccos.governance.load(file);
  } catch (e) {
    threw = e instanceof CcosError && e.code === 'constitution' && /night/.test(e.message);
  }
  if (threw) return;
  // Loaded: then it must wrap midnight — 23:00 UTC is inside.
  const c = ccos.governance.constitution!;
  const { decide } = await import('../src/ccos/governance/constitution.js');
  const v = decide(c, { capability: 'a', manifest: { id: 'a', risk: 'low', effects: [] } as never, args: [], labels: new Set(), stepPath: [], now: new Date('2024-01-02T23:00:00Z') }, () => 0);
  assert.equal(v.decision, 'allow', 'a night window contains 23:00');
  assert.equal(v.rule, 'night');
});

// ---------------------------------------------------------------------------------------------
// Approvals

test('per-call approval from a rule: pause → approve → resume in a NEW Ccos over the same dir; signatures verify on the chain', async (t) => {
  const dir = tempDir(t);
  const ccos = node(t, dir);
  const c = counter(ccos, 'deploy.prod', { risk: 'high', cost: { usdPerCall: 2 } });
  approvers(ccos, 'ann');
  constitute(ccos, C(`{:id :deploys :match {:capability "deploy.*"} :action :require-approval :approvals 1 :roles [:release] :reason "deploys need a release manager"}`, ':roles {:release ["ann"]}'));
  const r = await ccos.run('(step "ship" (call :deploy.prod {:version "1.2" :api_key "s3cret"}))');
  const id = approvalId(r);
  assert.equal(c.n, 0);
  const pause = decisions(ccos, r.runId).find((d) => d.decision === 'pause');
  assert.ok(pause, 'the pause is a recorded PolicyDecision');
  assert.equal(pause.rule, 'deploys');
  assert.match(String(pause.rationale), new RegExp(`waiting for approval ${id}`));
  const req = ccos.governance.approvals.get(id)!;
  assert.equal(req.kind, 'call');
  assert.equal(req.summary.capability, 'deploy.prod');
  assert.equal(req.summary.estimated_cost_usd, 2);
  assert.deepEqual(req.summary.step, ['ship']);
  assert.doesNotMatch(JSON.stringify(req.summary), /s3cret/, 'secrets are redacted in the summary');
  assert.ok(actions(ccos, 'ApprovalRequested', r.runId).some((a) => a.data.approval === id));
  ccos.close();

  // Another node (as another process would) decides and resumes.
  const other = node(t, dir);
  const c2 = counter(other, 'deploy.prod', { risk: 'high', cost: { usdPerCall: 2 } }, () => 'deployed');
  const decided = approve(other, id, 'ann');
  assert.equal(decided.status, 'approved');
  const done = await other.resume(r.runId);
  assert.equal(done.status, 'completed', JSON.stringify(done.error));
  assert.equal(plain(done), 'deployed');
  assert.equal(c.n + c2.n, 1, 'the capability ran once');
  const verified = other.governance.approvals.verifyDecisions();
  assert.deepEqual(verified.map((v) => [v.approval, v.approver, v.ok]), [[id, 'ann', true]]);
  const decidedAction = actions(other, 'ApprovalDecided').find((a) => a.data.approval === id && a.data.decision === 'approve');
  assert.ok(decidedAction && typeof decidedAction.data.signature === 'string' && decidedAction.data.key_id, 'the signed decision is on the chain');
  assertChainOk(other);
});

test('per-step approval ^{:policy {:requires_approvals 1}}: only that step pauses; a denial fails the step (approval-denied)', async (t) => {
  const ccos = node(t);
  const a = counter(ccos, 'x.a');
  const b = counter(ccos, 'x.b');
  approvers(ccos, 'ann');
  constitute(ccos, C(`{:id :allow :match {:capability "x.*"} :action :allow}`));
  const r = await ccos.run('[(step "free" (call :x.a)) (step "gated" ^{:policy {:requires_approvals 1}} (call :x.b))]');
  const id = approvalId(r);
  assert.equal(ccos.governance.approvals.get(id)?.kind, 'step');
  assert.equal(ccos.governance.approvals.get(id)?.subjectKey, 'step:gated');
  assert.deepEqual([a.n, b.n], [1, 0]);
  assert.deepEqual(decisions(ccos, r.runId).map((d) => [d.decision, d.rule]), [['pause', 'step.policy']]);
  approve(ccos, id, 'ann', 'deny', 'not during the freeze');
  const done = await ccos.resume(r.runId);
  assert.equal(done.status, 'failed');
  assert.equal(done.error?.code, 'approval-denied');
  assert.match(done.error!.message, /denied by ann: not during the freeze/);
  assert.equal(b.n, 0);
  assert.ok(actions(ccos, 'StepFailed', r.runId).some((s) => s.data.name === 'gated'));
  assert.ok(decisions(ccos, r.runId).some((d) => d.decision === 'deny' && d.rule === 'step.policy'));
});

test('a denied step with :on-fail :continue lets the plan go on', async (t) => {
  const ccos = node(t);
  counter(ccos, 'x.a');
  approvers(ccos, 'ann');
  const r = await ccos.run('[(step "gated" {:on-fail :continue} ^{:policy {:requires_approvals 1}} (call :x.a)) :after]');
  approve(ccos, approvalId(r), 'ann', 'deny', 'no');
  const done = await ccos.resume(r.runId);
  assert.equal(done.status, 'completed', JSON.stringify(done.error));
  assert.deepEqual(plain(done), [null, 'after']);
});

test('per-plan approval ^{:policy {:risk_tier :high :requires_approvals 2}}: two distinct approvers; one approval covers every call of the plan', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'x.a');
  approvers(ccos, 'ann', 'bob');
  const r = await ccos.run('(plan ^{:policy {:risk_tier :high :requires_approvals 2}} :program [(call :x.a) (call :x.a) (call :x.a)])');
  const id = approvalId(r);
  const req = ccos.governance.approvals.get(id)!;
  assert.equal(req.kind, 'plan');
  assert.equal(req.requirement.count, 2);
  approve(ccos, id, 'ann');
  await failsWith(() => approve(ccos, id, 'ann'), 'already-decided', /ann has already decided/);
  const still = await ccos.resume(r.runId);
  assert.equal(still.status, 'paused', 'one approval of two: still waiting');
  assert.equal((still.waiting as { approval: string }).approval, id);
  assert.equal(approve(ccos, id, 'bob').status, 'approved');
  const done = await ccos.resume(r.runId);
  assert.equal(done.status, 'completed', JSON.stringify(done.error));
  assert.equal(c.n, 3);
  assert.equal(ccos.governance.approvals.list().length, 1, 'one request for the whole plan');
});

test('quorum [:arbiter.strategy :arbiter.ethics :arbiter.risk]: one approval from each role; two roles are not enough', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'trade.execute', { risk: 'critical' });
  approvers(ccos, 'sam', 'eve', 'rita', 'rob');
  constitute(
    ccos,
    C(
      `{:id :arbiters :match {:risk [:critical]} :action :require-approval :quorum [:arbiter.strategy :arbiter.ethics :arbiter.risk] :reason "critical trades need the three arbiters"}`,
      ':roles {:arbiter.strategy ["sam"] :arbiter.ethics ["eve"] :arbiter.risk ["rita" "rob"]}',
    ),
  );
  const r = await ccos.run('(call :trade.execute)');
  const id = approvalId(r);
  assert.equal(approve(ccos, id, 'rita').status, 'pending');
  assert.equal(approve(ccos, id, 'rob').status, 'pending', 'two of the same role do not make a quorum');
  assert.equal(approve(ccos, id, 'sam').status, 'pending');
  assert.equal((await ccos.resume(r.runId)).status, 'paused');
  assert.equal(approve(ccos, id, 'eve').status, 'approved');
  const done = await ccos.resume(r.runId);
  assert.equal(done.status, 'completed', JSON.stringify(done.error));
  assert.equal(c.n, 1);
});

test('step quorum via ^{:policy {:quorum [...]}} and approvals merged from several rules', async (t) => {
  const ccos = node(t);
  counter(ccos, 'x.a', { risk: 'high' });
  approvers(ccos, 'sam', 'eve', 'cfo1');
  constitute(
    ccos,
    C(
      `{:id :allow :match {:capability "x.*"} :action :allow}
       {:id :high :match {:risk [:high]} :action :require-approval :approvals 1 :roles [:finance]}
       {:id :x-quorum :match {:capability "x.a"} :action :require-approval :quorum [:arbiter.strategy :arbiter.ethics]}`,
      ':roles {:arbiter.strategy ["sam"] :arbiter.ethics ["eve"] :finance ["cfo1"]}',
    ),
  );
  const r = await ccos.run('(call :x.a)');
  const id = approvalId(r);
  const req = ccos.governance.approvals.get(id)!;
  assert.equal(req.rule, 'high+x-quorum');
  assert.deepEqual(req.requirement.quorum, ['arbiter.strategy', 'arbiter.ethics']);
  approve(ccos, id, 'sam');
  assert.equal(approve(ccos, id, 'eve').status, 'pending', 'the quorum is there, the finance approval is not');
  assert.equal(approve(ccos, id, 'cfo1').status, 'approved');
  assert.equal((await ccos.resume(r.runId)).status, 'completed');
  // A plan-level quorum.
  const p = await ccos.run('(plan ^{:policy {:quorum [:arbiter.strategy :arbiter.ethics]}} :program (call :ccos.echo 1))');
  const pid = approvalId(p);
  approve(ccos, pid, 'sam');
  assert.equal(approve(ccos, pid, 'eve').status, 'approved');
});

test('expiry: a request not approved within :expires-in-hours expires; the run then fails with approval-expired', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'x.a');
  approvers(ccos, 'ann');
  constitute(ccos, C(`{:id :quick :match {:capability "x.*"} :action :require-approval :approvals 1 :expires-in-hours 1}`));
  const r = await ccos.run('(call :x.a)');
  const id = approvalId(r);
  const req = ccos.governance.approvals.get(id)!;
  assert.ok(Math.abs(Date.parse(req.expires) - Date.parse(req.created) - 3_600_000) < 1000, 'expires one hour after creation');
  // An hour passes: move the expiry into the past rather than wait.
  ccos.store.db.prepare('UPDATE approvals SET expires = ? WHERE id = ?').run(new Date(Date.now() - 1000).toISOString(), id);
  assert.equal(ccos.governance.approvals.get(id)?.status, 'expired');
  assert.ok(actions(ccos, 'ApprovalDecided').some((a) => a.data.approval === id && a.data.status === 'expired'), 'expiry is recorded');
  await failsWith(() => approve(ccos, id, 'ann'), 'already-decided', /already expired/);
  assert.ok(actions(ccos, 'ApprovalRejected').some((a) => a.data.approval === id));
  const done = await ccos.resume(r.runId);
  assert.equal(done.status, 'failed');
  assert.equal(done.error?.code, 'approval-expired');
  assert.equal(c.n, 0);
});

test('bad approvals: unknown, unauthorized, forged and replayed signatures, approving a decided request — rejected, recorded, nothing changes', async (t) => {
  const ccos = node(t);
  counter(ccos, 'x.a');
  approvers(ccos, 'ann', 'bob', 'dev');
  constitute(ccos, C(`{:id :ops :match {:capability "x.*"} :action :require-approval :approvals 1 :roles [:ops]}`, ':roles {:ops ["ann" "bob"] :dev ["dev"]}'));
  const r1 = await ccos.run('(call :x.a 1)');
  const id1 = approvalId(r1);
  const r2 = await ccos.run('(call :x.a 2)');
  const id2 = approvalId(r2);
  const snapshot = (): string => JSON.stringify(ccos.governance.approvals.list());
  const rejected = (): Action[] => actions(ccos, 'ApprovalRejected');

  let before = snapshot();
  await failsWith(() => ccos.governance.approvals.decide(id1, 'mallory', 'approve', 'ok', ccos.governance.roles(), approverSigner(ccos.store, 'ann')), 'unknown-approver', /mallory is not a registered approver/);
  await failsWith(() => approve(ccos, id1, 'dev'), 'unauthorized-approver', /dev holds none of the roles this approval needs \(:ops\)/);
  // Forged: bob's decision signed with ann's key.
  await failsWith(() => ccos.governance.approvals.decide(id1, 'bob', 'approve', 'ok', ccos.governance.roles(), approverSigner(ccos.store, 'ann')), 'signature', /does not verify with bob's registered key/);
  // Garbage signature.
  await failsWith(() => ccos.governance.approvals.decide(id1, 'bob', 'approve', 'ok', ccos.governance.roles(), () => 'AAAA'), 'signature');
  // No key file: the signer cannot even be made (nothing reaches decide).
  await failsWith(() => approverSigner(ccos.store, 'bob', path.join(ccos.dataDir, 'nope.pem')), 'key', /cannot read the private key of bob/);
  await failsWith(() => approve(ccos, 'apr-nothere', 'ann'), 'not-found');
  await failsWith(() => approve(ccos, id1, 'ann', 'deny', '  '), 'invalid-input', /a denial needs a reason/);
  assert.equal(snapshot(), before, 'nothing changed');
  const rejects = rejected();
  assert.deepEqual(
    rejects.map((a) => [a.data.approval, a.data.approver]),
    [[id1, 'mallory'], [id1, 'dev'], [id1, 'bob'], [id1, 'bob']],
    'each rejection is recorded',
  );
  assert.match(String(rejects[0].data.problem), /not a registered approver/);

  // Replayed: ann's real signature for request 1 presented for request 2.
  approve(ccos, id1, 'ann');
  const sig = actions(ccos, 'ApprovalDecided').find((a) => a.data.approval === id1 && a.data.approver === 'ann')!.data.signature as string;
  before = snapshot();
  await failsWith(() => ccos.governance.approvals.decide(id2, 'ann', 'approve', 'ok', ccos.governance.roles(), () => sig), 'signature');
  // Replayed for the same request by someone else, or with another reason.
  await failsWith(() => ccos.governance.approvals.decide(id2, 'ann', 'approve', 'ok!', ccos.governance.roles(), () => sig), 'signature');
  assert.equal(snapshot(), before);
  assert.equal(ccos.governance.approvals.get(id2)?.status, 'pending');

  // Approving an already decided request.
  await failsWith(() => approve(ccos, id1, 'bob'), 'already-decided', /already approved/);
  await failsWith(() => approve(ccos, id1, 'ann', 'deny', 'changed my mind'), 'already-decided');
  assert.equal(ccos.governance.approvals.get(id1)?.status, 'approved');
  assert.ok(ccos.governance.approvals.verifyDecisions().every((v) => v.ok));
  assert.equal((await ccos.resume(r1.runId)).status, 'completed');
  assert.equal((await ccos.resume(r2.runId)).status, 'paused');
  assertChainOk(ccos);
});

test('a tampered decision in the store no longer verifies', async (t) => {
  const ccos = node(t);
  counter(ccos, 'x.a');
  approvers(ccos, 'ann');
  const r = await ccos.run('(step "s" ^{:policy {:requires_approvals 1}} (call :x.a))');
  const id = approvalId(r);
  approve(ccos, id, 'ann', 'approve', 'looks fine');
  const row = ccos.store.db.prepare('SELECT decisions FROM approvals WHERE id = ?').get(id) as { decisions: string };
  const ds = JSON.parse(row.decisions);
  ds[0].reason = 'something else';
  ccos.store.db.prepare('UPDATE approvals SET decisions = ? WHERE id = ?').run(JSON.stringify(ds), id);
  assert.deepEqual(ccos.governance.approvals.verifyDecisions().map((v) => v.ok), [false]);
});

test('createApprover: bad names and duplicates rejected; the private key is 0600', async (t) => {
  const ccos = node(t);
  const a = ccos.governance.approvals.createApprover('ann');
  assert.equal(fs.statSync(a.privateKeyFile).mode & 0o777, 0o600);
  assert.ok(actions(ccos, 'ApproverRegistered').some((x) => x.data.approver === 'ann'));
  await failsWith(() => ccos.governance.approvals.createApprover('ann'), 'exists');
  await failsWith(() => ccos.governance.approvals.createApprover('../evil'), 'invalid-input');
});

// ---------------------------------------------------------------------------------------------
// Budgets

test('budget :max_calls on the plan: the call over the limit is denied (budget-exceeded)', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'x.a');
  const r = await ccos.run('(plan ^{:resources {:max_calls 2}} :program [(call :x.a) (call :x.a) (call :x.a)])');
  const d = assertDenied(ccos, r, 'budget-exceeded', 'budget.resources');
  assert.match(String(d.rationale), /the plan may make 2 calls; this would be call 3/);
  assert.equal(c.n, 2);
});

test('budget: what another node spent on the run meanwhile is counted (a node keeps a running tally per run)', async (t) => {
  const dir = tempDir(t);
  const a = node(t, dir);
  const b = node(t, dir);
  const plan = '(plan ^{:resources {:max_calls 4}} :program [(call :ccos.echo 1) (call :ccos.user.ask "a") (call :ccos.echo 2) (call :ccos.user.ask "b") (call :ccos.echo 3)])';
  const first = await a.run(plan); // node a checks the budget twice and pauses at "a"
  assert.equal(first.status, 'paused');
  a.store.commit();
  const second = await b.resume(first.runId, { answer: 'yes' }); // calls 2 and 3, pauses at "b"
  assert.equal(second.status, 'paused');
  b.store.commit();
  // Back in node a: the answer to "b" is call 4, so the last echo would be call 5.
  const r = await a.resume(first.runId, { answer: 'yes' });
  const d = assertDenied(a, r, 'budget-exceeded', 'budget.resources');
  assert.match(String(d.rationale), /may make 4 calls; this would be call 5/);
});

test('budget :max_calls on a step counts that step only', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'x.a');
  const r = await ccos.run('[(call :x.a) (call :x.a) (step "s" ^{:resources {:max_calls 1}} [(call :x.a) (call :x.a)])]');
  const d = assertDenied(ccos, r, 'budget-exceeded', 'budget.resources');
  assert.match(String(d.rationale), /step s may make 1 calls/);
  assert.equal(c.n, 3);
});

test('budget :max_cost_usd from the cost model', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'llm.ask', { cost: { usdPerCall: 0.4 } });
  const r = await ccos.run('(plan ^{:resources {:max_cost_usd 1.0}} :program [(call :llm.ask) (call :llm.ask) (call :llm.ask)])');
  const d = assertDenied(ccos, r, 'budget-exceeded', 'budget.resources');
  assert.match(String(d.rationale), /budget of \$1; spent \$0\.8000, this call is estimated at \$0\.4/);
  assert.equal(c.n, 2);
  assert.deepEqual(actions(ccos, 'CapabilityResult', r.runId).map((a) => a.costUsd), [0.4, 0.4]);
});

test('budget :max_cost_usd from the provider-reported cost (withCost)', async (t) => {
  const ccos = node(t);
  const c = { n: 0 };
  ccos.registerCapability({ id: 'llm.metered' }, () => {
    c.n++;
    return withCost('answer', 0.6);
  });
  const r = await ccos.run('(plan ^{:resources {:max_cost_usd 1.0}} :program [(call :llm.metered) (call :llm.metered) (call :llm.metered)])');
  const d = assertDenied(ccos, r, 'budget-exceeded', 'budget.resources');
  assert.match(String(d.rationale), /spent \$1\.2000/);
  assert.equal(c.n, 2, 'the reported spend (not an estimate) counts; the third call is refused');
  assert.deepEqual(actions(ccos, 'CapabilityResult', r.runId).map((a) => a.costUsd), [0.6, 0.6]);
});

test('budget :on-exceed :warn lets the call through', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'x.a');
  const r = await ccos.run('(plan ^{:resources {:max_calls 1 :on-exceed :warn}} :program [(call :x.a) (call :x.a) (call :x.a)])');
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(c.n, 3);
});

test('budget :on-exceed :warn records the warning (rule and rationale) on the chain', async (t) => {
  const ccos = node(t);
  counter(ccos, 'x.a');
  const r = await ccos.run('(plan ^{:resources {:max_calls 1 :on-exceed :warn}} :program [(call :x.a) (call :x.a)])');
  const text = JSON.stringify(ccos.chain.list({ runId: r.runId }).map((a) => a.data));
  assert.match(text, /may make 1 calls/);
});

test('budget :on-exceed :pause asks for a budget-extension approval; approved, the run goes on', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'x.a', { cost: { usdPerCall: 1 } });
  approvers(ccos, 'fin');
  const r = await ccos.run('(plan ^{:resources {:max_cost_usd 1 :on-exceed :pause}} :program [(call :x.a) (call :x.a)])');
  const id = approvalId(r);
  const req = ccos.governance.approvals.get(id)!;
  assert.equal(req.kind, 'budget');
  assert.equal(req.rule, 'budget.extension');
  assert.equal(c.n, 1);
  approve(ccos, id, 'fin');
  const done = await ccos.resume(r.runId);
  assert.equal(done.status, 'completed', JSON.stringify(done.error));
  assert.equal(c.n, 2);
});

test('budget :max_wall_ms: once the plan has run longer than allowed, further calls are denied', async (t) => {
  const ccos = node(t);
  const c = { n: 0 };
  ccos.registerCapability({ id: 'slow.op' }, async () => {
    c.n++;
    await sleep(350);
    return 1;
  });
  // The first call starts well within 300 ms; after it, 350 ms have passed.
  const r = await ccos.run('(plan ^{:resources {:max_wall_ms 300}} :program [(call :slow.op) (call :slow.op)])');
  const d = assertDenied(ccos, r, 'budget-exceeded', 'budget.resources');
  assert.match(String(d.rationale), /may run for 300 ms; that time is up/);
  assert.equal(c.n, 1);
});

test('budget :max_llm_tokens from the provider-reported token usage (withCost(value, usd, tokens))', async (t) => {
  const ccos = node(t);
  const c = { n: 0 };
  ccos.registerCapability({ id: 'llm.chat' }, () => {
    c.n++;
    return withCost('reply', 0.01, 800);
  });
  const r = await ccos.run('(plan ^{:resources {:max_llm_tokens 1000}} :program [(call :llm.chat) (call :llm.chat) (call :llm.chat)])');
  const d = assertDenied(ccos, r, 'budget-exceeded', 'budget.resources');
  assert.match(String(d.rationale), /may use 1000 model tokens; 1600 are spent/);
  assert.deepEqual(actions(ccos, 'CapabilityResult', r.runId).map((a) => a.data.tokens), [800, 800]);
  assert.equal(c.n, 2, 'the check is before the call: a call may overrun the token budget; the next one is refused');
});

// ---------------------------------------------------------------------------------------------
// Data labels and locality

/** pii.get returns a labeled e-mail address; probe records the labels of its arguments. */
function labelled(t: T): { ccos: Ccos; seen: string[][]; sink: { n: number } } {
  const ccos = node(t);
  const seen: string[][] = [];
  ccos.registerCapability({ id: 'pii.get', outputLabels: ['pii'] }, () => 'alice@example.com');
  ccos.registerCapability({ id: 'conf.get', outputLabels: ['confidential'] }, () => 42);
  ccos.registerCapability({ id: 'probe' }, (args) => {
    let s: Set<string> | null = null;
    for (const a of args) s = collectLabels(a, s);
    seen.push([...(s ?? [])].sort());
    return null;
  });
  ccos.registerCapability({ id: 'pii.redact', declassifies: ['pii'] }, (args) => String(valueToPlainJson(args[0] as Value)).replace(/[^@.]/g, '*'));
  const sink = counter(ccos, 'public.post', { acceptsLabels: [] });
  counter(ccos, 'internal.post', { acceptsLabels: ['confidential'] });
  return { ccos, seen, sink };
}

test('labels: (str "x" result) of a :pii output carries :pii → a capability that accepts no labels is denied (label-denied)', async (t) => {
  const { ccos, sink } = labelled(t);
  const r = await ccos.run('(let [email (call :pii.get)] (call :public.post (str "x" email)))');
  const d = assertDenied(ccos, r, 'label-denied', 'labels.flow');
  assert.match(String(d.rationale), /arguments carry labels :pii that public.post may not receive/);
  assert.equal(sink.n, 0);
  const res = actions(ccos, 'CapabilityResult', r.runId).find((a) => a.data.capability === 'pii.get')!;
  assert.deepEqual(res.data.labels, ['pii'], 'the result is recorded with its labels');
  // Unlabeled data passes; accepted labels pass; others do not.
  assert.equal((await ccos.run('(call :public.post "hello")')).status, 'completed');
  assert.equal((await ccos.run('(call :internal.post (call :conf.get))')).status, 'completed');
  assertDenied(ccos, await ccos.run('(call :internal.post {:who (call :pii.get) :n (call :conf.get)})'), 'label-denied', 'labels.flow');
});

test('labels: a declassifier (declassifies [pii]) clears :pii; its output may go anywhere', async (t) => {
  const { ccos, sink, seen } = labelled(t);
  const r = await ccos.run('(let [email (call :pii.get) safe (call :pii.redact email)] (call :probe safe) (call :public.post (str "x" safe)))');
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(sink.n, 1);
  assert.deepEqual(seen, [[]]);
  // Declassifying :pii keeps other labels.
  const r2 = await ccos.run('(call :probe (call :pii.redact [(call :pii.get) (call :conf.get)]))');
  assert.equal(r2.status, 'completed', JSON.stringify(r2.error));
  assert.deepEqual(seen[1], ['confidential']);
});

test('labels: a declassifier reached through a pure-looking function still clears :pii (its label region is aborted at the call)', async (t) => {
  const { ccos, sink, seen } = labelled(t);
  const r = await ccos.run('(defn redact [s] (call :pii.redact s)) (defn tidy [s] (str "<" (redact s) ">")) (let [safe (tidy (call :pii.get))] (call :probe safe) (call :public.post safe))');
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.equal(sink.n, 1);
  assert.deepEqual(seen, [[]]);
});

test('labels: a pure function labels its result with its arguments\' labels, also through control flow; the gate sees them', async (t) => {
  const { ccos, sink, seen } = labelled(t);
  // The result has one * per character of the address: it reveals the address's length.
  const stars = '(defn stars [s] (loop [i 0 acc ""] (if (< i (count s)) (recur (inc i) (str acc "*")) acc)))';
  const r = await ccos.run(`${stars} (let [x (call :pii.get)] (call :probe (stars x)) (call :probe (stars "abc")) (call :public.post (stars x)))`);
  assertDenied(ccos, r, 'label-denied', 'labels.flow');
  assert.deepEqual(seen, [['pii'], []]);
  // A function that makes the call itself passes its labeled argument to the gate as before.
  assertDenied(ccos, await ccos.run('(defn post [s] (call :public.post (str "to " s))) (post (call :pii.get))'), 'label-denied', 'labels.flow');
  assert.equal(sink.n, 0);
});

const FLOWS: [string, string][] = [
  ['let', '(let [x (call :pii.get) y x] (call :probe y))'],
  ['str', '(let [x (call :pii.get)] (call :probe (str "mailto:" x)))'],
  ['fn', '(let [f (fn [s] (str s "!"))] (call :probe (f (call :pii.get))))'],
  ['defn', '(defn domain [s] (subs s (inc (clojure.string/index-of s "@")))) (call :probe (domain (call :pii.get)))'],
  ['arithmetic', '(let [n (call :conf.get)] (call :probe (* 2 (+ n 1))))'],
  ['count', '(call :probe (count (call :pii.get)))'],
  ['vector', '(call :probe [1 (call :pii.get)])'],
  ['map value', '(call :probe {:user (call :pii.get)})'],
  ['first of vector', '(call :probe (first [(call :pii.get) 2]))'],
  ['map over', '(call :probe (map (fn [c] (str c)) [(call :pii.get)]))'],
  ['reduce', '(call :probe (reduce (fn [acc s] (str acc s)) "" [(call :pii.get)]))'],
  ['get from map', '(let [m {:e (call :pii.get)}] (call :probe (:e m)))'],
  ['assoc', '(call :probe (assoc {} :e (call :pii.get)))'],
  ['loop/recur', '(let [x (call :conf.get)] (call :probe (loop [i 0 acc 0] (if (< i 3) (recur (inc i) (+ acc x)) acc))))'],
  ['two labels', '(call :probe (str (call :pii.get) (call :conf.get)))'],
  ['apply over a vector holding a labeled value', '(call :probe (apply str ["to " (call :pii.get)]))'],
  ['closure capturing a labeled value', '(let [x (call :pii.get) f (fn [] (str "<" x ">"))] (call :probe (f)))'],
];

for (const [what, src] of FLOWS) {
  test(`labels propagate through pure computation: ${what}`, async (t) => {
    const { ccos, seen } = labelled(t);
    const r = await ccos.run(src);
    assert.equal(r.status, 'completed', JSON.stringify(r.error));
    const want = what === 'two labels' ? ['confidential', 'pii'] : /conf\.get/.test(src) ? ['confidential'] : ['pii'];
    assert.deepEqual(seen, [want], `${src} → probe saw ${JSON.stringify(seen)}`);
  });
}

test('labels propagate through apply of a labeled collection: (apply str (map str (range n))) with a labeled n', async (t) => {
  const { ccos, seen } = labelled(t);
  const r = await ccos.run('(let [n (call :conf.get)] (call :probe (apply str (map str (range n)))))');
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(seen, [['confidential']]);
});

test('labels propagate inside a function defined before the labeled value arrived (fast path off once labels are active)', async (t) => {
  const { ccos, seen } = labelled(t);
  const r = await ccos.run('(defn shout [s] (str s "!" s)) (shout "warm") (let [x (call :pii.get)] (call :probe (shout x)))');
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(seen, [['pii']]);
});

test('unlabeled values stay unlabeled (no false positives)', async (t) => {
  const { ccos, seen } = labelled(t);
  const r = await ccos.run('(let [x (call :pii.get) n (+ 1 2)] (call :probe n) (call :probe (str "a" "b")))');
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(seen, [[], []]);
});

test('labels survive a pause and a resume in another Ccos over the same dir', async (t) => {
  const dir = tempDir(t);
  const first = node(t, dir);
  first.registerCapability({ id: 'pii.get', outputLabels: ['pii'] }, () => 'alice@example.com');
  approvers(first, 'ann');
  const r = await first.run('(let [x (call :pii.get)] (step "gate" ^{:policy {:requires_approvals 1}} (call :ccos.echo 1)) (call :public.post (str "to " x)))');
  const id = approvalId(r);
  approve(first, id, 'ann');
  first.close();
  const second = node(t, dir);
  second.registerCapability({ id: 'pii.get', outputLabels: ['pii'] }, () => 'alice@example.com');
  const sink = counter(second, 'public.post', { acceptsLabels: [] });
  const done = await second.resume(r.runId);
  assertDenied(second, done, 'label-denied', 'labels.flow');
  assert.equal(sink.n, 0);
});

test('labels: an RTFS-defined capability can declare output labels (:output-labels [:pii])', async (t) => {
  const ccos = node(t);
  const file = path.join(ccos.dataDir, 'caps.rtfs');
  fs.writeFileSync(file, '(capability :crm.lookup {:description "looks up a customer" :output-labels [:pii]} (fn [& _] "bob@example.com"))');
  ccos.addRtfsCapabilities(file);
  counter(ccos, 'public.post', { acceptsLabels: [] });
  const r = await ccos.run('(call :public.post (call :crm.lookup))');
  assert.equal(r.error?.code, 'label-denied');
});

test('labels: with :on-label-violation {:approvals 1 :roles [:dpo]} a refused flow pauses for a declassification approval', async (t) => {
  const { ccos, sink } = labelled(t);
  approvers(ccos, 'dpo', 'dev');
  constitute(ccos, C('', ':default :allow :roles {:dpo ["dpo"] :dev ["dev"]} :on-label-violation {:approvals 1 :roles [:dpo]}'));
  const r = await ccos.run('(call :public.post (str "to " (call :pii.get)))');
  const id = approvalId(r);
  const req = ccos.governance.approvals.get(id)!;
  assert.equal(req.rule, 'labels.declassification');
  assert.ok(decisions(ccos, r.runId).some((d) => d.decision === 'pause' && d.rule === 'labels.declassification'));
  await failsWith(() => approve(ccos, id, 'dev'), 'unauthorized-approver');
  approve(ccos, id, 'dpo');
  const done = await ccos.resume(r.runId);
  assert.equal(done.status, 'completed', JSON.stringify(done.error));
  assert.equal(sink.n, 1);
  // Denied by the DPO: the call fails.
  const r2 = await ccos.run('(call :public.post (call :pii.get))');
  approve(ccos, approvalId(r2), 'dpo', 'deny', 'not for publication');
  const d2 = await ccos.resume(r2.runId);
  assert.equal(d2.error?.code, 'approval-denied');
  assert.equal(sink.n, 1);
});

test('bad :on-label-violation is rejected', async (t) => {
  const ccos = node(t);
  const file = path.join(ccos.dataDir, 'c.rtfs');
  fs.writeFileSync(file, C('', ':on-label-violation :maybe'));
  await failsWith(() => ccos.governance.load(file), 'constitution', /:on-label-violation must be :deny or an approval map/);
});

test('locality :data_locality :eu_only denies non-EU capabilities (plan and step scopes), allows EU ones', async (t) => {
  const ccos = node(t);
  const us = counter(ccos, 'store.us', { region: 'us-east-1' });
  const eu = counter(ccos, 'store.eu', { region: 'eu-central-1' });
  const none = counter(ccos, 'store.none');
  const ok = await ccos.run('(plan ^{:resources {:data_locality :eu_only}} :program (call :store.eu))');
  assert.equal(ok.status, 'completed', JSON.stringify(ok.error));
  const d = assertDenied(ccos, await ccos.run('(plan ^{:resources {:data_locality :eu_only}} :program (call :store.us))'), 'locality-denied', 'locality.eu_only');
  assert.match(String(d.rationale), /region us-east-1/);
  assertDenied(ccos, await ccos.run('(plan ^{:resources {:data_locality :eu_only}} :program (call :store.none))'), 'locality-denied', 'locality.eu_only');
  assertDenied(ccos, await ccos.run('[(call :store.us) (step "eu" ^{:resources {:data_locality :eu_only}} (call :store.us))]'), 'locality-denied', 'locality.eu_only');
  assert.deepEqual([us.n, eu.n, none.n], [1, 1, 0]);
});

// ---------------------------------------------------------------------------------------------
// Differential privacy

test('privacy budget: cumulative ε per plan; the call that would exceed it is denied (privacy-budget-exceeded), even with :on-exceed :warn', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'dp.count', { dpEpsilon: 0.4 }, () => 17);
  const r = await ccos.run('(plan ^{:resources {:privacy_budget {:epsilon 1.0}}} :program [(call :dp.count) (call :dp.count) (call :dp.count)])');
  const d = assertDenied(ccos, r, 'privacy-budget-exceeded', 'budget.privacy');
  assert.match(String(d.rationale), /privacy budget of ε=1; spent ε=0.8, this call needs ε=0.4/);
  assert.equal(c.n, 2);
  assert.deepEqual(actions(ccos, 'CapabilityResult', r.runId).map((a) => a.data.epsilon), [0.4, 0.4]);
  const w = await ccos.run('(plan ^{:resources {:privacy_budget {:epsilon 0.5} :on-exceed :warn}} :program [(call :dp.count) (call :dp.count)])');
  assertDenied(ccos, w, 'privacy-budget-exceeded', 'budget.privacy');
  // A step's budget counts the step.
  const s = await ccos.run('[(call :dp.count) (step "q" ^{:resources {:privacy_budget {:epsilon 0.5}}} [(call :dp.count) (call :dp.count)])]');
  assertDenied(ccos, s, 'privacy-budget-exceeded', 'budget.privacy');
});

test('privacy budget :scope :intent: ε is cumulative per intent across runs', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'dp.count', { dpEpsilon: 0.4 }, () => 17);
  const intent = ccos.intents.create('weekly stats');
  const other = ccos.intents.create('other stats');
  const plan = '(plan ^{:resources {:privacy_budget {:epsilon 1.0 :scope :intent}}} :program [(call :dp.count) (call :dp.count)])';
  assert.equal((await ccos.run(plan, { intentId: intent.id })).status, 'completed');
  const second = await ccos.run(plan, { intentId: intent.id });
  const d = assertDenied(ccos, second, 'privacy-budget-exceeded', 'budget.privacy');
  assert.match(String(d.rationale), /spent ε=0.8/);
  assert.equal(c.n, 2);
  assert.equal((await ccos.run(plan, { intentId: other.id })).status, 'completed', 'another intent has its own budget');
  // Without :scope :intent, each run has its own budget.
  assert.equal((await ccos.run('(plan ^{:resources {:privacy_budget {:epsilon 1.0}}} :program [(call :dp.count) (call :dp.count)])', { intentId: intent.id })).status, 'completed');
});

test('privacy budget :per-dataset true: ε is cumulative per dataset (named by the call\'s {:dataset ..}) across runs', async (t) => {
  const ccos = node(t);
  const c = counter(ccos, 'dp.count', { dpEpsilon: 0.4 }, () => 17);
  const plan = (ds: string): string => `(plan ^{:resources {:privacy_budget {:epsilon 1.0 :per-dataset true}}} :program [(call :dp.count {:dataset "${ds}"}) (call :dp.count {:dataset "${ds}"})])`;
  assert.equal((await ccos.run(plan('patients'))).status, 'completed');
  const again = await ccos.run(plan('patients'));
  const d = assertDenied(ccos, again, 'privacy-budget-exceeded', 'budget.privacy');
  assert.match(String(d.rationale), /for dataset patients/);
  assert.equal((await ccos.run(plan('visits'))).status, 'completed');
  assert.equal(c.n, 4);
  assert.deepEqual(actions(ccos, 'CapabilityResult', again.runId).map((a) => a.data.dataset), []);
});

// ---------------------------------------------------------------------------------------------
// Every decision is recorded

test('every decision is recorded: allow inside CapabilityCall, deny and pause as PolicyDecision, each with rule and rationale', async (t) => {
  const ccos = node(t);
  counter(ccos, 'x.ok');
  counter(ccos, 'x.no');
  counter(ccos, 'x.ask');
  approvers(ccos, 'ann');
  constitute(
    ccos,
    C(
      `{:id :ok :match {:capability "x.ok"} :action :allow :reason "reads are fine"}
       {:id :no :match {:capability "x.no"} :action :deny :reason "never"}
       {:id :ask :match {:capability "x.ask"} :action :require-approval}`,
    ),
  );
  const r = await ccos.run('[(call :x.ok) (try (call :x.no) (catch :policy-denied e :caught)) (call :x.ask)]');
  approvalId(r);
  const calls = actions(ccos, 'CapabilityCall', r.runId).map((a) => (a.data.decision as { decision: string }).decision);
  assert.deepEqual(calls, ['allow']);
  const ds = decisions(ccos, r.runId).map((d) => [d.capability, d.decision, d.rule]);
  assert.deepEqual(ds, [['x.no', 'deny', 'no'], ['x.ask', 'pause', 'ask']]);
  for (const d of decisions(ccos, r.runId)) assert.ok(String(d.rationale).length > 3);
});

test('an allowed call records the constitution rule that allowed it, with its rationale', async (t) => {
  const ccos = node(t);
  counter(ccos, 'svc.read');
  counter(ccos, 'other.read');
  constitute(ccos, C(`{:id :allow-svc :match {:capability "svc.*"} :action :allow :reason "service reads are fine"}`, ':default :allow'));
  const r = await ccos.run('[(call :svc.read) (call :other.read)]');
  assert.deepEqual(actions(ccos, 'CapabilityCall', r.runId).map((a) => a.data.decision), [
    { decision: 'allow', rule: 'allow-svc', rationale: 'service reads are fine' },
    { decision: 'allow', rule: 'constitution.default', rationale: 'no rule matched; the constitution allows by default' },
  ]);
});

test('an allowed call records its decision before its result (the chain order is decision → result)', async (t) => {
  const ccos = node(t);
  counter(ccos, 'x.ok', { idempotent: true });
  constitute(ccos, C(`{:id :ok :match {:capability "x.*"} :action :allow}`));
  const r = await ccos.run('(call :x.ok)');
  const types = ccos.chain.list({ runId: r.runId }).map((a) => a.type).filter((x) => x.startsWith('Capability'));
  assert.deepEqual(types, ['CapabilityCall', 'CapabilityResult']);
});

// ---------------------------------------------------------------------------------------------
// The documented example constitution loads

test('docs/governance.md: the complete constitution example loads and behaves as described', async (t) => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const md = fs.readFileSync(path.join(root, 'docs', 'governance.md'), 'utf8');
  const m = /<!-- constitution-example -->\s*```clojure\n([\s\S]*?)```/.exec(md);
  assert.ok(m, 'docs/governance.md has a ```clojure block after <!-- constitution-example -->');
  const ccos = node(t);
  const { hash } = constitute(ccos, m[1]);
  const c = ccos.governance.constitution!;
  assert.equal(c.hash, hash);
  const ids = c.rules.map((r) => r.id);
  const kinds = new Set(c.rules.flatMap((r) => [r.action, r.capability && 'capability', r.effects && 'effects', r.risk && 'risk', r.labels && 'labels', r.regions && 'regions', r.window && 'window', r.rate && 'rate', r.predicate && 'when', r.approval?.quorum.length && 'quorum'].filter(Boolean) as string[]));
  assert.equal(c.onLabelViolation.action, 'approval');
  assert.equal(c.amendment.count, 2);
  for (const k of ['allow', 'deny', 'require-approval', 'require-idempotency', 'require-contracts', 'require-compensation', 'capability', 'effects', 'risk', 'labels', 'regions', 'window', 'rate', 'when', 'quorum']) {
    assert.ok(kinds.has(k), `the example uses ${k} (rules: ${ids.join(', ')})`);
  }
  // Spot-check the example's behaviour.
  counter(ccos, 'secret.read');
  counter(ccos, 'reports.weekly');
  counter(ccos, 'misc.thing');
  counter(ccos, 'pay.send');
  counter(ccos, 'fs.write', { effects: [{ kind: 'filesystem' }] });
  assertDenied(ccos, await ccos.run('(call :secret.read)'), 'policy-denied', 'no-secrets');
  assertDenied(ccos, await ccos.run('(call :fs.write)'), 'policy-denied', 'no-filesystem');
  assertDenied(ccos, await ccos.run('(call :misc.thing)'), 'policy-denied', 'constitution.default');
  assert.equal((await ccos.run('(call :reports.weekly)')).status, 'completed');
  assert.equal((await ccos.run('(call :pay.send {:amount 10})')).status, 'completed');
  approvers(ccos, 'carla');
  const big = await ccos.run('(call :pay.send {:amount 5000})');
  assert.equal(ccos.governance.approvals.get(approvalId(big))?.rule, 'big-payments');
});
