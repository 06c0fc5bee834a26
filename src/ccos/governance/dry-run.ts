/**
 * Dry-run: a plan runs with simulated providers and no effects, in a scratch node that has the
 * real node's capability manifests and constitution (so every decision is the real one), and the
 * report predicts what a real run would do — cost and latency against the budget, the approvals it
 * would request, the policy denials it would meet, the calls it would make and its value (the
 * seeds' trading "simulate before execute").
 *
 * Owns: simulators (a capability's declared `:simulate` function, else a value generated from its
 * output schema), the scratch node (a temporary data dir, removed afterwards), and `DryRunReport`.
 * Must never: write to the real data dir, or run a real provider that has an effect outside the
 * scratch node (only effect-free builtins, state builtins on the scratch store and the clock run
 * for real).
 *
 * Latency: `CapabilityManifest` declares no latency yet; it is read from `latencyMs` on a manifest
 * (TypeScript capabilities) or `:latency-ms` in an RTFS capability's manifest map, else 0.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Json } from '../../common/canonical.js';
import { CAPABILITY_PREFIX } from '../../rtfs/macros.js';
import { parseType, validate, type TypeExpr } from '../../rtfs/types.js';
import { Closure, IMap, ISet, List, RFloat, RList, RtfsError, Sym, createRuntime, evaluateContract, kw, prStr, readOne, type RMap, type Value } from '../../rtfs/index.js';
import type { Action } from '../chain.js';
import type { CapabilityManifest, Provider } from '../capabilities/types.js';
import { openCcos, type Ccos } from '../index.js';
import type { RunResult, RunStatus } from '../orchestrator.js';
import { plainJsonToValue, valueToPlainJson } from '../values-json.js';
import { admit, describeNeeds, type AdmissionReport } from './admission.js';
import type { ApprovalRequirement } from './constitution.js';
import { redact } from './index.js';

export interface DryRunOptions {
  inputs?: Record<string, Value>;
  fuel?: number;
  allow?: string[];
  deny?: string[];
  /** An admission report already made for this plan (else one is made). */
  admission?: AdmissionReport;
}

/** How a call was answered in the simulation. */
export type SimulatedBy = 'simulator' | 'schema' | 'sandbox' | 'answer';

export interface DryRunCall {
  capability: string;
  step: string[];
  /** Arguments as RTFS text, secrets redacted. */
  args: string;
  ok: boolean;
  result: string | null;
  error: string | null;
  costUsd: number;
  latencyMs: number;
  simulatedBy: SimulatedBy;
}

export interface DryRunReport {
  /** The simulated run completed. */
  ok: boolean;
  file: string;
  status: RunStatus;
  value: string | null;
  valueJson: Json;
  error: RunResult['error'] | null;
  /** What the simulated run still waits for (when it paused on something other than an approval). */
  waiting: Json | null;
  /** Sum of the cost models of the calls made. */
  predictedCostUsd: number;
  /** Sum of the declared latencies of the calls made (calls run one after the other). */
  predictedLatencyMs: number;
  budget: { max_cost_usd?: number; max_calls?: number; withinBudget: boolean };
  calls: DryRunCall[];
  approvals: { approval: string; kind: string; capability: string | null; rule: string; needs: string; step: string[] }[];
  denials: { capability: string; rule: string; rationale: string; step: string[] }[];
  admission: AdmissionReport;
  notes: string[];
}

// -------------------------------------------------------------------------------------------------
// Values from schemas

const NUMBER_CANDIDATES: Value[] = [0, 1, 10, 100, -1, 1000000];
const STRING_CANDIDATES: Value[] = ['sim', 'simulated', 'https://sim.example', 'sim@example.com', ''];

function candidates(t: TypeExpr, depth = 0): Value[] {
  if (depth > 8) return [null];
  switch (t.kind) {
    case 'prim':
      switch (t.name) {
        case 'int':
        case 'integer':
        case 'number':
          return NUMBER_CANDIDATES;
        case 'float':
          return [new RFloat(0), new RFloat(1), new RFloat(100)];
        case 'string':
          return STRING_CANDIDATES;
        case 'bool':
        case 'boolean':
          return [false, true];
        case 'keyword':
          return [kw('sim')];
        case 'symbol':
          return [new Sym('sim')];
        case 'map':
          return [IMap<Value, Value>()];
        case 'vector':
          return [List<Value>()];
        case 'list':
          return [RList.EMPTY as unknown as Value];
        case 'set':
          return [ISet<Value>()];
        default:
          return [null];
      }
    case 'named':
      return candidates(t.type, depth + 1);
    case 'optional':
      return [null];
    case 'vector':
      return [List<Value>(), List<Value>([first(t.elem, depth + 1)])];
    case 'list':
      return [RList.EMPTY as unknown as Value];
    case 'set':
      return [ISet<Value>()];
    case 'tuple':
      return [List<Value>(t.items.map((i) => first(i, depth + 1)))];
    case 'map': {
      let m: RMap = IMap<Value, Value>();
      for (const f of t.fields) if (!f.optional) m = m.set(f.key as Value, first(f.type, depth + 1));
      return [m];
    }
    case 'map-of':
      return [IMap<Value, Value>()];
    case 'union':
      return t.members.flatMap((x) => candidates(x, depth + 1));
    case 'and':
      return candidates(t.base, depth + 1);
    case 'enum':
      return t.values.length ? [t.values[0]] : [null];
    case 'val':
      return [t.value];
    case 'refine':
      return [...NUMBER_CANDIDATES, ...STRING_CANDIDATES, List<Value>(), IMap<Value, Value>()];
    default:
      return [null];
  }
}

/** The first candidate that the type accepts (the first candidate when none does). */
function first(t: TypeExpr, depth = 0): Value {
  const cs = candidates(t, depth);
  return cs.find((c) => validate(t, c).length === 0) ?? cs[0] ?? null;
}

function fromJsonSchema(s: Record<string, unknown>, depth = 0): unknown {
  if (depth > 8) return null;
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
  switch (s.type) {
    case 'object': {
      const props = (s.properties as Record<string, Record<string, unknown>> | undefined) ?? {};
      const o: Record<string, unknown> = {};
      for (const k of (s.required as string[] | undefined) ?? []) o[k] = props[k] ? fromJsonSchema(props[k], depth + 1) : null;
      return o;
    }
    case 'array':
      return [];
    case 'string':
      return 'sim';
    case 'integer':
    case 'number':
      return 0;
    case 'boolean':
      return false;
    default:
      return null;
  }
}

/** A value that matches a capability's declared output (nil when it declares none). */
export function valueFromOutputSchema(m: CapabilityManifest): Value {
  if (!m.output) return null;
  if ('rtfs' in m.output) return first(parseType(readOne(m.output.rtfs, '<schema>') as Value));
  return plainJsonToValue(fromJsonSchema(m.output.jsonSchema));
}

// -------------------------------------------------------------------------------------------------
// Simulators

interface Simulation {
  by: SimulatedBy;
  latencyMs: number;
  provider?: Provider;
}

/** Builtins that may run for real in the scratch node: no effect, or only its state, or the clock. */
const SANDBOXED_EFFECTS = new Set(['state', 'clock']);

/** The `:simulate` function and `:latency-ms` of an RTFS capability's manifest map. */
function rtfsExtras(m: CapabilityManifest): { simulate: Closure | null; latencyMs: number | null; runtime: ReturnType<typeof createRuntime> | null } {
  const spec = m.provider;
  if (spec.kind !== 'rtfs' || typeof spec.source !== 'string') return { simulate: null, latencyMs: null, runtime: null };
  try {
    const rt = createRuntime();
    const unit = rt.load(spec.source, typeof spec.file === 'string' ? spec.file : '<capability>');
    rt.runToCompletion(unit.main, [], 10_000_000);
    const desc = rt.findCell(`${CAPABILITY_PREFIX}${m.id.replace(/\//g, '%2F')}`)?.value as RMap | undefined;
    const manifest = desc && IMap.isMap(desc) ? (desc.get(kw('manifest'), null) as Value) : null;
    if (!IMap.isMap(manifest)) return { simulate: null, latencyMs: null, runtime: null };
    const sim = (manifest as RMap).get(kw('simulate'), null);
    const lat = (manifest as RMap).get(kw('latency-ms'), null);
    return { simulate: sim instanceof Closure ? sim : null, latencyMs: typeof lat === 'number' ? lat : lat instanceof RFloat ? lat.v : null, runtime: rt };
  } catch {
    return { simulate: null, latencyMs: null, runtime: null };
  }
}

function simulationFor(m: CapabilityManifest): Simulation {
  const extra = m as unknown as { latencyMs?: unknown; simulate?: unknown };
  const rtfs = rtfsExtras(m);
  const latencyMs = typeof extra.latencyMs === 'number' ? extra.latencyMs : rtfs.latencyMs ?? 0;
  if (m.id === 'ccos.user.ask') return { by: 'answer', latencyMs, provider: { invoke: () => 'sim' } };
  if (m.provider.kind === 'builtin' && m.effects.every((e) => SANDBOXED_EFFECTS.has(e.kind))) return { by: 'sandbox', latencyMs };
  if (typeof extra.simulate === 'function') {
    const fn = extra.simulate as (args: Value[]) => Value;
    return { by: 'simulator', latencyMs, provider: { invoke: (args) => fn(args) } };
  }
  if (rtfs.simulate && rtfs.runtime) {
    const fn = rtfs.simulate;
    const rt = rtfs.runtime;
    return {
      by: 'simulator',
      latencyMs,
      provider: {
        invoke: (args) => {
          const r = evaluateContract(rt, fn, args);
          if ('error' in r) throw new RtfsError('simulator-failed', `the :simulate function of ${m.id} failed: ${r.error.message}`);
          return 'value' in r ? r.value : null;
        },
      },
    };
  }
  return { by: 'schema', latencyMs, provider: { invoke: () => valueFromOutputSchema(m) } };
}

// -------------------------------------------------------------------------------------------------
// The dry run

/**
 * Runs `source` with simulated providers in a scratch node and reports what a real run would do.
 * Nothing is written to `ccos`'s data dir.
 */
export async function dryRun(ccos: Ccos, source: string, file: string, opts: DryRunOptions = {}): Promise<DryRunReport> {
  const admission = opts.admission ?? admit(ccos, source, file);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ccos-dry-run-'));
  const notes: string[] = [];
  let sim: Ccos | undefined;
  try {
    sim = openCcos({ dataDir: path.join(dir, 'data'), workspaceRoot: dir });
    const scratch = sim;
    const how = new Map<string, Simulation>();
    for (const m of ccos.registry.list()) {
      const s = simulationFor(m);
      how.set(m.id, s);
      if (s.provider) scratch.registry.register(m, s.provider, false);
    }
    const c = ccos.governance.constitution;
    if (c) {
      const cfile = path.join(dir, 'constitution.rtfs');
      await fs.writeFile(cfile, c.source);
      scratch.governance.load(cfile);
    }
    const actions: Action[] = [];
    const unsubscribe = scratch.subscribe((a) => actions.push(a));
    let r: RunResult;
    try {
      r = await scratch.run(source, { file, inputs: opts.inputs, fuel: opts.fuel, allow: opts.allow, deny: opts.deny });
      // An approval the run would wait for is noted, then taken as given: the simulation goes on.
      for (let i = 0; r.status === 'paused' && i < 10_000; i++) {
        const ws = (Array.isArray(r.waiting) ? r.waiting : [r.waiting]) as { kind?: string; approval?: string }[];
        const ids = ws.filter((w) => w && w.kind === 'approval' && typeof w.approval === 'string').map((w) => w.approval!);
        if (ids.length === 0 || ids.length !== ws.length) break;
        for (const id of ids) scratch.store.stmt("UPDATE approvals SET status = 'approved' WHERE id = ?").run(id);
        r = await scratch.resume(r.runId);
      }
    } finally {
      unsubscribe();
    }

    const calls: DryRunCall[] = [];
    const byId = new Map(actions.map((a) => [a.id, a]));
    for (const a of actions) {
      if (a.type !== 'CapabilityResult' || a.data.deduplicated) continue;
      const cap = String(a.data.capability);
      const call = a.parentId ? byId.get(a.parentId) : undefined;
      const s = how.get(cap);
      const ok = a.data.ok === true;
      calls.push({
        capability: cap,
        step: a.stepPath,
        args: redact(typeof call?.data.args === 'string' ? call.data.args : ''),
        ok,
        result: ok ? redact(String(a.data.result ?? 'nil')) : null,
        error: ok ? null : typeof a.data.error === 'object' && a.data.error !== null ? String((a.data.error as Record<string, Json>).message ?? '') : String(a.data.error ?? ''),
        costUsd: a.costUsd ?? 0,
        latencyMs: s?.latencyMs ?? 0,
        simulatedBy: s?.by ?? 'schema',
      });
    }
    const approvals = actions
      .filter((a) => a.type === 'ApprovalRequested')
      .map((a) => {
        const summary = (a.data.summary ?? {}) as Record<string, Json>;
        return {
          approval: String(a.data.approval),
          kind: String(a.data.kind),
          capability: typeof summary.capability === 'string' ? summary.capability : null,
          rule: String(a.data.rule),
          needs: describeNeeds(a.data.requirement as unknown as ApprovalRequirement),
          step: Array.isArray(summary.step) ? summary.step.map(String) : [],
        };
      });
    const denials = actions
      .filter((a) => a.type === 'PolicyDecision' && a.data.decision === 'deny')
      .map((a) => ({ capability: String(a.data.capability), rule: String(a.data.rule), rationale: String(a.data.rationale), step: a.stepPath }));
    const predictedCostUsd = Math.round(calls.reduce((s, x) => s + (x.ok ? x.costUsd : 0), 0) * 1e6) / 1e6;
    const predictedLatencyMs = calls.reduce((s, x) => s + x.latencyMs, 0);
    const { max_cost_usd, max_calls } = admission.budget;
    const withinBudget = (max_cost_usd === undefined || predictedCostUsd <= max_cost_usd + 1e-9) && (max_calls === undefined || calls.length <= max_calls) && !denials.some((d) => d.rule.startsWith('budget.'));
    const budget: DryRunReport['budget'] = { withinBudget };
    if (max_cost_usd !== undefined) budget.max_cost_usd = max_cost_usd;
    if (max_calls !== undefined) budget.max_calls = max_calls;
    if ([...how.values()].some((s) => s.by === 'sandbox')) notes.push('state and clock builtins ran for real in a scratch store that starts empty');
    if (calls.some((x) => x.simulatedBy === 'schema')) notes.push('results without a :simulate function were generated from the output schemas (nil when none is declared)');
    if (c === null) notes.push('no constitution is loaded: only the built-in checks applied');
    const value = r.status === 'completed' ? (r.value ?? null) : null;
    return {
      ok: r.status === 'completed',
      file,
      status: r.status,
      value: r.status === 'completed' ? prStr(value) : null,
      valueJson: r.status === 'completed' ? valueToPlainJson(value) : null,
      error: r.error ?? null,
      waiting: r.status === 'paused' ? (r.waiting ?? null) : null,
      predictedCostUsd,
      predictedLatencyMs,
      budget,
      calls,
      approvals,
      denials,
      admission,
      notes,
    };
  } finally {
    try {
      sim?.close();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
}
