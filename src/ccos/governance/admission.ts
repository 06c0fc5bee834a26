/**
 * Admission: a plan is analysed before anything runs — which capabilities it may call (with the
 * place of each call), their declared effects, risk and cost against the manifests, what the risk
 * tier asks of the plan (compensations, contracts, idempotency keys), and what the constitution in
 * force will say (denials and approvals, certain or conditional) — and is refused with structured
 * reasons that name the rule and the place in the plan.
 *
 * Owns: the static walk of a plan's forms (enclosing steps, sagas, contracts, idempotency keys,
 * plan/step :resources and :policy) and the `AdmissionReport` (`ccos check`, and `ccos run` before
 * it starts).
 * Must never: run the plan, call a capability, or write anything (it reads the registry and the
 * constitution only).
 *
 * The walk is lexical. Calls inside top-level `defn`s are analysed where the function is named
 * (called or passed on) in the plan; a call the walk cannot place (produced by a user macro, or in
 * a function the plan never names) is still checked against the manifest and the constitution,
 * but rules that depend on where it sits give warnings, not errors.
 */
import type { Json } from '../../common/canonical.js';
import { checkProgram } from '../../rtfs/check.js';
import { IMap, Keyword, List, MetaForm, RList, Sym, kw, posOf, readAll, type Form, type RMap, type Value } from '../../rtfs/index.js';
import type { CapabilityManifest } from '../capabilities/types.js';
import type { Ccos } from '../index.js';
import type { ApprovalRequirement, Constitution } from './constitution.js';
import { decide, type Verdict } from './constitution.js';

/** One finding: an error refuses the plan, a warning does not. */
export interface AdmissionIssue {
  code: string;
  message: string;
  /** The rule that asks (e.g. `admission.compensation`, a constitution rule id, `rtfs.compile`). */
  rule: string;
  file: string;
  line: number;
  col: number;
  capability?: string;
  hint?: string;
}

/** A capability the plan may call (one entry per id; `count` call sites). */
export interface AdmittedCapability {
  id: string;
  known: boolean;
  /** Effect kinds declared by the manifest. */
  effects: string[];
  /** The declared effects in full (domains, access, ...). */
  effectDetails: Json[];
  risk: string | null;
  idempotent: boolean | null;
  costUsd: number;
  count: number;
  /** The first call site. */
  line: number;
  col: number;
  sites: { line: number; col: number; steps: string[] }[];
}

export interface AdmissionApproval {
  /** null: every call of the scope (a plan or step :policy). */
  capability: string | null;
  rule: string;
  needs: string;
  /** True when a `:when` predicate decides whether it applies (it depends on the arguments). */
  conditional: boolean;
  scope?: string;
}

export interface AdmissionDenial {
  capability: string;
  rule: string;
  rationale: string;
  conditional: boolean;
  line: number;
  col: number;
}

export interface AdmissionReport {
  ok: boolean;
  file: string;
  errors: AdmissionIssue[];
  warnings: AdmissionIssue[];
  capabilities: AdmittedCapability[];
  /** Some `call` computes its capability id: the list above may be incomplete. */
  dynamicCapabilities: boolean;
  approvals: AdmissionApproval[];
  denials: AdmissionDenial[];
  /** Sum of the cost models over the call sites (each counted once; loops may cost more). */
  estimatedCostUsd: number;
  /** The plan's :resources (the outermost plan scope). */
  budget: { max_cost_usd?: number; max_calls?: number };
  constitution: { id: string; version: string; hash: string } | null;
}

// -------------------------------------------------------------------------------------------------
// The walk

/** A scope around a call: a plan or a step, with its metadata. */
interface Frame {
  kind: 'plan' | 'step';
  name: string;
  meta: RMap | null;
  /** Call sites found inside (for :policy and :resources). */
  sites: Site[];
}

interface Ctx {
  frames: Frame[];
  /** Inside the primary form of a step.with-compensation. */
  inPrimary: boolean;
  /** Inside the compensation form of a step.with-compensation (the undo itself). */
  inCompensation: boolean;
  /** Top-level functions being walked (their names, innermost last). */
  via: string[];
}

interface Site {
  id: string;
  line: number;
  col: number;
  file: string;
  frames: Frame[];
  inPrimary: boolean;
  inCompensation: boolean;
  callMeta: RMap | null;
  via: string[];
  /** Found by the compiler but not placed by the walk. */
  unplaced: boolean;
}

const head = (f: Form): string | null => (f instanceof RList && f.count > 0 && f.first() instanceof Sym ? (f.first() as Sym).name : null);
const strip = (f: Form): Form => (f instanceof MetaForm ? strip(f.form as Form) : f);
const nameOf = (f: Form): string => (typeof f === 'string' ? f : f instanceof Keyword || f instanceof Sym ? f.name : '<computed>');
const merge = (a: RMap | null, b: RMap): RMap => (a ? a.merge(b) : b);

class Walker {
  readonly sites: Site[] = [];
  readonly frames: Frame[] = [];
  private readonly fns = new Map<string, Form[]>();

  constructor(private readonly file: string) {}

  /** Top-level `defn`s and `(def f (fn ...))`: walked where the plan names them. */
  collectFns(forms: Form[]): void {
    for (const f of forms) {
      const h = head(f);
      if (h === 'do') this.collectFns((f as RList).rest().toArray() as Form[]);
      if (h !== 'defn' && h !== 'defn-' && h !== 'def') continue;
      const args = (f as RList).rest().toArray() as Form[];
      const n = strip(args[0] ?? null);
      if (!(n instanceof Sym)) continue;
      if (h === 'def') {
        const v = strip(args[args.length - 1] ?? null);
        if (args.length >= 2 && (head(v) === 'fn' || head(v) === 'fn*')) this.fns.set(n.name, (v as RList).rest().toArray() as Form[]);
      } else this.fns.set(n.name, args.slice(1));
    }
  }

  isFnDefinition(f: Form): boolean {
    const h = head(f);
    if (h !== 'defn' && h !== 'defn-' && h !== 'def') return false;
    const n = strip(((f as RList).rest().first() ?? null) as Form);
    return n instanceof Sym && this.fns.has(n.name) && (h !== 'def' || (f as RList).count >= 3);
  }

  walkTop(forms: Form[]): void {
    const ctx: Ctx = { frames: [], inPrimary: false, inCompensation: false, via: [] };
    for (const f of forms) {
      if (head(f) === 'do') this.walkTop((f as RList).rest().toArray() as Form[]);
      else if (!this.isFnDefinition(f)) this.walk(f, ctx, null);
    }
  }

  private site(id: string, form: Form, ctx: Ctx, callMeta: RMap | null): void {
    const pos = posOf(form);
    const s: Site = { id, line: pos?.line ?? 1, col: pos?.col ?? 1, file: pos?.file ?? this.file, frames: [...ctx.frames], inPrimary: ctx.inPrimary, inCompensation: ctx.inCompensation, callMeta, via: [...ctx.via], unplaced: false };
    this.sites.push(s);
    for (const fr of ctx.frames) fr.sites.push(s);
  }

  private walkAll(forms: Iterable<Form>, ctx: Ctx): void {
    for (const f of forms) this.walk(f, ctx, null);
  }

  /** `meta`: metadata written on this form with `^{...}`. */
  walk(f: Form, ctx: Ctx, meta: RMap | null): void {
    if (f instanceof MetaForm) return this.walk(f.form as Form, ctx, merge(meta, f.meta));
    if (f instanceof Sym) {
      this.viaFn(f.name, ctx);
      return;
    }
    if (List.isList(f)) return this.walkAll((f as List<Form>).toArray(), ctx);
    if (IMap.isMap(f)) {
      (f as RMap).forEach((v, k) => (this.walk(k as Form, ctx, null), this.walk(v as Form, ctx, null)));
      return;
    }
    if (!(f instanceof RList) || f.count === 0) return;
    const h = head(f);
    const args = f.rest().toArray() as Form[];
    switch (h) {
      case 'quote':
      case 'comment':
        return;
      case 'call':
      case 'batch-call': {
        const cap = strip(args[0] ?? null);
        if (cap instanceof Keyword || typeof cap === 'string') this.site(cap instanceof Keyword ? cap.name : cap, f, ctx, h === 'call' ? meta : null);
        return this.walkAll(args.slice(1), ctx);
      }
      case 'step':
        return this.walkStep(args, ctx, meta);
      case 'with-timeout':
        return this.enter(ctx, { kind: 'step', name: 'with-timeout', meta: null, sites: [] }, () => this.walkAll(args.slice(1), ctx));
      case 'step-if':
      case 'step-loop':
        return this.enter(ctx, { kind: 'step', name: h, meta: null, sites: [] }, () => this.walkAll(args, ctx));
      case 'step.with-compensation': {
        const [primary, compensation] = args;
        const saved = { p: ctx.inPrimary, c: ctx.inCompensation };
        ctx.inPrimary = true;
        if (primary !== undefined) this.walk(primary, ctx, null);
        ctx.inPrimary = saved.p;
        ctx.inCompensation = true;
        if (compensation !== undefined) this.walk(compensation, ctx, null);
        ctx.inCompensation = saved.c;
        return;
      }
      case 'plan':
        return this.walkPlan(args, ctx);
      default:
        if (h !== null && this.fns.has(h)) {
          this.walkAll(args, ctx);
          this.viaFn(h, ctx);
          return;
        }
        return this.walkAll(f.toArray() as Form[], ctx);
    }
  }

  /** A top-level function named here: its calls happen here (once per function and context). */
  private viaFn(name: string, ctx: Ctx): void {
    const body = this.fns.get(name);
    if (!body || ctx.via.includes(name)) return;
    ctx.via.push(name);
    try {
      this.walkAll(body, ctx);
    } finally {
      ctx.via.pop();
    }
  }

  private enter(ctx: Ctx, frame: Frame, body: () => void): void {
    this.frames.push(frame);
    ctx.frames.push(frame);
    try {
      body();
    } finally {
      ctx.frames.pop();
    }
  }

  private walkStep(args: Form[], ctx: Ctx, outer: RMap | null): void {
    let meta = outer;
    let nameForm = args[0] ?? null;
    if (nameForm instanceof MetaForm) {
      meta = merge(meta, nameForm.meta);
      nameForm = nameForm.form as Form;
    }
    let rest = args.slice(1);
    if (rest.length > 1 && IMap.isMap(rest[0])) rest = rest.slice(1); // step options
    if (rest.length > 0 && rest[0] instanceof MetaForm) {
      const m = rest[0] as MetaForm;
      meta = merge(meta, m.meta);
      rest = [m.form as Form, ...rest.slice(1)];
    }
    this.enter(ctx, { kind: 'step', name: nameOf(nameForm), meta, sites: [] }, () => this.walkAll(rest, ctx));
  }

  private walkPlan(args: Form[], ctx: Ctx): void {
    let meta: RMap = IMap<Value, Value>();
    const props: Form[] = [];
    for (const a of args) {
      if (a instanceof MetaForm) {
        meta = meta.merge(a.meta);
        props.push(a.form as Form);
      } else props.push(a);
    }
    let i = typeof props[0] === 'string' || props[0] instanceof Sym ? 1 : 0;
    const name = i === 1 ? nameOf(props[0]) : 'plan';
    let program: Form | undefined;
    const others: Form[] = [];
    for (; i + 1 < props.length; i += 2) {
      const k = props[i];
      if (k instanceof Keyword && (k.name === 'program' || k.name === 'body')) program = props[i + 1];
      else {
        if (k instanceof Keyword) meta = meta.set(k, props[i + 1] as Value);
        others.push(props[i + 1]);
      }
    }
    this.walkAll(others, ctx);
    if (program !== undefined) this.enter(ctx, { kind: 'plan', name, meta, sites: [] }, () => this.walk(program!, ctx, null));
  }
}

// -------------------------------------------------------------------------------------------------
// Reading metadata

const get = (m: RMap | null, k: string): Value => (m ? (m.get(kw(k), null) as Value) : null);
const num = (v: Value): number | undefined => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : v !== null && typeof v === 'object' && 'v' in (v as object) ? Number((v as { v: number }).v) : undefined);

function hasContracts(s: Site): boolean {
  return s.frames.some((f) => f.meta !== null && (f.meta.has(kw('pre')) || f.meta.has(kw('post'))));
}

function keyed(s: Site): boolean {
  const hasKey = (m: RMap | null): boolean => {
    const spec = get(m, 'idempotency');
    return IMap.isMap(spec) && (spec as RMap).get(kw('key'), null) !== null;
  };
  return hasKey(s.callMeta) || s.frames.some((f) => hasKey(f.meta));
}

/** Requirement text, as the gate words it. */
export function describeNeeds(r: ApprovalRequirement): string {
  const parts: string[] = [];
  if (r.count > 0) parts.push(`${r.count} approval${r.count === 1 ? '' : 's'}${r.roles.length ? ` from ${r.roles.map((x) => ':' + x).join(' or ')}` : ''}`);
  if (r.quorum.length) parts.push(`one from each of ${r.quorum.map((x) => ':' + x).join(' ')}`);
  return parts.join(' and ') || 'an approval';
}

function policyRequirement(meta: RMap | null): ApprovalRequirement | null {
  const policy = get(meta, 'policy');
  if (!IMap.isMap(policy)) return null;
  const count = num(get(policy as RMap, 'requires_approvals')) ?? 0;
  const q = get(policy as RMap, 'quorum');
  const quorum = List.isList(q) ? (q as List<Value>).toArray().map((x) => (x instanceof Keyword ? x.name : String(x))) : [];
  if (count <= 0 && quorum.length === 0) return null;
  return { count, roles: [], quorum, expiresMs: 72 * 3_600_000 };
}

// -------------------------------------------------------------------------------------------------
// Deciding

/** The constitution's verdict with every `:when` predicate taken as true, or as false. */
function verdicts(c: Constitution, m: CapabilityManifest, steps: string[], now: Date): { ifTrue: Verdict; ifFalse: Verdict; conditional: boolean } {
  const facts = { capability: m.id, manifest: m, args: [], labels: new Set<string>(), stepPath: steps, now };
  const withPredicates = c.rules.some((r) => r.predicate !== null);
  const never = (): number => 0; // rates are not predicted: they depend on when the calls happen
  const ifFalse = decide({ ...c, rules: c.rules.filter((r) => r.predicate === null) }, facts, never);
  if (!withPredicates) return { ifTrue: ifFalse, ifFalse, conditional: false };
  const ifTrue = decide({ ...c, rules: c.rules.map((r) => (r.predicate === null ? r : { ...r, predicate: null })) }, facts, never);
  return { ifTrue, ifFalse, conditional: true };
}

/**
 * Analyses a plan without running it: its capabilities, effects, cost, what its risk tiers ask
 * for, and what the constitution in force will decide. `ok` is false when there are errors.
 */
export function admit(ccos: Ccos, source: string, file: string, opts: { now?: Date } = {}): AdmissionReport {
  const now = opts.now ?? new Date();
  const errors: AdmissionIssue[] = [];
  const warnings: AdmissionIssue[] = [];
  const constitution = ccos.governance.constitution;
  const report: AdmissionReport = {
    ok: true,
    file,
    errors,
    warnings,
    capabilities: [],
    dynamicCapabilities: false,
    approvals: [],
    denials: [],
    estimatedCostUsd: 0,
    budget: {},
    constitution: constitution ? { id: constitution.id, version: constitution.version, hash: constitution.hash } : null,
  };

  // Compile diagnostics (the run gets `input` and `context` from its preamble).
  const checked = checkProgram(source, file);
  for (const d of checked.diagnostics) {
    if (d.code === 'unbound-symbol' && /`(input|context)`/.test(d.message)) continue;
    const issue: AdmissionIssue = { code: d.code, message: d.message, rule: 'rtfs.compile', file: d.file, line: d.line, col: d.col };
    if (d.hint) issue.hint = d.hint;
    (d.severity === 'error' ? errors : warnings).push(issue);
  }
  report.dynamicCapabilities = checked.dynamicCapabilities;
  if (checked.dynamicCapabilities) {
    warnings.push({ code: 'dynamic-capability', message: 'a call computes its capability id: admission cannot tell which capability it calls', rule: 'admission.static', file, line: 1, col: 1, hint: 'write the id as a keyword, (call :my.cap ...), so it can be checked before the run' });
  }

  let forms: Form[];
  try {
    forms = readAll(source, file);
  } catch {
    report.ok = false; // a parse error: checkProgram reported it
    return report;
  }
  const w = new Walker(file);
  w.collectFns(forms);
  w.walkTop(forms);
  // Calls the compiler sees that the walk did not place (user macros, unnamed functions).
  const placed = new Map<string, number>();
  for (const s of w.sites) placed.set(s.id, (placed.get(s.id) ?? 0) + 1);
  const compiled = new Map<string, typeof checked.capabilities>();
  for (const c of checked.capabilities) compiled.set(c.id, [...(compiled.get(c.id) ?? []), c]);
  for (const [id, uses] of compiled) {
    const missing = uses.length - (placed.get(id) ?? 0);
    const positions = new Set(w.sites.filter((s) => s.id === id).map((s) => `${s.line}:${s.col}`));
    for (const u of uses.filter((x) => !positions.has(`${x.line}:${x.col}`)).slice(0, Math.max(0, missing))) {
      w.sites.push({ id, line: u.line, col: u.col, file, frames: [], inPrimary: false, inCompensation: false, callMeta: null, via: [], unplaced: true });
    }
  }

  const seen = new Set<string>();
  const add = (list: AdmissionIssue[], issue: AdmissionIssue): void => {
    const key = `${issue.code}|${issue.rule}|${issue.file}:${issue.line}:${issue.col}`;
    if (seen.has(key)) return;
    seen.add(key);
    list.push(issue);
  };
  const at = (s: Site) => ({ file: s.file, line: s.line, col: s.col });
  const where = (s: Site): string => (s.via.length ? ` (through ${s.via.join(' → ')})` : '');
  const errorOrWarn = (s: Site): AdmissionIssue[] => (s.unplaced ? warnings : errors);
  const unplacedNote = (s: Site): string => (s.unplaced ? '; admission could not see where this call runs (a macro or a function the plan does not name), so this is a warning' : '');

  const caps = new Map<string, AdmittedCapability>();
  const countedSites = new Set<string>();
  const approvalKeys = new Set<string>();
  const denialKeys = new Set<string>();
  const pushApproval = (capability: string, v: Verdict, conditional: boolean): void => {
    const key = `${capability}|${v.rule}|${conditional}`;
    if (approvalKeys.has(key)) return;
    approvalKeys.add(key);
    report.approvals.push({ capability, rule: v.rule, needs: describeNeeds(v.approval!), conditional });
  };
  for (const s of w.sites) {
    const m = ccos.registry.manifest(s.id);
    const siteKey = `${s.id}@${s.line}:${s.col}`;
    const firstVisit = !countedSites.has(siteKey);
    countedSites.add(siteKey);
    let entry = caps.get(s.id);
    if (!entry) {
      entry = { id: s.id, known: !!m, effects: m ? m.effects.map((e) => e.kind) : [], effectDetails: m ? (m.effects as unknown as Json[]) : [], risk: m?.risk ?? null, idempotent: m ? m.idempotent : null, costUsd: m?.cost?.usdPerCall ?? 0, count: 0, line: s.line, col: s.col, sites: [] };
      caps.set(s.id, entry);
    }
    if (firstVisit) {
      entry.count++;
      entry.sites.push({ line: s.line, col: s.col, steps: s.frames.filter((f) => f.kind === 'step').map((f) => f.name) });
      report.estimatedCostUsd += m?.cost?.usdPerCall ?? 0;
    }
    if (!m) {
      add(errors, { code: 'unknown-capability', message: `unknown capability ${s.id}`, rule: 'registry.unknown', ...at(s), capability: s.id, hint: 'register it (ccos caps add FILE.rtfs) or fix the id; `ccos caps list` shows the known ones' });
      continue;
    }
    const steps = s.frames.filter((f) => f.kind === 'step').map((f) => f.name);
    // Risk tiers.
    if ((m.risk === 'high' || m.risk === 'critical') && !s.inPrimary && !s.inCompensation && !m.idempotent) {
      add(errorOrWarn(s), { code: 'compensation-required', message: `${s.id} is a :${m.risk} risk capability that is not idempotent; it must be called inside the primary of a step.with-compensation${where(s)}${unplacedNote(s)}`, rule: 'admission.compensation', ...at(s), capability: s.id, hint: '(step.with-compensation (step "do" (call ...)) (step "undo" (call ...)))' });
    }
    if (m.risk === 'critical' && !hasContracts(s)) {
      add(errorOrWarn(s), { code: 'contracts-required', message: `${s.id} is a :critical risk capability; it must be called inside a step with :pre or :post contracts${where(s)}${unplacedNote(s)}`, rule: 'admission.contracts', ...at(s), capability: s.id, hint: '(step ^{:pre (fn [ctx] ...) :post (fn [before after] ...)} "name" (call ...))' });
    }
    const net = m.effects.find((e) => e.kind === 'network');
    if (net && !m.idempotent && !keyed(s)) {
      add(warnings, { code: 'idempotency-recommended', message: `${s.id} has a network effect and is not idempotent, and this call has no idempotency key: after a crash its outcome is unknown and it will not be retried automatically${where(s)}`, rule: 'admission.idempotency', ...at(s), capability: s.id, hint: '^{:idempotency {:key "..."}} on the call or its step' });
    }
    // Data locality (the gate denies these calls).
    for (const f of s.frames) {
      const res = get(f.meta, 'resources');
      const loc = IMap.isMap(res) ? (res as RMap).get(kw('data_locality'), null) : null;
      if (loc instanceof Keyword && loc.name === 'eu_only' && !(m.region ?? '').toLowerCase().startsWith('eu')) {
        add(errorOrWarn(s), { code: 'locality-denied', message: `${s.id} runs in region ${m.region ?? 'unknown'}; the ${f.kind === 'plan' ? 'plan' : `step ${f.name}`} requires :data_locality :eu_only`, rule: 'locality.eu_only', ...at(s), capability: s.id });
      }
    }
    // The constitution.
    if (!constitution) continue;
    const { ifTrue, ifFalse } = verdicts(constitution, m, steps, now);
    const denied = [ifFalse, ifTrue].filter((v) => v.decision === 'deny');
    if (denied.length) {
      const v = denied[0];
      const certain = denied.length === 2;
      const key = `${s.id}|${v.rule}|${s.line}:${s.col}`;
      if (!denialKeys.has(key)) {
        denialKeys.add(key);
        report.denials.push({ capability: s.id, rule: v.rule, rationale: v.rationale, conditional: !certain, line: s.line, col: s.col });
      }
      if (certain) add(errors, { code: 'policy-denied', message: `the constitution denies ${s.id}: ${v.rationale}`, rule: v.rule, ...at(s), capability: s.id });
      else add(warnings, { code: 'policy-may-deny', message: `the constitution may deny ${s.id}, depending on its arguments: ${v.rationale}`, rule: v.rule, ...at(s), capability: s.id });
    }
    if (ifFalse.decision === 'approval') pushApproval(s.id, ifFalse, false);
    if (ifTrue.decision === 'approval' && (ifFalse.decision !== 'approval' || ifTrue.rule !== ifFalse.rule)) pushApproval(s.id, ifTrue, true);
    for (const [flag, code, what, ok] of [
      ['requireContracts', 'contracts-required', 'must be called inside a step with :pre or :post contracts', hasContracts(s)],
      ['requireIdempotency', 'idempotency-required', 'needs an idempotency key here (^{:idempotency {:key ..}})', m.idempotent || keyed(s)],
    ] as const) {
      if (ok) continue;
      const byFalse = ifFalse[flag] === true;
      const byTrue = ifTrue[flag] === true;
      if (!byFalse && !byTrue) continue;
      const rule = (byFalse ? ifFalse : ifTrue).rule;
      if (byFalse && byTrue) add(errorOrWarn(s), { code, message: `the constitution says ${s.id} ${what}${where(s)}${unplacedNote(s)}`, rule, ...at(s), capability: s.id });
      else add(warnings, { code, message: `the constitution may say ${s.id} ${what} (a :when predicate decides)${where(s)}`, rule, ...at(s), capability: s.id });
    }
  }

  // Approvals asked for by plan and step :policy metadata (once per scope that makes calls).
  for (const f of w.frames) {
    if (f.sites.length === 0) continue;
    const r = policyRequirement(f.meta);
    if (!r) continue;
    report.approvals.push({ capability: null, rule: `${f.kind}.policy`, needs: describeNeeds(r), conditional: false, scope: f.kind === 'plan' ? `plan ${f.name}` : `step ${f.name}` });
  }

  // Budgets: the estimate (each call site once) against every scope's :resources.
  const outer = w.frames.find((f) => f.kind === 'plan' && get(f.meta, 'resources') !== null);
  if (outer) {
    const res = get(outer.meta, 'resources');
    if (IMap.isMap(res)) {
      const mc = num(get(res as RMap, 'max_cost_usd'));
      const calls = num(get(res as RMap, 'max_calls'));
      if (mc !== undefined) report.budget.max_cost_usd = mc;
      if (calls !== undefined) report.budget.max_calls = calls;
    }
  }
  for (const f of w.frames) {
    const res = get(f.meta, 'resources');
    if (!IMap.isMap(res) || f.sites.length === 0) continue;
    const distinct = new Map<string, Site>();
    for (const s of f.sites) distinct.set(`${s.id}@${s.line}:${s.col}`, s);
    const cost = [...distinct.values()].reduce((a, s) => a + (ccos.registry.manifest(s.id)?.cost?.usdPerCall ?? 0), 0);
    const mc = num(get(res as RMap, 'max_cost_usd'));
    const maxCalls = num(get(res as RMap, 'max_calls'));
    const first = [...distinct.values()][0];
    const label = f.kind === 'plan' ? 'the plan' : `step ${f.name}`;
    if (mc !== undefined && cost > mc + 1e-9) add(warnings, { code: 'budget-estimate', message: `${label} has a budget of $${mc}, its calls are estimated at $${round(cost)} (each call once): the gate will stop it when the budget is spent`, rule: 'budget.resources', ...at(first) });
    if (maxCalls !== undefined && distinct.size > maxCalls) add(warnings, { code: 'budget-estimate', message: `${label} may make ${maxCalls} calls; it has ${distinct.size} call sites`, rule: 'budget.resources', ...at(first) });
  }

  report.capabilities = [...caps.values()];
  report.estimatedCostUsd = round(report.estimatedCostUsd);
  const byPos = (a: AdmissionIssue, b: AdmissionIssue): number => (a.file === b.file ? a.line - b.line || a.col - b.col : a.file.localeCompare(b.file));
  errors.sort(byPos);
  warnings.sort(byPos);
  report.ok = errors.length === 0;
  return report;
}

const round = (x: number): number => Math.round(x * 1e6) / 1e6;

/** One line per call site's steps, for a human: "refund at 3:5 in step pay". */
export function describeSite(c: AdmittedCapability): string {
  return c.sites.map((s) => `${s.line}:${s.col}${s.steps.length ? ` in ${s.steps.join(' / ')}` : ''}`).join(', ');
}
