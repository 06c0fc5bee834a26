// No back door: every way of reaching a capability goes through the gate, is decided by the
// constitution in force, and is recorded. With a constitution that denies `secret.*`, each path
// below must be refused (the provider never runs) AND leave a PolicyDecision deny on the chain
// naming the rule:
//   a direct plan call, a local alias function, a capability id computed at run time, apply and
//   higher-order functions, an RTFS-defined capability that calls it internally, a TypeScript
//   provider's nested ctx.call, `ccos.call` (library API), `ccos call` (CLI, another process),
//   and `resume --answer` on a call that waits for approval (an answer must not stand in for it).
// The only raw access is `ccos.registry.resolve(id).provider` — a host embedding the library holds
// the provider object it registered itself; the public `Ccos` methods offer no ungoverned path
// (checked below against the list of methods).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Ccos, openCcos, type Action, type RunResult } from '../src/ccos/index.js';

const CLI = fileURLToPath(new URL('../src/cli/ccos.js', import.meta.url));

const CONSTITUTION = `{:id "no-secrets" :version "1" :default :allow
 :roles {:ops ["ann"]}
 :rules [{:id :no-secrets :match {:capability "secret.*"} :action :deny :reason "secrets are off limits"}
         {:id :ask-vault :match {:capability "vault.*"} :action :require-approval :approvals 1 :roles [:ops]}]}`;

type T = { after: (fn: () => void) => void };

function setup(t: T): { ccos: Ccos; dir: string; reads: { n: number } } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-nbd-'));
  const ccos = openCcos({ dataDir: dir, workspaceRoot: dir });
  t.after(() => {
    try {
      ccos.close();
    } catch {
      /* closed */
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const reads = { n: 0 };
  ccos.registerCapability({ id: 'secret.read' }, () => {
    reads.n++;
    return 'the-secret';
  });
  const file = path.join(dir, 'constitution.rtfs');
  fs.writeFileSync(file, CONSTITUTION);
  assert.equal(ccos.governance.load(file).status, 'active');
  return { ccos, dir, reads };
}

function denies(ccos: Ccos, runId: string): Action[] {
  return ccos.chain.list({ runId }).filter((a) => a.type === 'PolicyDecision' && a.data.decision === 'deny' && a.data.capability === 'secret.read');
}

/** Denied by the constitution's rule, recorded, and the provider never ran. */
function assertGoverned(ccos: Ccos, r: RunResult, reads: { n: number }, what: string): void {
  assert.equal(reads.n, 0, `${what}: the provider must not run`);
  assert.notEqual(r.status, 'completed', `${what}: must not complete (value ${String(r.value)})`);
  const d = denies(ccos, r.runId);
  assert.equal(d.length, 1, `${what}: one PolicyDecision deny for secret.read on the chain`);
  assert.equal(d[0].data.rule, 'no-secrets');
  assert.match(String(d[0].data.rationale), /secrets are off limits/);
  assert.equal(ccos.chain.list({ runId: r.runId }).filter((a) => a.type === 'CapabilityCall' && a.data.capability === 'secret.read').length, 0, `${what}: no CapabilityCall`);
  assert.equal(r.error?.code, 'policy-denied', `${what}: ${JSON.stringify(r.error)}`);
}

const PLANS: [string, string][] = [
  ['a direct plan call', '(call :secret.read)'],
  ['a local alias function', '(defn s [] (call :secret.read)) (s)'],
  ['a capability id computed at run time', '(let [f (fn [c] (call c))] (f (keyword (str "secret" ".read"))))'],
  ['a string capability id', '(call (str "secret" "." "read"))'],
  ['apply of a function that calls', '(apply (fn [c] (call c)) [:secret.read])'],
  ['a higher-order function (map)', '(doall (map (fn [c] (call c)) [:secret.read]))'],
  ['a closure returned from a function', '(defn maker [id] (fn [] (call id))) ((maker :secret.read))'],
  ['inside a step, a try and a parallel block', '(step "s" (try (first (step.parallel (call :secret.read))) (finally nil)))'],
  ['a macro that expands to the call', '(defmacro sneaky [] (list (quote call) :secret.read)) (sneaky)'],
];

for (const [what, src] of PLANS) {
  test(`no back door: ${what}`, async (t) => {
    const { ccos, reads } = setup(t);
    assertGoverned(ccos, await ccos.run(src), reads, what);
  });
}

test('no back door: `call` is a special form, not a function value — (apply call ...) does not reach the capability', async (t) => {
  const { ccos, reads } = setup(t);
  let r: RunResult | undefined;
  try {
    r = await ccos.run('(apply call [:secret.read])');
  } catch {
    /* a compile error is a fine answer */
  }
  assert.equal(reads.n, 0);
  if (r) assert.notEqual(r.status, 'completed');
});

test('no back door: an RTFS-defined capability that calls secret.read internally', async (t) => {
  const { ccos, dir, reads } = setup(t);
  const file = path.join(dir, 'wrapper.rtfs');
  fs.writeFileSync(file, '(capability :wrapper.read {:description "reads the secret for you"} (fn [_] (call :secret.read)))');
  ccos.addRtfsCapabilities(file);
  const r = await ccos.run('(call :wrapper.read nil)');
  assertGoverned(ccos, r, reads, 'RTFS capability');
  // The outer call was allowed and recorded; the inner one was denied under it.
  assert.equal(ccos.chain.list({ runId: r.runId }).filter((a) => a.type === 'CapabilityCall' && a.data.capability === 'wrapper.read').length, 1);
});

test('no back door: a TypeScript provider calling through its CallContext', async (t) => {
  const { ccos, reads } = setup(t);
  ccos.registerCapability({ id: 'helper.fetch' }, (_args, ctx) => ctx.call('secret.read', [], 'inner'));
  const r = await ccos.run('(call :helper.fetch)');
  assertGoverned(ccos, r, reads, 'ctx.call');
});

test('no back door: the library API ccos.call (also with a leading colon)', async (t) => {
  const { ccos, reads } = setup(t);
  assertGoverned(ccos, await ccos.call('secret.read'), reads, 'ccos.call');
  assertGoverned(ccos, await ccos.call(':secret.read'), reads, 'ccos.call(:id)');
  await assert.rejects(() => Promise.resolve().then(() => ccos.call('secret.read) (call :x')), /invalid capability id/);
  assert.equal(reads.n, 0);
});

test('no back door: the CLI `ccos call secret.read` in another process', async (t) => {
  const { ccos, dir } = setup(t);
  // The CLI process has no TypeScript providers: make secret.read an RTFS capability (persisted).
  const file = path.join(dir, 'secret.rtfs');
  fs.writeFileSync(file, '(capability :secret.list {:description "lists secrets"} (fn [_] ["a"]))\n(capability :secret.read {:description "the secret"} (fn [_] "the-secret"))');
  ccos.addRtfsCapabilities(file);
  ccos.close();
  const run = spawnSync(process.execPath, [CLI, '--data-dir', dir, 'call', 'secret.read', 'nil', '--json'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 1, `exit 1 (failure): ${run.stdout} ${run.stderr}`);
  assert.doesNotMatch(run.stdout + run.stderr, /the-secret/);
  assert.match(run.stdout + run.stderr, /policy-denied|secrets are off limits/);
  const again = openCcos({ dataDir: dir, workspaceRoot: dir });
  t.after(() => again.close());
  const runs = again.runs();
  assert.equal(runs.length, 1);
  const d = denies(again, runs[0].id);
  assert.equal(d.length, 1, 'the CLI call is on the chain as a PolicyDecision deny');
  assert.equal(d[0].data.rule, 'no-secrets');
  assert.equal(again.chain.list({ runId: runs[0].id }).filter((a) => a.type === 'CapabilityResult').length, 0);
  assert.equal(again.verifyChain().ok, true);
});

test('no back door: resume --answer cannot stand in for an approval', async (t) => {
  const { ccos } = setup(t);
  const opened = { n: 0 };
  ccos.registerCapability({ id: 'vault.open' }, () => {
    opened.n++;
    return 'opened';
  });
  const r = await ccos.run('(call :vault.open)');
  assert.equal(r.status, 'paused');
  assert.equal((r.waiting as { kind: string }).kind, 'approval');
  const forced = await ccos.resume(r.runId, { answer: 'faked' });
  assert.equal(forced.status, 'paused', `an answer does not approve: ${JSON.stringify(forced)}`);
  const failed = await ccos.resume(r.runId, { retryUnknown: true });
  assert.equal(failed.status, 'paused');
  assert.equal(opened.n, 0);
});

test('no back door: run-level allow lists cannot widen the constitution', async (t) => {
  const { ccos, reads } = setup(t);
  assertGoverned(ccos, await ccos.run('(call :secret.read)', { allow: ['secret.*'] }), reads, 'allow list');
});

test('no back door: the public Ccos API has no ungoverned path (method list reviewed)', () => {
  // Every method below either goes through the orchestrator and gate (run, runFile, resume, call,
  // cancel — compensations are calls too), runs nothing (replay uses the journal, no effects), or
  // reads/registers. A new method must be reviewed and added here.
  const REVIEWED = new Set([
    'constructor',
    'useProviderFactory',
    'registerCapability',
    'addRtfsCapabilities',
    'run',
    'runFile',
    'resume',
    'replay',
    'cancel',
    'call',
    'subscribe',
    'runs',
    'runsUnsafe',
    'runDetails',
    'verifyChain',
    'close',
    'shutdown', // stops MCP servers this node started, closes the store
    'lazyProviders', // private: loads a provider module on first use
    'durability', // a getter: the store's durability level
  ]);
  const methods = Object.getOwnPropertyNames(Ccos.prototype);
  const unreviewed = methods.filter((m) => !REVIEWED.has(m));
  assert.deepEqual(unreviewed, [], `review these Ccos methods for a path around the gate: ${unreviewed.join(', ')}`);
});

test('no back door: replay re-executes from the journal without running providers', async (t) => {
  const { ccos, reads } = setup(t);
  const r = await ccos.run('(try (call :secret.read) (catch :policy-denied e :refused))');
  assert.equal(r.status, 'completed');
  const replay = ccos.replay(r.runId);
  assert.equal(replay.identical, true, replay.divergence);
  assert.equal(reads.n, 0);
});
