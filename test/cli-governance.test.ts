// The governance commands of the `ccos` CLI, in child processes over temporary data dirs (no
// TTY): `check` (admission report, text and --json), admission before `run` (refused, nothing
// runs; --no-admission), `run --dry-run` (predicted cost against the budget, the approvals that
// would be requested; the real chain unchanged), `keys`, `policy load|show` with an amendment
// that needs approval, `approvals list|show` (secrets redacted), `approve`/`deny` errors that
// change nothing, and a run paused for a 2-approval quorum, completed by `approve --resume` in a
// new process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonLine, noStack } from './support.js';

const CLI = fileURLToPath(new URL('../src/cli/ccos.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ccos-cli-gov-'));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function ccosIn(dataDir: string | null, args: string[]): Run {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: '1' };
  delete env.CCOS_HOME;
  const r = spawnSync(process.execPath, [CLI, ...(dataDir ? ['--data-dir', dataDir] : []), ...args], { encoding: 'utf8', cwd: dir, env, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const json = <T = Record<string, unknown>>(r: Run): T => jsonLine<T>(r);

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}


const CAPS = file(
  'caps.rtfs',
  `(capability :billing.refund {:description "refund" :risk :high :idempotent false :cost 1
                             :effects [[:network {:domains ["pay.example"]}]] :input [:map [:cents :int]] :output :keyword}
  (fn [x] :refunded))
(capability :billing.unrefund {:description "undo a refund" :risk :medium :input [:map [:cents :int]] :output :keyword}
  (fn [x] :unrefunded))
(capability :ops.restart {:description "restart" :risk :critical :idempotent true :cost 2 :input :string :output :boolean}
  (fn [s] true))
(capability :acct.login {:description "log in" :risk :medium :idempotent true :cost {:usd-per-call 0.25}
                         :input [:map [:user :string] [:password :string]] :output :keyword}
  (fn [x] :ok))
`,
);

/** A fresh data dir with the test capabilities added. */
function dataDir(name: string): string {
  const d = join(dir, name);
  const r = ccosIn(d, ['caps', 'add', CAPS]);
  assert.equal(r.status, 0, r.stderr);
  return d;
}

function chainLength(d: string): number {
  const r = ccosIn(d, ['chain', 'show', '--json']);
  assert.equal(r.status, 0, r.stderr);
  return json<{ actions: unknown[] }>(r).actions.length;
}

const CONSTITUTION = (version: string): string => `{:id "cli-test" :version "${version}" :default :allow
 :roles {:finance ["alice"] :security ["bob"] :admin ["root"]}
 :amendment {:approvals 1 :roles [:admin]}
 :rules [{:id "refunds" :match {:capability "billing.refund"} :action :require-approval :quorum [:finance :security]}
         {:id "logins" :match {:capability "acct.*"} :action :require-approval :approvals 1 :roles [:finance]}]}`;

/** A data dir with caps, approvers (alice, bob, carol without a role, root) and the constitution. */
function governed(name: string): string {
  const d = dataDir(name);
  for (const who of ['alice', 'bob', 'carol', 'root']) assert.equal(ccosIn(d, ['keys', 'create', who]).status, 0);
  const p = ccosIn(d, ['policy', 'load', file(`${name}-constitution.rtfs`, CONSTITUTION('1'))]);
  assert.equal(p.status, 0, p.stderr);
  return d;
}

function approval(d: string, id: string): { status: string; decisions: { approver: string }[]; summary: Record<string, unknown> } {
  const r = ccosIn(d, ['approvals', 'show', id, '--json']);
  assert.equal(r.status, 0, r.stderr);
  return json<{ approval: { status: string; decisions: { approver: string }[]; summary: Record<string, unknown> } }>(r).approval;
}

// ---------------------------------------------------------------------------------------------
// check and admission before run

const BAD_PLAN = file(
  'bad.rtfs',
  `(do
  (step "pay"
    (call :billing.refund {:cents 500}))
  (step "restart" (call :ops.restart "db"))
  (call :no.such.cap 1))
`,
);

test('check reports each admission error with file:line:col and the rule; exit 1', () => {
  const d = dataDir('check');
  const r = ccosIn(d, ['check', BAD_PLAN]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /REFUSED — 3 errors/);
  assert.match(r.stdout, /error\[compensation-required\]: billing\.refund is a :high risk capability.*\n\s+--> .*bad\.rtfs:3:5\n[\s\S]*?= rule: admission\.compensation/);
  assert.match(r.stdout, /error\[contracts-required\]: ops\.restart .*\n\s+--> .*bad\.rtfs:4:19\n[\s\S]*?= rule: admission\.contracts/);
  assert.match(r.stdout, /error\[unknown-capability\]: unknown capability no\.such\.cap\n\s+--> .*bad\.rtfs:5:3\n[\s\S]*?= rule: registry\.unknown/);
  assert.match(r.stdout, /billing\.refund\s+high\s+network\s+no\s+1\s+\$1\s+3:5 in pay/);
  assert.match(r.stdout, /estimated cost: \$3/);
  noStack(r.stdout + r.stderr);
  const good = ccosIn(d, ['check', file('good.rtfs', '(step.with-compensation (step "pay" ^{:idempotency {:key "k"}} (call :billing.refund {:cents 1})) (step "undo" (call :billing.unrefund {:cents 1})))')]);
  assert.equal(good.status, 0, good.stdout);
  assert.match(good.stdout, /admission of .*good\.rtfs: ok — 0 errors, 0 warnings/);
});

test('check --json: the report shape', () => {
  const d = dataDir('check-json');
  const r = ccosIn(d, ['check', BAD_PLAN, '--json']);
  assert.equal(r.status, 1);
  const j = json<Record<string, unknown> & { errors: Record<string, unknown>[]; capabilities: Record<string, unknown>[] }>(r);
  for (const k of ['ok', 'file', 'errors', 'warnings', 'capabilities', 'approvals', 'denials', 'estimatedCostUsd', 'budget', 'constitution']) assert.ok(k in j, `missing ${k}`);
  assert.equal(j.ok, false);
  assert.deepEqual(
    j.errors.map((e) => [e.code, e.rule, e.line, e.col]),
    [
      ['compensation-required', 'admission.compensation', 3, 5],
      ['contracts-required', 'admission.contracts', 4, 19],
      ['unknown-capability', 'registry.unknown', 5, 3],
    ],
  );
  for (const e of j.errors) assert.equal(e.file, BAD_PLAN);
  const refund = j.capabilities.find((c) => c.id === 'billing.refund')!;
  assert.deepEqual([refund.effects, refund.risk, refund.count, refund.line, refund.col], [['network'], 'high', 1, 3, 5]);
  assert.equal(j.estimatedCostUsd, 3);
});

test('run refuses a plan admission rejects (nothing runs); --no-admission starts it', () => {
  const d = dataDir('refuse');
  const before = chainLength(d);
  const r = ccosIn(d, ['run', BAD_PLAN]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /REFUSED/);
  assert.match(r.stderr, /the run did not start/);
  assert.equal(chainLength(d), before, 'nothing was recorded');
  const j = json<{ ok: boolean; status: string; error: { code: string; line: number }; admission: { errors: unknown[] } }>(ccosIn(d, ['run', BAD_PLAN, '--json']));
  assert.deepEqual([j.ok, j.status, j.error.code, j.error.line, j.admission.errors.length], [false, 'refused', 'admission-refused', 3, 3]);
  const forced = ccosIn(d, ['run', BAD_PLAN, '--no-admission', '--json']);
  assert.equal(forced.status, 1);
  assert.equal(json<{ status: string }>(forced).status, 'failed');
  assert.ok(chainLength(d) > before, 'the forced run ran');
});

// ---------------------------------------------------------------------------------------------
// dry run

test('run --dry-run predicts cost against the budget and the approvals, and leaves the real chain unchanged', () => {
  const d = governed('dry');
  const plan = file(
    'dry.rtfs',
    `(plan ^{:resources {:max_cost_usd 2}} :program
  (let [r (step.with-compensation
            (step "pay" (call :billing.refund {:cents 500}))
            (step "undo" (call :billing.unrefund {:cents 500})))
        l (step "login" (call :acct.login {:user "u" :password "x"}))]
    [r l]))`,
  );
  const before = chainLength(d);
  const runsBefore = json<{ runs: unknown[] }>(ccosIn(d, ['runs', 'list', '--json'])).runs.length;
  const r = ccosIn(d, ['run', '--dry-run', plan]);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /dry run of .*dry\.rtfs: completed \(simulated: no effects\)/);
  assert.match(r.stdout, /value: \[:sim :sim\]/);
  assert.match(r.stdout, /predicted cost: \$1\.25 \(budget \$2: within budget\)/);
  assert.match(r.stdout, /billing\.refund in pay: one from each of :finance :security \(rule refunds\)/);
  assert.match(r.stdout, /acct\.login in login: 1 approval from :finance \(rule logins\)/);
  assert.doesNotMatch(r.stdout, /"x"/, 'the password is redacted');
  const j = json<{ ok: boolean; predictedCostUsd: number; predictedLatencyMs: number; budget: Record<string, unknown>; approvals: { capability: string; rule: string }[]; denials: unknown[]; calls: unknown[] }>(ccosIn(d, ['run', '--dry-run', plan, '--json']));
  assert.equal(j.ok, true);
  assert.equal(j.predictedCostUsd, 1.25);
  assert.equal(j.predictedLatencyMs, 0);
  assert.deepEqual(j.budget, { max_cost_usd: 2, withinBudget: true });
  assert.deepEqual(j.approvals.map((a) => [a.capability, a.rule]), [['billing.refund', 'refunds'], ['acct.login', 'logins']]);
  assert.deepEqual(j.denials, []);
  assert.equal(j.calls.length, 2);
  assert.equal(chainLength(d), before, 'the real chain did not change');
  assert.equal(json<{ runs: unknown[] }>(ccosIn(d, ['runs', 'list', '--json'])).runs.length, runsBefore);
  assert.equal(json<{ approvals: unknown[] }>(ccosIn(d, ['approvals', 'list', '--json'])).approvals.length, 0);
  // Over budget: the denial the gate would make, exit 1.
  const over = ccosIn(d, ['run', '--dry-run', file('over.rtfs', '(plan :resources {:max_cost_usd 1.5} :program (do (call :acct.login {:user "a" :password "b"}) (call :ops.restart "x")))'), '--no-admission']);
  assert.equal(over.status, 1, over.stdout + over.stderr);
  assert.match(over.stdout, /OVER BUDGET|budget\.resources/);
  assert.match(over.stdout, /policy denials:\n\s+ops\.restart: budget\.resources: the plan has a budget of \$1\.5/);
  assert.equal(chainLength(d), before);
});

// ---------------------------------------------------------------------------------------------
// keys and the constitution

test('keys create and list', () => {
  const d = dataDir('keys');
  const r = ccosIn(d, ['keys', 'create', 'alice']);
  assert.equal(r.status, 0, r.stderr);
  const m = /^approver alice: key (key-[0-9a-f]{16})\nprivate key: (.+\.pem)\n$/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(existsSync(m[2]));
  assert.equal(statSync(m[2]).mode & 0o777, 0o600);
  assert.match(r.stderr, /warning: the private key is alice's signature/);
  const again = ccosIn(d, ['keys', 'create', 'alice']);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already has a key/);
  const j = json<{ approvers: { name: string; keyId: string }[] }>(ccosIn(d, ['keys', 'create', 'bob', '--json']));
  assert.ok(j);
  const list = ccosIn(d, ['keys', 'list']);
  assert.equal(list.status, 0);
  assert.match(list.stdout, new RegExp(`^alice\\s+${m[1]}\\s+-`, 'm'));
  assert.match(list.stdout, /^bob\s+key-/m);
  const lj = json<{ approvers: { name: string }[] }>(ccosIn(d, ['keys', 'list', '--json']));
  assert.deepEqual(lj.approvers.map((a) => a.name), ['alice', 'bob']);
});

test('policy load, show, and an amendment approved by an :admin', () => {
  const d = governed('policy');
  const show = ccosIn(d, ['policy', 'show']);
  assert.equal(show.status, 0);
  assert.match(show.stdout, /^id:\s+cli-test$/m);
  assert.match(show.stdout, /^version:\s+1$/m);
  assert.match(show.stdout, /^hash:\s+sha256:[0-9a-f]{64}$/m);
  assert.match(show.stdout, /refunds\s+require-approval \(one from each of :finance :security\)\s+capability billing\.refund/);
  assert.match(show.stdout, /^\s+alice: :finance$/m);
  const v1 = json<{ constitution: { hash: string } }>(ccosIn(d, ['policy', 'show', '--json'])).constitution.hash;
  const v2file = file('policy-v2.rtfs', CONSTITUTION('2'));
  const pending = ccosIn(d, ['policy', 'load', v2file]);
  assert.equal(pending.status, 3, pending.stderr);
  const id = /amendment pending: approval (apr-[0-9a-f]+) needs 1 approval from :admin/.exec(pending.stdout)?.[1];
  assert.ok(id, pending.stdout);
  assert.equal(json<{ constitution: { hash: string } }>(ccosIn(d, ['policy', 'show', '--json'])).constitution.hash, v1, 'still v1');
  const shown = ccosIn(d, ['approvals', 'show', id]);
  assert.match(shown.stdout, /^kind:\s+amendment$/m);
  assert.match(shown.stdout, new RegExp(`^from:\\s+${v1}$`, 'm'));
  // Not an admin: refused, nothing changes.
  const alice = ccosIn(d, ['approve', id, '--as', 'alice']);
  assert.equal(alice.status, 1);
  assert.match(alice.stderr, /alice holds none of the roles this approval needs \(:admin\)/);
  assert.equal(approval(d, id).status, 'pending');
  const root = ccosIn(d, ['approve', id, '--as', 'root', '--reason', 'reviewed']);
  assert.equal(root.status, 0, root.stderr);
  assert.match(root.stdout, /approved/);
  assert.match(root.stdout, /ccos policy load/);
  const active = json<{ status: string; hash: string }>(ccosIn(d, ['policy', 'load', v2file, '--json']));
  assert.equal(active.status, 'active');
  assert.notEqual(active.hash, v1);
  assert.match(ccosIn(d, ['policy', 'show']).stdout, /^version:\s+2$/m);
});

// ---------------------------------------------------------------------------------------------
// approvals

const LOGIN = file('login.rtfs', '(step "login" (call :acct.login {:user "ann" :password "x"}))');

test('approvals list and show: the human summary, with secrets redacted', () => {
  const d = governed('approvals');
  const r = ccosIn(d, ['run', LOGIN]);
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stdout, /waiting for approval apr-[0-9a-f]+ \(acct\.login\): 1 approval from :finance \(rule logins\)/);
  assert.match(r.stdout, /resume with: ccos approve apr-[0-9a-f]+ --as NAME .*--resume/);
  const list = ccosIn(d, ['approvals', 'list']);
  assert.equal(list.status, 0);
  assert.match(list.stdout, /^ID\s+KIND\s+CAPABILITY\s+RULE\s+NEEDS\s+STATUS\s+RUN\s+EXPIRES$/m);
  assert.match(list.stdout, /apr-[0-9a-f]+\s+call\s+acct\.login\s+logins\s+1 approval from :finance\s+pending\s+run-/);
  const lj = json<{ approvals: { id: string; kind: string; capability: string; rule: string; needs: string; status: string; run: string; expires: string }[] }>(ccosIn(d, ['approvals', 'list', '--json']));
  assert.equal(lj.approvals.length, 1);
  const a = lj.approvals[0];
  assert.deepEqual([a.kind, a.capability, a.rule, a.needs, a.status], ['call', 'acct.login', 'logins', '1 approval from :finance', 'pending']);
  assert.match(a.run, /^run-/);
  assert.ok(Date.parse(a.expires) > Date.now());
  assert.equal(json<{ approvals: unknown[] }>(ccosIn(d, ['approvals', 'list', '--status', 'approved', '--json'])).approvals.length, 0);
  assert.equal(ccosIn(d, ['approvals', 'list', '--status', 'weird']).status, 2);
  const show = ccosIn(d, ['approvals', 'show', a.id]);
  assert.equal(show.status, 0);
  assert.match(show.stdout, /^capability:\s+acct\.login — log in$/m);
  assert.match(show.stdout, /^arguments:\s+\[\{:user "ann" :password "\[redacted\]"\}\]$/m);
  assert.match(show.stdout, /^step:\s+login$/m);
  assert.match(show.stdout, /^plan:\s+plan-[0-9a-f]+$/m);
  assert.match(show.stdout, /^rule:\s+logins$/m);
  assert.match(show.stdout, /^est\. cost:\s+\$0\.25$/m);
  assert.match(show.stdout, /^needs:\s+1 approval from :finance$/m);
  for (const out of [show.stdout, list.stdout, ccosIn(d, ['approvals', 'show', a.id, '--json']).stdout, ccosIn(d, ['approvals', 'list', '--json']).stdout]) {
    assert.doesNotMatch(out, /"x"|\\"x\\"/, `the password leaked:\n${out}`);
  }
  const missing = ccosIn(d, ['approvals', 'show', 'apr-nope']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /no approval request apr-nope/);
});

test('approve/deny with a wrong approver, a wrong key file or twice: exit 1 and nothing changes', () => {
  const d = governed('errors');
  const r = json<{ waiting: { approval: string } }>(ccosIn(d, ['run', LOGIN, '--json']));
  const id = r.waiting.approval;
  const cases: [string[], RegExp][] = [
    [['approve', id, '--as', 'nobody'], /nobody is not a registered approver/],
    [['approve', id, '--as', 'carol'], /carol holds none of the roles this approval needs \(:finance\)/],
    [['approve', id, '--as', 'alice', '--key', join(d, 'keys', 'approvers', 'bob.pem')], /does not verify with alice's registered key/],
    [['approve', id, '--as', 'alice', '--key', join(dir, 'no-such.pem')], /could not sign as alice: cannot read the private key/],
    [['deny', id, '--as', 'bob', '--reason', 'no'], /bob holds none of the roles/],
  ];
  for (const [args, re] of cases) {
    const x = ccosIn(d, args);
    assert.equal(x.status, 1, `${args.join(' ')}: ${x.stdout}`);
    assert.match(x.stderr, re);
    noStack(x.stderr);
    const a = approval(d, id);
    assert.equal(a.status, 'pending');
    assert.deepEqual(a.decisions, []);
  }
  const noReason = ccosIn(d, ['deny', id, '--as', 'alice']);
  assert.equal(noReason.status, 2);
  assert.match(noReason.stderr, /needs --reason/);
  assert.equal(ccosIn(d, ['approve', id]).status, 2, 'approve needs --as');
  // The right approver with the right key: approved; a second decision is refused.
  const ok = ccosIn(d, ['approve', id, '--as', 'alice', '--key', join(d, 'keys', 'approvers', 'alice.pem'), '--reason', 'fine']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /approved/);
  assert.match(ok.stdout, /resume the run: ccos resume run-/);
  const twice = ccosIn(d, ['approve', id, '--as', 'alice']);
  assert.equal(twice.status, 1);
  assert.match(twice.stderr, /already approved/);
  const deny = ccosIn(d, ['deny', id, '--as', 'alice', '--reason', 'changed my mind']);
  assert.equal(deny.status, 1);
  const a = approval(d, id);
  assert.equal(a.status, 'approved');
  assert.deepEqual(a.decisions.map((x) => x.approver), ['alice']);
});

test('a denial fails the waiting call when the run resumes', () => {
  const d = governed('deny');
  const r = json<{ runId: string; waiting: { approval: string } }>(ccosIn(d, ['run', LOGIN, '--json']));
  const deny = ccosIn(d, ['deny', r.waiting.approval, '--as', 'alice', '--reason', 'not this user']);
  assert.equal(deny.status, 0, deny.stderr);
  assert.match(deny.stdout, /denied by alice/);
  assert.equal(approval(d, r.waiting.approval).status, 'denied');
  const resumed = ccosIn(d, ['resume', r.runId]);
  assert.equal(resumed.status, 1);
  assert.match(resumed.stderr, /denied by alice: not this user/);
});

test('a run paused for a 2-approval quorum completes with approve --resume in a new process', () => {
  const d = governed('quorum');
  const plan = file('quorum.rtfs', '(step.with-compensation\n  (step "pay" (call :billing.refund {:cents 500}))\n  (step "undo" (call :billing.unrefund {:cents 500})))');
  const r = ccosIn(d, ['run', plan]);
  assert.equal(r.status, 3, r.stderr + r.stdout);
  const id = /waiting for approval (apr-[0-9a-f]+) \(billing\.refund\): one from each of :finance :security/.exec(r.stdout)?.[1];
  assert.ok(id, r.stdout);
  const runId = /run (run-[0-9a-f-]+) paused/.exec(r.stdout)![1];
  // One approval is not enough: --resume does not resume (exit 3, still paused).
  const first = ccosIn(d, ['approve', id, '--as', 'alice', '--resume']);
  assert.equal(first.status, 3, first.stderr);
  assert.match(first.stdout, /still pending/);
  assert.match(first.stdout, /not resuming/);
  assert.equal(json<{ run: { status: string } }>(ccosIn(d, ['runs', 'show', runId, '--json'])).run.status, 'paused');
  // The second, from the other role, completes it.
  const second = ccosIn(d, ['approve', id, '--as', 'bob', '--resume']);
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stdout, /approved \(bob was the last approval needed\)\n:refunded\n/);
  assert.match(second.stderr, new RegExp(`run ${runId} completed`));
  const shown = json<{ run: { status: string; value: string } }>(ccosIn(d, ['runs', 'show', runId, '--json']));
  assert.deepEqual([shown.run.status, shown.run.value], ['completed', ':refunded']);
  const a = approval(d, id);
  assert.equal(a.status, 'approved');
  assert.deepEqual(a.decisions.map((x) => x.approver), ['alice', 'bob']);
  assert.equal(ccosIn(d, ['chain', 'verify']).status, 0);
});

test('--help on the governance commands', () => {
  for (const c of [['check'], ['policy'], ['policy', 'load'], ['policy', 'show'], ['approvals'], ['approvals', 'list'], ['approvals', 'show'], ['approve'], ['deny'], ['keys'], ['keys', 'create'], ['keys', 'list']]) {
    const r = ccosIn(null, [...c, '--help']);
    assert.equal(r.status, 0, `${c.join(' ')}: ${r.stderr}`);
    assert.ok(r.stdout.startsWith(`ccos ${c.join(' ')} — `), r.stdout.slice(0, 60));
    assert.match(r.stdout, /Usage:/);
    assert.equal(ccosIn(null, ['help', ...c]).stdout, r.stdout);
  }
  assert.match(ccosIn(null, ['run', '--help']).stdout, /--dry-run[\s\S]*--no-admission/);
});
