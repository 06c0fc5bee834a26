/**
 * The constitution: governance rules written as RTFS data, compiled for fast per-call decisions.
 *
 * Owns: reading and validating a constitution file (errors name the rule and the field; nothing
 * is loaded from a bad file), compiling matchers (capability patterns, effects, risk tiers,
 * labels, regions, time windows with a time zone, rates, pure RTFS predicates), and deciding one
 * call against the rules.
 * Must never: perform effects while deciding (predicates run in a pure machine under fuel), or
 * allow what a deny rule matches.
 */
import { createHash } from 'node:crypto';
import { Closure, IMap, ISet, Keyword, List, RFloat, RtfsError, createRuntime, evaluateContract, kw, prStr, readAll, truthy, type RMap, type Runtime, type Value } from '../../rtfs/index.js';
import { CcosError } from '../errors.js';
import type { CapabilityManifest, RiskTier } from '../capabilities/types.js';

/** What a rule does when it applies. */
export type RuleAction = 'allow' | 'deny' | 'require-approval' | 'require-idempotency' | 'require-contracts' | 'require-compensation';

/** Who must approve, when a rule asks for approval. */
export interface ApprovalRequirement {
  /** Number of distinct approvers needed. */
  count: number;
  /** Approvers must hold one of these roles (empty: any registered approver). */
  roles: string[];
  /** One approval from each of these roles is needed (on top of `count`). */
  quorum: string[];
  /** An approval request expires after this long (ms). */
  expiresMs: number;
}

/** A time window: days and hours in a time zone (e.g. market hours). */
interface Window {
  days: Set<string>;
  fromMin: number;
  toMin: number;
  tz: string;
  format: Intl.DateTimeFormat;
}

/** One compiled rule. */
export interface Rule {
  id: string;
  action: RuleAction;
  reason: string;
  capability: RegExp[] | null;
  effects: Set<string> | null;
  risk: Set<string> | null;
  labels: Set<string> | null;
  regions: Set<string> | null;
  /** The rule applies inside this window (`:outside :deny` turns it around). */
  window: Window | null;
  outside: RuleAction | null;
  rate: { max: number; perMs: number } | null;
  predicate: Closure | null;
  approval: ApprovalRequirement | null;
}

/** A loaded constitution. */
export interface Constitution {
  id: string;
  version: string;
  /** sha256 of the file's text, recorded on the chain when loaded. */
  hash: string;
  source: string;
  /** Decision for a registered capability that no rule matches. */
  defaultAction: 'allow' | 'deny';
  rules: Rule[];
  /** Approver name → roles. */
  roles: Map<string, Set<string>>;
  /** Who must approve an amendment of this constitution. */
  amendment: ApprovalRequirement;
  /** A call carrying labels its capability may not receive: denied, or paused for a declassification approval. */
  onLabelViolation: { action: 'deny' } | { action: 'approval'; approval: ApprovalRequirement };
  /** The runtime its predicates were compiled in. */
  runtime: Runtime;
}

/** The facts a decision looks at. */
export interface CallFacts {
  capability: string;
  manifest: CapabilityManifest;
  args: Value[];
  labels: ReadonlySet<string>;
  stepPath: readonly string[];
  now: Date;
}

/** The outcome of deciding one call. */
export interface Verdict {
  decision: 'allow' | 'deny' | 'approval';
  rule: string;
  rationale: string;
  approval?: ApprovalRequirement;
  requireIdempotency?: boolean;
  requireContracts?: boolean;
  /** The call must sit in the primary of a `step.with-compensation` (at admission and at the gate). */
  requireCompensation?: boolean;
  /** The rules behind the requirements above (named when a call fails one). */
  requirementRules?: { idempotency?: string; contracts?: string; compensation?: string };
  /** Rules with a rate that allowed this call (their use is counted when the call runs). */
  rated: Rule[];
}

const RISKS: RiskTier[] = ['low', 'medium', 'high', 'critical'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const ACTIONS: RuleAction[] = ['allow', 'deny', 'require-approval', 'require-idempotency', 'require-contracts', 'require-compensation'];

function fail(where: string, msg: string): never {
  throw new CcosError('constitution', `${where}: ${msg}`, { hint: 'fix the constitution file; nothing was loaded' });
}

const get = (m: RMap, k: string): Value => m.get(kw(k), null) as Value;
/** An RTFS number (integer or float) as a JS number, else null. */
const numeric = (v: Value): number | null => (typeof v === 'number' ? v : v instanceof RFloat ? v.v : null);
const name = (v: Value): string | null => (v instanceof Keyword ? v.name : typeof v === 'string' ? v : null);

function names(v: Value, where: string, field: string): string[] {
  if (v === null) return [];
  const items = List.isList(v) || ISet.isSet(v) ? (v as List<Value>).toArray() : [v];
  return items.map((x) => name(x) ?? fail(where, `${field} must list keywords or strings, got ${prStr(x)}`));
}

/** Glob with `*` → RegExp. */
function glob(p: string): RegExp {
  return new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

function minutes(v: Value, where: string, field: string): number {
  const m = typeof v === 'string' ? /^(\d{1,2}):(\d{2})$/.exec(v) : null;
  if (!m || Number(m[1]) > 24 || Number(m[2]) > 59) fail(where, `${field} must be "HH:MM", got ${prStr(v)}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

function approvalOf(m: RMap, where: string): ApprovalRequirement {
  const count = get(m, 'approvals') ?? get(m, 'requires_approvals');
  const quorum = names(get(m, 'quorum'), where, ':quorum');
  if (count !== null && (typeof count !== 'number' || count < 0)) fail(where, `:approvals must be a non-negative integer, got ${prStr(count)}`);
  const hours = get(m, 'expires-in-hours');
  if (hours !== null && (numeric(hours) === null || numeric(hours)! <= 0)) fail(where, ':expires-in-hours must be a positive number');
  return { count: (count as number | null) ?? (quorum.length ? 0 : 1), roles: names(get(m, 'roles'), where, ':roles'), quorum, expiresMs: (numeric(hours) ?? 72) * 3_600_000 };
}

function compileRule(r: Value, index: number, rt: Runtime, seen: Set<string>): Rule {
  if (!IMap.isMap(r)) fail(`rule ${index + 1}`, `each rule is a map, got ${prStr(r)}`);
  const m = r as RMap;
  const id = name(get(m, 'id')) ?? fail(`rule ${index + 1}`, 'every rule needs an :id');
  const where = `rule ${id}`;
  if (seen.has(id)) fail(where, 'two rules have this id');
  seen.add(id);
  const actionName = name(get(m, 'action'));
  const action = (actionName ?? (get(m, 'rate') !== null || get(m, 'window') !== null ? 'allow' : null)) as RuleAction | null;
  if (!action || !ACTIONS.includes(action)) fail(where, `:action must be one of ${ACTIONS.map((a) => ':' + a).join(' ')}`);
  const match = get(m, 'match');
  if (match !== null && !IMap.isMap(match)) fail(where, ':match must be a map');
  const mm = (match ?? IMap()) as RMap;
  for (const k of (mm as RMap).keySeq().toArray()) {
    const kn = name(k as Value);
    if (!kn || !['capability', 'effects', 'risk', 'labels', 'regions'].includes(kn)) fail(where, `unknown :match key ${prStr(k as Value)} (known: :capability :effects :risk :labels :regions)`);
  }
  const caps = names(get(mm, 'capability'), where, ':match :capability');
  const risk = names(get(mm, 'risk'), where, ':match :risk');
  for (const x of risk) if (!RISKS.includes(x as RiskTier)) fail(where, `unknown risk tier :${x} (known: ${RISKS.join(' ')})`);
  let window: Window | null = null;
  const w = get(m, 'window');
  if (w !== null) {
    if (!IMap.isMap(w)) fail(where, ':window must be a map {:days [...] :from "HH:MM" :to "HH:MM" :tz "Area/City"}');
    const wm = w as RMap;
    const tz = (get(wm, 'tz') as string | null) ?? 'UTC';
    let format: Intl.DateTimeFormat;
    try {
      format = new Intl.DateTimeFormat('en-US', { timeZone: tz, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    } catch {
      fail(where, `unknown time zone ${tz}`);
    }
    const days = names(get(wm, 'days'), where, ':window :days');
    for (const d of days) if (!DAYS.includes(d)) fail(where, `unknown day :${d} (use ${DAYS.map((x) => ':' + x).join(' ')})`);
    window = { days: new Set(days.length ? days : DAYS), fromMin: minutes(get(wm, 'from') ?? '00:00', where, ':window :from'), toMin: minutes(get(wm, 'to') ?? '24:00', where, ':window :to'), tz, format };
  }
  const outsideName = name(get(m, 'outside'));
  if (outsideName !== null && !ACTIONS.includes(outsideName as RuleAction)) fail(where, ':outside must be an action');
  let rate: Rule['rate'] = null;
  const rv = get(m, 'rate');
  if (rv !== null) {
    if (!IMap.isMap(rv)) fail(where, ':rate must be a map {:max N :per-seconds S}');
    const max = get(rv as RMap, 'max');
    const per = numeric(get(rv as RMap, 'per-seconds'));
    if (typeof max !== 'number' || per === null || max < 0 || per <= 0) fail(where, ':rate needs :max (integer ≥ 0) and :per-seconds (> 0)');
    rate = { max, perMs: per * 1000 };
  }
  let predicate: Closure | null = null;
  const when = get(m, 'when');
  if (when !== null) {
    if (!(when instanceof Closure)) fail(where, ':when must be a function (fn [call] ...) of the call');
    predicate = when;
  }
  void rt;
  return {
    id,
    action,
    reason: (get(m, 'reason') as string | null) ?? `rule ${id}`,
    capability: caps.length ? caps.map(glob) : null,
    effects: names(get(mm, 'effects'), where, ':match :effects').length ? new Set(names(get(mm, 'effects'), where, ':match :effects')) : null,
    risk: risk.length ? new Set(risk) : null,
    labels: names(get(mm, 'labels'), where, ':match :labels').length ? new Set(names(get(mm, 'labels'), where, ':match :labels')) : null,
    regions: names(get(mm, 'regions'), where, ':match :regions').length ? new Set(names(get(mm, 'regions'), where, ':match :regions')) : null,
    window,
    outside: outsideName as RuleAction | null,
    rate,
    predicate,
    approval: action === 'require-approval' ? approvalOf(m, where) : null,
  };
}

/**
 * Reads a constitution from RTFS source. The file evaluates (purely) to a map; `:when` predicates
 * are functions. Throws `CcosError` (code `constitution`) naming the rule and field at fault.
 */
export function parseConstitution(source: string, file: string): Constitution {
  const rt = createRuntime();
  let value: Value;
  try {
    readAll(source, file);
    const unit = rt.load(source, file);
    value = rt.runToCompletion(unit.main, [], 1_000_000);
  } catch (e) {
    if (e instanceof RtfsError) throw new CcosError('constitution', `${file}: ${e.message}${e.pos ? ` (${e.pos.file}:${e.pos.line}:${e.pos.col})` : ''}`, { hint: 'the constitution is RTFS data: a map with :rules' });
    throw e;
  }
  if (!IMap.isMap(value)) fail(file, 'a constitution evaluates to a map with :rules');
  const m = value as RMap;
  const rulesV = get(m, 'rules');
  if (!List.isList(rulesV)) fail(file, ':rules must be a vector of rule maps');
  const seen = new Set<string>();
  const rules = (rulesV as List<Value>).toArray().map((r, i) => compileRule(r, i, rt, seen));
  const defaultName = name(get(m, 'default')) ?? 'deny';
  if (defaultName !== 'allow' && defaultName !== 'deny') fail(file, ':default must be :allow or :deny');
  const roles = new Map<string, Set<string>>();
  const rolesV = get(m, 'roles');
  if (rolesV !== null) {
    if (!IMap.isMap(rolesV)) fail(file, ':roles must map role keywords to vectors of approver names');
    (rolesV as RMap).forEach((members, role) => {
      const r = name(role as Value) ?? fail(file, ':roles keys must be keywords');
      for (const who of names(members as Value, file, `:roles ${r}`)) {
        if (!roles.has(who)) roles.set(who, new Set());
        roles.get(who)!.add(r);
      }
    });
  }
  const known = new Set([...roles.values()].flatMap((s) => [...s]));
  for (const rule of rules) {
    for (const r of [...(rule.approval?.roles ?? []), ...(rule.approval?.quorum ?? [])]) {
      if (!known.has(r)) fail(`rule ${rule.id}`, `role :${r} has no approver in :roles`);
    }
  }
  const amendmentV = get(m, 'amendment');
  const labelV = get(m, 'on-label-violation');
  let onLabelViolation: Constitution['onLabelViolation'] = { action: 'deny' };
  if (labelV !== null) {
    if (labelV instanceof Keyword && labelV.name === 'deny') onLabelViolation = { action: 'deny' };
    else if (IMap.isMap(labelV)) onLabelViolation = { action: 'approval', approval: approvalOf(labelV as RMap, `${file} :on-label-violation`) };
    else fail(file, ':on-label-violation must be :deny or an approval map {:approvals n :roles [...]}');
  }
  return {
    onLabelViolation,
    id: (get(m, 'id') as string | null) ?? file,
    version: String(get(m, 'version') ?? '1'),
    hash: `sha256:${createHash('sha256').update(source).digest('hex')}`,
    source,
    defaultAction: defaultName,
    rules,
    roles,
    amendment: IMap.isMap(amendmentV) ? approvalOf(amendmentV as RMap, `${file} :amendment`) : { count: 1, roles: [], quorum: [], expiresMs: 72 * 3_600_000 },
    runtime: rt,
  };
}

function inWindow(w: Window, now: Date): boolean {
  const parts = w.format.formatToParts(now);
  const day = parts.find((p) => p.type === 'weekday')!.value.slice(0, 3).toLowerCase();
  const minute = Number(parts.find((p) => p.type === 'hour')!.value) * 60 + Number(parts.find((p) => p.type === 'minute')!.value);
  // A window whose end is before its start spans midnight (e.g. 22:00–06:00).
  const inHours = w.fromMin <= w.toMin ? minute >= w.fromMin && minute < w.toMin : minute >= w.fromMin || minute < w.toMin;
  return w.days.has(day) && inHours;
}

/** The call as RTFS data, for `:when` predicates. */
function callAsValue(f: CallFacts): Value {
  return IMap<Value, Value>()
    .set(kw('capability'), f.capability)
    .set(kw('args'), List(f.args))
    .set(kw('risk'), kw(f.manifest.risk))
    .set(kw('effects'), ISet(f.manifest.effects.map((e) => kw(e.kind))))
    .set(kw('labels'), ISet([...f.labels].map((l) => kw(l))))
    .set(kw('region'), f.manifest.region ?? null)
    .set(kw('step'), List(f.stepPath));
}

function matches(rule: Rule, f: CallFacts): boolean {
  if (rule.capability && !rule.capability.some((re) => re.test(f.capability))) return false;
  if (rule.risk && !rule.risk.has(f.manifest.risk)) return false;
  if (rule.effects && !f.manifest.effects.some((e) => rule.effects!.has(e.kind))) return false;
  if (rule.labels && ![...rule.labels].some((l) => f.labels.has(l))) return false;
  if (rule.regions && !rule.regions.has(f.manifest.region ?? '')) return false;
  return true;
}

/**
 * Decides one call: deny wins (first in rule order); then approval requirements (merged); then
 * allow; else the constitution's default. `rateCount(rule, sinceMs)` reports recent uses of a
 * rated rule; `now` comes from the caller (the decision itself reads no clock).
 */
export function decide(c: Constitution, f: CallFacts, rateCount: (rule: Rule, sinceMs: number) => number): Verdict {
  let approval: ApprovalRequirement | null = null;
  let approvalRule = '';
  let allowRule: Rule | null = null;
  let requireIdempotency = false;
  let requireContracts = false;
  let requireCompensation = false;
  const requirementRules: { idempotency?: string; contracts?: string; compensation?: string } = {};
  const rated: Rule[] = [];
  let callValue: Value | undefined;
  for (const rule of c.rules) {
    if (!matches(rule, f)) continue;
    let action = rule.action;
    let why = rule.reason;
    if (rule.window) {
      const inside = inWindow(rule.window, f.now);
      if (!inside) {
        if (!rule.outside) continue;
        action = rule.outside;
        why = `${rule.reason} (outside ${[...rule.window.days].join(',')} ${fmt(rule.window.fromMin)}–${fmt(rule.window.toMin)} ${rule.window.tz})`;
      }
    }
    if (rule.predicate) {
      callValue ??= callAsValue(f);
      const r = evaluateContract(c.runtime, rule.predicate, [callValue]);
      if ('error' in r) return { decision: 'deny', rule: rule.id, rationale: `the rule's :when predicate failed (${r.error.message}); failing closed`, rated };
      if (!('value' in r) || !truthy(r.value)) continue;
    }
    if (rule.rate && action !== 'deny') {
      const used = rateCount(rule, f.now.getTime() - rule.rate.perMs);
      if (used >= rule.rate.max) return { decision: 'deny', rule: rule.id, rationale: `rate limit: ${rule.rate.max} calls per ${rule.rate.perMs / 1000} s reached`, rated };
      rated.push(rule);
    }
    switch (action) {
      case 'deny':
        return { decision: 'deny', rule: rule.id, rationale: why, rated };
      case 'require-approval':
        approval = mergeApproval(approval, rule.approval!);
        approvalRule = approvalRule ? `${approvalRule}+${rule.id}` : rule.id;
        break;
      case 'require-idempotency':
        requireIdempotency = true;
        requirementRules.idempotency ??= rule.id;
        break;
      case 'require-contracts':
        requireContracts = true;
        requirementRules.contracts ??= rule.id;
        break;
      case 'require-compensation':
        requireCompensation = true;
        requirementRules.compensation ??= rule.id;
        break;
      case 'allow':
        allowRule ??= rule;
        break;
    }
  }
  const extra = { requireIdempotency, requireContracts, requireCompensation, requirementRules, rated };
  if (approval) return { decision: 'approval', rule: approvalRule, rationale: `approval required by ${approvalRule}`, approval, ...extra };
  if (allowRule) return { decision: 'allow', rule: allowRule.id, rationale: allowRule.reason, ...extra };
  if (c.defaultAction === 'allow') return { decision: 'allow', rule: 'constitution.default', rationale: 'no rule matched; the constitution allows by default', ...extra };
  return { decision: 'deny', rule: 'constitution.default', rationale: 'no rule allows this capability (deny by default)', ...extra };
}

function mergeApproval(a: ApprovalRequirement | null, b: ApprovalRequirement): ApprovalRequirement {
  if (!a) return { ...b, roles: [...b.roles], quorum: [...b.quorum] };
  return { count: Math.max(a.count, b.count), roles: [...new Set([...a.roles, ...b.roles])], quorum: [...new Set([...a.quorum, ...b.quorum])], expiresMs: Math.min(a.expiresMs, b.expiresMs) };
}

function fmt(min: number): string {
  return `${String(Math.floor(min / 60)).padStart(2, '0')}:${String(min % 60).padStart(2, '0')}`;
}
