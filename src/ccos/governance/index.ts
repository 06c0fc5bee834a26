/**
 * The governance kernel: the constitution in force, and the gate stage that decides every call
 * against it — rules (ACL, time windows, rates, predicates), approvals (per call, step and plan,
 * with quorum and expiry), budgets, data labels and locality, and differential-privacy budgets.
 *
 * Owns: loading and amending the constitution (its hash on the chain; an amendment is itself
 * approved), and the `Interceptor` the gate runs for every call.
 * Must never: let a call through that a rule denies, an approval has not cleared, or a budget
 * forbids; decide without recording the rule and a rationale (the gate records every decision).
 */
import fs from 'node:fs';
import type { Json } from '../../common/canonical.js';
import { IMap, Keyword, List, RtfsError, collectLabels, kw, prStr, type RMap, type Value } from '../../rtfs/index.js';
import { CcosError } from '../errors.js';
import type { GateCall, GateVerdict, Interceptor } from '../gate.js';
import type { Orchestrator } from '../orchestrator.js';
import type { SqliteStore } from '../store/sqlite.js';
import { Approvals, type ApprovalRequest } from './approvals.js';
import { redact } from '../redact.js';
import { decide, parseConstitution, type ApprovalRequirement, type Constitution, type Rule } from './constitution.js';

export { Approvals, approverSigner, type ApprovalRequest } from './approvals.js';
export { redact } from '../redact.js';
export { parseConstitution, decide, type Constitution, type Verdict, type CallFacts } from './constitution.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS constitutions (hash TEXT PRIMARY KEY, source TEXT NOT NULL, file TEXT NOT NULL, loaded TEXT NOT NULL, active INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rate_log (rule TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rate_log_rule ON rate_log(rule, at);
`;

/** What a call without labeled arguments carries. */
const NO_LABELS: ReadonlySet<string> = new Set();

function scopeMeta(call: GateCall, key: string): { meta: RMap; index: number }[] {
  const out: { meta: RMap; index: number }[] = [];
  call.request.scopes.forEach((s, index) => {
    if (IMap.isMap(s.meta) && (s.meta as RMap).has(kw(key))) out.push({ meta: s.meta as RMap, index });
  });
  return out;
}

const num = (v: Value): number | null => (typeof v === 'number' ? v : v !== null && typeof v === 'object' && 'v' in (v as object) ? Number((v as { v: number }).v) : null);

/** What a run, step, intent or dataset has spent, counted up to a chain position (see `tallied`). */
interface Spent {
  calls: number;
  cost: number;
  eps: number;
  tokens: number;
}
interface Tally extends Spent {
  /** The last action counted. */
  upTo: number;
}

/** Tallies kept at most (by run and scope); past this they are all dropped and counted again. */
const MAX_TALLIES = 1024;

export class Governance {
  readonly approvals: Approvals;
  private active: Constitution | null = null;
  /**
   * What each budget's scope (a run, a step of it, an intent, a dataset) has spent so far, so
   * that a budget check reads only the actions made since the last one. Counting from the start
   * at every call made a long run quadratic (4 000 calls under a plan budget: 3.4 ms a call).
   * Valid while no group of writes was lost (`lostGroups`): a lost group takes actions with it.
   */
  private readonly tallies = new Map<string, Tally>();
  private talliesLost = 0;

  constructor(
    private readonly store: SqliteStore,
    private readonly orchestrator: Orchestrator,
  ) {
    store.db.exec(SCHEMA);
    this.approvals = new Approvals(store, orchestrator);
    const row = store.stmt('SELECT source, file FROM constitutions WHERE active = 1').get() as { source: string; file: string } | undefined;
    if (row) this.active = parseConstitution(row.source, row.file);
  }

  /** The constitution in force (null: none loaded; the gate then applies only its built-in checks). */
  get constitution(): Constitution | null {
    return this.active;
  }

  /**
   * Loads a constitution. The first one takes effect at once; replacing one in force is an
   * amendment: it needs the approvals the current constitution's `:amendment` names, and returns
   * the pending request until they are given (then call again with the same file).
   */
  load(file: string): { status: 'active'; hash: string } | { status: 'pending'; approval: ApprovalRequest } {
    let source: string;
    try {
      source = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new CcosError('file', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const next = parseConstitution(source, file); // a bad file throws here: nothing changes
    if (this.active?.hash === next.hash) return { status: 'active', hash: next.hash };
    if (this.active) {
      const subject = `amendment:${next.hash}`;
      const existing = this.approvals.find(null, subject);
      if (!existing || existing.status === 'expired') {
        const req = this.approvals.open(null, subject, 'amendment', { change: 'constitution amendment', from: this.active.hash, to: next.hash, file, rules: next.rules.length }, 'constitution.amendment', this.active.amendment);
        return { status: 'pending', approval: req };
      }
      if (existing.status === 'denied') throw new CcosError('amendment-denied', `the amendment to ${next.hash} was denied (${existing.id})`);
      if (existing.status !== 'approved') return { status: 'pending', approval: existing };
    }
    this.store.tx(() => {
      this.store.stmt('UPDATE constitutions SET active = 0').run();
      this.store.stmt('INSERT INTO constitutions (hash, source, file, loaded, active) VALUES (?, ?, ?, ?, 1) ON CONFLICT(hash) DO UPDATE SET active = 1, loaded = excluded.loaded').run(next.hash, source, file, new Date().toISOString());
      this.orchestrator.record({ type: 'ConstitutionLoaded', data: { hash: next.hash, id: next.id, version: next.version, file, rules: next.rules.length, previous: this.active?.hash ?? null } });
    });
    this.active = next;
    return { status: 'active', hash: next.hash };
  }

  /** Approver names → roles, from the constitution in force. */
  roles(): ReadonlyMap<string, ReadonlySet<string>> {
    return this.active?.roles ?? new Map();
  }

  private rateCount = (rule: Rule, sinceMs: number): number => (this.store.stmt('SELECT COUNT(*) AS n FROM rate_log WHERE rule = ? AND at > ?').get(rule.id, sinceMs) as { n: number }).n;

  /** The gate stage (synchronous: it waits on nothing but the stages after it). */
  readonly interceptor: Interceptor = (call, next) => {
    const manifest = call.capability!.manifest;
    let found: Set<string> | null = null;
    for (const a of call.request.args) found = collectLabels(a, found);
    const labels: ReadonlySet<string> = found ?? NO_LABELS;
    const deny = (rule: string, rationale: string, code = 'policy-denied'): GateVerdict => verdictDeny(call, rule, rationale, code);

    // Data locality and label flow are checked first: they protect data whatever the rules say.
    for (const { meta } of scopeMeta(call, 'resources')) {
      const res = meta.get(kw('resources')) as Value;
      const locality = IMap.isMap(res) ? (res as RMap).get(kw('data_locality'), null) : null;
      if (locality instanceof Keyword && locality.name === 'eu_only' && !(manifest.region ?? '').toLowerCase().startsWith('eu')) {
        return deny('locality.eu_only', `${manifest.id} runs in region ${manifest.region ?? 'unknown'}, the plan requires :data_locality :eu_only`, 'locality-denied');
      }
    }
    const accepts = manifest.acceptsLabels;
    if (labels.size > 0 && accepts) {
      const refused = [...labels].filter((l) => !accepts.includes(l));
      if (refused.length) {
        const why = `arguments carry labels ${refused.map((l) => ':' + l).join(' ')} that ${manifest.id} may not receive (accepts ${accepts.map((l) => ':' + l).join(' ') || 'no labels'})`;
        const policy = this.active?.onLabelViolation;
        if (policy?.action !== 'approval') return deny('labels.flow', why, 'label-denied');
        // A person may declassify this flow: the call waits for that approval.
        const v = this.approval(call, `declassify:${call.request.id}`, 'call', 'labels.declassification', policy.approval);
        if (v) return v;
      }
    }

    // Budgets: calls, cost, and differential privacy, per enclosing plan/step scope.
    const budget = this.checkBudgets(call, manifest.cost?.usdPerCall ?? 0, manifest.dpEpsilon ?? 0);
    if (budget) return budget;

    // Approvals asked for by the plan's or a step's metadata.
    for (const { meta, index } of scopeMeta(call, 'policy')) {
      const policy = meta.get(kw('policy')) as Value;
      if (!IMap.isMap(policy)) continue;
      const count = num((policy as RMap).get(kw('requires_approvals'), null) as Value);
      const quorum = (policy as RMap).get(kw('quorum'), null) as Value;
      const quorumRoles = List.isList(quorum) ? (quorum as List<Value>).toArray().map((q) => (q instanceof Keyword ? q.name : String(q))) : [];
      if ((count ?? 0) <= 0 && quorumRoles.length === 0) continue;
      const scope = call.request.scopes[index];
      const subject = scope.kind === 'plan' ? 'plan' : `step:${call.request.stepPath.slice(0, call.request.scopes.slice(0, index + 1).filter((s) => s.kind === 'step').length).join('/')}`;
      const v = this.approval(call, subject, scope.kind === 'plan' ? 'plan' : 'step', `${scope.kind}.policy`, { count: count ?? 0, roles: [], quorum: quorumRoles, expiresMs: 72 * 3_600_000 });
      if (v) return v;
    }

    const c = this.active;
    if (!c) {
      if (call.warnings?.length) call.allowedBy = { rule: 'gate.default', rationale: call.warnings.join('; ') };
      return next();
    }
    const verdict = decide(c, { capability: call.request.capability, manifest, args: call.request.args, labels, stepPath: call.request.stepPath, now: new Date() }, this.rateCount);
    if (verdict.decision === 'deny') return deny(verdict.rule, verdict.rationale);
    if (verdict.requireIdempotency && !manifest.idempotent && !call.keyed) return deny(verdict.requirementRules?.idempotency ?? verdict.rule, `${manifest.id} needs an idempotency key here (^{:idempotency {:key ..}})`, 'idempotency-required');
    if (verdict.requireContracts && !call.request.scopes.some((s) => IMap.isMap(s.meta) && ((s.meta as RMap).has(kw('pre')) || (s.meta as RMap).has(kw('post'))))) {
      return deny(verdict.requirementRules?.contracts ?? verdict.rule, `${manifest.id} must be called inside a step with :pre or :post contracts`, 'contracts-required');
    }
    if (verdict.requireCompensation && !manifest.idempotent && !call.request.scopes.some((s) => s.kind === 'saga')) {
      return deny(verdict.requirementRules?.compensation ?? verdict.rule, `${manifest.id} must be called in the primary of a step.with-compensation (it changes state and is not idempotent)`, 'compensation-required');
    }
    call.allowedBy = { rule: verdict.rule, rationale: [verdict.rationale, ...(call.warnings ?? [])].join('; ') };
    if (verdict.decision === 'approval') {
      const v = this.approval(call, `call:${call.request.id}`, 'call', verdict.rule, verdict.approval!);
      if (v) return v;
    }
    const out = next();
    if (!verdict.rated.length) return out;
    const rated = (v: GateVerdict): GateVerdict => {
      if (v.allow) {
        const at = Date.now();
        for (const r of verdict.rated) this.store.stmt('INSERT INTO rate_log (rule, at) VALUES (?, ?)').run(r.id, at);
      }
      return v;
    };
    return out instanceof Promise ? out.then(rated) : rated(out);
  };

  /** null when approved; else a pause (pending/new request) or a deny (denied/expired). */
  private approval(call: GateCall, subject: string, kind: ApprovalRequest['kind'], rule: string, requirement: ApprovalRequirement): GateVerdict | null {
    const runId = call.run.runId;
    let req = this.approvals.find(runId, subject);
    if (req?.status === 'approved') return null;
    if (req?.status === 'denied') {
      const why = req.decisions.find((d) => d.decision === 'deny');
      return verdictDeny(call, rule, `denied by ${why?.approver ?? 'an approver'}: ${why?.reason ?? ''}`, 'approval-denied');
    }
    if (req?.status === 'expired') return verdictDeny(call, rule, `the approval request ${req.id} expired before it was approved`, 'approval-expired');
    if (!req) req = this.approvals.open(runId, subject, kind, this.summary(call, rule), rule, requirement);
    return {
      allow: false,
      pause: { kind: 'approval', approval: req.id, rule, needs: describeRequirement(requirement), capability: call.request.capability, step: [...call.request.stepPath], hint: `ccos approve ${req.id} --as NAME, then ccos resume ${runId}` },
      decision: { capability: call.request.capability, decision: 'pause', rule, rationale: `waiting for approval ${req.id} (${describeRequirement(requirement)})` },
    };
  }

  /** What an approver sees: capability, arguments with secrets redacted, step, plan, rule, cost. */
  private summary(call: GateCall, rule: string): Record<string, Json> {
    const m = call.capability!.manifest;
    return {
      capability: m.id,
      description: m.description,
      risk: m.risk,
      arguments: redact(prStr(List(call.request.args))),
      step: [...call.request.stepPath],
      plan: call.run.planId,
      run: call.run.runId,
      rule,
      estimated_cost_usd: m.cost?.usdPerCall ?? 0,
    };
  }

  /** Wall time since the run (or the step at `stepPath`) started, from the chain. */
  private elapsedMs(call: GateCall, stepPath: string[] | null): number {
    const row = stepPath
      ? (this.store.stmt(`SELECT time FROM actions WHERE run_id = ? AND type = 'StepStarted' AND step_path = ? ORDER BY seq DESC LIMIT 1`).get(call.run.runId, JSON.stringify(stepPath)) as { time: string } | undefined)
      : (this.store.stmt(`SELECT time FROM actions WHERE run_id = ? AND type = 'PlanStarted' LIMIT 1`).get(call.run.runId) as { time: string } | undefined);
    return row ? Date.now() - Date.parse(row.time) : 0;
  }

  /**
   * Calls, cost, ε and tokens a run has spent (in the step whose path starts with `prefix`, when
   * `depth` > 0), counting its actions up to `last` (see `lastActionOf`).
   */
  private spentIn(runId: string, depth: number, prefix: string, last: number): Spent {
    return this.tallied(`run\n${runId}\n${prefix}`, last, (from) =>
      this.store
        .stmt(`SELECT COUNT(*) AS calls, COALESCE(SUM(json_extract(body, '$.cost_usd')), 0) AS cost, COALESCE(SUM(json_extract(body, '$.data.epsilon')), 0) AS eps, COALESCE(SUM(json_extract(body, '$.data.tokens')), 0) AS tokens FROM actions WHERE run_id = ? AND seq > ? AND seq <= ? AND type = 'CapabilityResult' AND (? = 0 OR step_path LIKE ? || '%')`)
        .get(runId, from, last, depth, prefix) as Spent,
    );
  }

  /** The sequence number of a run's last action (0: none). */
  private lastActionOf(runId: string): number {
    return (this.store.stmt('SELECT MAX(seq) FROM action_rows WHERE run_id = ?').pluck().get(runId) as number | null) ?? 0;
  }

  /** ε spent by every run of an intent, or on a dataset (named by its calls' `{:dataset ..}`). */
  private epsilonIn(scope: { intentId: string } | { dataset: string }): number {
    const last = (this.store.stmt('SELECT MAX(seq) FROM action_rows').pluck().get() as number | null) ?? 0;
    const [key, sql, param] =
      'intentId' in scope
        ? [`intent\n${scope.intentId}`, 'intent_id = ?', scope.intentId]
        : [`dataset\n${scope.dataset}`, "json_extract(body, '$.data.dataset') = ?", scope.dataset];
    return this.tallied(key, last, (from) => {
      const eps = this.store.stmt(`SELECT COALESCE(SUM(json_extract(body, '$.data.epsilon')), 0) FROM actions WHERE seq > ? AND seq <= ? AND type = 'CapabilityResult' AND ${sql}`).pluck().get(from, last, param) as number;
      return { calls: 0, cost: 0, eps, tokens: 0 };
    }).eps;
  }

  /** The tally under `key`, brought up to action `last` by adding what `since(upTo)` counts after it. */
  private tallied(key: string, last: number, since: (upTo: number) => Spent): Spent {
    if (this.talliesLost !== this.store.lostGroups || this.tallies.size > MAX_TALLIES) {
      this.tallies.clear();
      this.talliesLost = this.store.lostGroups;
    }
    let tally = this.tallies.get(key);
    if (!tally) this.tallies.set(key, (tally = { calls: 0, cost: 0, eps: 0, tokens: 0, upTo: 0 }));
    if (last > tally.upTo) {
      const more = since(tally.upTo);
      tally.calls += more.calls;
      tally.cost += more.cost;
      tally.eps += more.eps;
      tally.tokens += more.tokens;
      tally.upTo = last;
    }
    return tally;
  }

  private checkBudgets(call: GateCall, estimateUsd: number, epsilon: number): GateVerdict | null {
    // Read once for all the scopes with a budget (the plan's and its steps').
    let runLast: number | undefined;
    for (const { meta, index } of scopeMeta(call, 'resources')) {
      const res = meta.get(kw('resources')) as Value;
      if (!IMap.isMap(res)) continue;
      const r = res as RMap;
      const scope = call.request.scopes[index];
      const depth = call.request.scopes.slice(0, index + 1).filter((s) => s.kind === 'step').length;
      const prefix = JSON.stringify(call.request.stepPath.slice(0, depth)).slice(0, -1);
      const spent = this.spentIn(call.run.runId, depth, prefix, (runLast ??= this.lastActionOf(call.run.runId)));
      const where = scope.kind === 'plan' ? 'the plan' : `step ${scope.name}`;
      const onExceed = r.get(kw('on-exceed'), null);
      const mode = onExceed instanceof Keyword ? onExceed.name : 'stop';
      const maxCalls = num(r.get(kw('max_calls'), null) as Value);
      const maxCost = num(r.get(kw('max_cost_usd'), null) as Value);
      const privacy = r.get(kw('privacy_budget'), null) as Value;
      const maxEps = IMap.isMap(privacy) ? num((privacy as RMap).get(kw('epsilon'), null) as Value) : null;
      const maxWall = num(r.get(kw('max_wall_ms'), null) as Value);
      const maxTokens = num(r.get(kw('max_llm_tokens'), null) as Value);
      let problem: string | null = null;
      if (maxCalls !== null && spent.calls + 1 > maxCalls) problem = `${where} may make ${maxCalls} calls; this would be call ${spent.calls + 1}`;
      else if (maxCost !== null && spent.cost + estimateUsd > maxCost + 1e-9) problem = `${where} has a budget of $${maxCost}; spent $${spent.cost.toFixed(4)}, this call is estimated at $${estimateUsd}`;
      else if (maxTokens !== null && spent.tokens >= maxTokens) problem = `${where} may use ${maxTokens} model tokens; ${spent.tokens} are spent`;
      else if (maxWall !== null && this.elapsedMs(call, scope.kind === 'plan' ? null : call.request.stepPath.slice(0, depth)) > maxWall) problem = `${where} may run for ${maxWall} ms; that time is up`;
      else if (maxEps !== null && epsilon > 0) {
        // ε accumulates per plan run (default), per intent (:scope :intent), or per dataset.
        const p = privacy as RMap;
        const sc = p.get(kw('scope'), null);
        const perDataset = p.get(kw('per-dataset'), false) === true;
        const first = call.request.args[0];
        const dataset = perDataset && IMap.isMap(first) ? (first as RMap).get(kw('dataset'), null) : null;
        const datasetName = dataset instanceof Keyword ? dataset.name : typeof dataset === 'string' ? dataset : null;
        let used = spent.eps;
        if (sc instanceof Keyword && sc.name === 'intent' && call.run.intentId) used = this.epsilonIn({ intentId: call.run.intentId });
        if (datasetName !== null) used = this.epsilonIn({ dataset: datasetName });
        if (used + epsilon > maxEps + 1e-12) problem = `${where} has a privacy budget of ε=${maxEps}${datasetName ? ` for dataset ${datasetName}` : ''}; spent ε=${used}, this call needs ε=${epsilon}`;
      }
      if (!problem) continue;
      const isPrivacy = problem.includes('privacy');
      if (mode === 'warn' && !isPrivacy) {
        // Allowed, with the overrun in the decision recorded for this call.
        (call.warnings ??= []).push(`budget warning: ${problem}`);
        continue;
      }
      if (mode === 'pause' && !isPrivacy) {
        const v = this.approval(call, `budget:${prefix}:${spent.calls}:${spent.cost}`, 'budget', 'budget.extension', { count: 1, roles: [], quorum: [], expiresMs: 72 * 3_600_000 });
        if (v) return v;
        continue;
      }
      return verdictDeny(call, isPrivacy ? 'budget.privacy' : 'budget.resources', problem, isPrivacy ? 'privacy-budget-exceeded' : 'budget-exceeded');
    }
    return null;
  }
}

function verdictDeny(call: GateCall, rule: string, rationale: string, code: string): GateVerdict {
  const capability = call.request.capability;
  return { allow: false, decision: { capability, decision: 'deny', rule, rationale }, error: errorFor(code, `call to ${capability} denied: ${rationale}`, call, rule) };
}

function errorFor(code: string, message: string, call: GateCall, rule: string): RtfsError {
  return new RtfsError(code, message, call.request.pos, undefined, `rule ${rule}`);
}

function describeRequirement(r: ApprovalRequirement): string {
  const parts: string[] = [];
  if (r.count > 0) parts.push(`${r.count} approval${r.count === 1 ? '' : 's'}${r.roles.length ? ` from ${r.roles.map((x) => ':' + x).join(' or ')}` : ''}`);
  if (r.quorum.length) parts.push(`one from each of ${r.quorum.map((x) => ':' + x).join(' ')}`);
  return parts.join(' and ') || 'an approval';
}
