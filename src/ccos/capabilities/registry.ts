/**
 * The capability registry: manifests persisted in the store, providers held in memory.
 *
 * Owns: registering, listing and resolving capabilities; parsing manifests written as RTFS data;
 * validating arguments and results against the manifest's schemas.
 * Must never: run a capability (the gate does, through the provider it resolves here).
 */
import { formatTypeErrors, parseType, validate, type TypeExpr } from '../../rtfs/types.js';
import { IMap, Keyword, List, RFloat, prStr, readOne, type RMap, type Value } from '../../rtfs/index.js';
import type { Json } from '../../common/canonical.js';
import { valueToPlainJson } from '../values-json.js';
import { checkSchemaIsValid, validateJsonSchema } from '../providers/json-schema.js';
import { CcosError } from '../errors.js';
import type { SqliteStore } from '../store/sqlite.js';
import type { CapabilityManifest, Effect, Provider, RiskTier, SchemaSpec } from './types.js';

const RISKS: RiskTier[] = ['low', 'medium', 'high', 'critical'];

/** A resolved capability: contract and code. */
export interface Capability {
  manifest: CapabilityManifest;
  provider: Provider;
}

/** Providers that can be recreated from a persisted manifest (RTFS capabilities). */
export type ProviderFactory = (m: CapabilityManifest) => Provider | undefined;

export class CapabilityRegistry {
  private readonly providers = new Map<string, Provider>();
  private readonly manifests = new Map<string, CapabilityManifest>();
  private readonly compiled = new Map<string, TypeExpr>();

  constructor(
    private readonly store: SqliteStore,
    private readonly factory: ProviderFactory,
  ) {
    for (const row of store.stmt('SELECT manifest FROM capabilities').all() as { manifest: string }[]) {
      const m = JSON.parse(row.manifest) as CapabilityManifest;
      this.manifests.set(m.id, m);
    }
  }

  /**
   * Registers a capability. Built-in and local providers live in this process only (their code
   * is TypeScript); `persist` records the manifest so `ccos caps list` shows it.
   */
  register(manifest: CapabilityManifest, provider: Provider, persist = true): void {
    validateManifest(manifest);
    this.manifests.set(manifest.id, manifest);
    this.providers.set(manifest.id, provider);
    if (persist) {
      this.store.stmt('INSERT INTO capabilities (id, manifest, updated) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET manifest = excluded.manifest, updated = excluded.updated')
        .run(manifest.id, JSON.stringify(manifest), new Date().toISOString());
    }
  }

  /** The capability `id`, or undefined when it is unknown (or its code is not loaded here). */
  resolve(id: string): Capability | undefined {
    const manifest = this.manifests.get(id);
    if (!manifest) return undefined;
    let provider = this.providers.get(id);
    if (!provider) {
      provider = this.factory(manifest);
      if (provider) this.providers.set(id, provider);
    }
    return provider ? { manifest, provider } : undefined;
  }

  /** The manifest of `id`, whether or not its code is loaded in this process. */
  manifest(id: string): CapabilityManifest | undefined {
    return this.manifests.get(id);
  }

  list(): CapabilityManifest[] {
    return [...this.manifests.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Validates call arguments; returns a message naming the path of each problem, or null. */
  checkArgs(m: CapabilityManifest, args: Value[]): string | null {
    if (m.params) {
      if (args.length !== m.params.length) return `${m.id} takes ${m.params.length} argument(s), got ${args.length}`;
      const problems = m.params.map((p, i) => this.check(p, args[i], `${m.id} argument ${i + 1}`)).filter((x) => x !== null);
      return problems.length ? problems.join('\n') : null;
    }
    if (m.input) {
      if (args.length !== 1) return `${m.id} takes one argument, got ${args.length}`;
      return this.check(m.input, args[0], `${m.id} input`);
    }
    return null;
  }

  /** Validates a result against the output schema. */
  checkResult(m: CapabilityManifest, v: Value): string | null {
    return m.output ? this.check(m.output, v, `${m.id} output`) : null;
  }

  private check(spec: SchemaSpec, v: Value, what: string): string | null {
    if ('rtfs' in spec) {
      let t = this.compiled.get(spec.rtfs);
      if (!t) {
        t = parseType(readTypeText(spec.rtfs));
        this.compiled.set(spec.rtfs, t);
      }
      const errors = validate(t, v);
      return errors.length ? `${what}: ${formatTypeErrors(errors)}` : null;
    }
    const problem = validateJsonSchema(spec.jsonSchema, valueToPlainJson(v));
    return problem === null ? null : `${what}${problem.startsWith('.') || problem.startsWith('[') ? '' : ': '}${problem}`;
  }
}

function readTypeText(text: string): Value {
  return readOne(text, '<schema>') as Value;
}

function validateManifest(m: CapabilityManifest): void {
  const where = `capability ${m.id || '(no id)'}`;
  if (!m.id || /\s/.test(m.id)) throw new CcosError('manifest', `${where}: the id must be a non-empty name without spaces`);
  if (!RISKS.includes(m.risk)) throw new CcosError('manifest', `${where}: risk must be one of ${RISKS.join(', ')}`);
  for (const s of [m.input, m.output, ...(m.params ?? [])]) {
    if (s && 'jsonSchema' in s) {
      const bad = checkSchemaIsValid(s.jsonSchema);
      if (bad) throw new CcosError('manifest', `${where}: invalid JSON Schema: ${bad}`);
    }
    if (s && 'rtfs' in s) {
      try {
        parseType(readTypeText(s.rtfs));
      } catch (e) {
        throw new CcosError('manifest', `${where}: invalid schema ${s.rtfs}: ${(e as Error).message}`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Manifests written as RTFS data (the `(capability ...)` form and `ccos caps add`)

function kwName(v: Value): string | undefined {
  return v instanceof Keyword ? v.name : typeof v === 'string' ? v : undefined;
}

/** Reads `[:network {:domains [...]}]`-style effect declarations. */
export function parseEffects(v: Value, where: string): Effect[] {
  if (v === null || v === undefined) return [];
  if (!List.isList(v)) throw new CcosError('manifest', `${where}: :effects must be a vector`);
  const items = (v as List<Value>).toArray();
  // Either a single effect `[:network {...}]` or a vector of them.
  const effects = items.length > 0 && items[0] instanceof Keyword ? [v] : items;
  return effects.map((e) => {
    if (e instanceof Keyword) return { kind: e.name };
    if (!List.isList(e)) throw new CcosError('manifest', `${where}: each effect is a keyword or [:kind {details}]`);
    const [k, details] = (e as List<Value>).toArray();
    const kind = kwName(k);
    if (!kind) throw new CcosError('manifest', `${where}: an effect must start with a keyword`);
    const extra = details && IMap.isMap(details) ? (valueToPlainJson(details) as Record<string, Json>) : {};
    return { ...extra, kind };
  });
}

/** Builds a manifest from an RTFS map (`{:version "1" :description ".." :input [:map ...] ...}`). */
export function manifestFromRtfs(id: string, m: RMap, provider: CapabilityManifest['provider']): CapabilityManifest {
  const where = `capability ${id}`;
  const get = (k: string): Value => m.get(Keyword.of(k), null) as Value;
  const schema = (v: Value): SchemaSpec | undefined => {
    if (v === null) return undefined;
    if (IMap.isMap(v) && (v as RMap).has('type')) return { jsonSchema: valueToPlainJson(v) as Record<string, Json> };
    return { rtfs: printValue(v) };
  };
  const risk = kwName(get('risk')) ?? 'low';
  const cost = get('cost');
  const manifest: CapabilityManifest = {
    id,
    version: String(get('version') ?? '0.1.0'),
    description: String(get('description') ?? ''),
    effects: parseEffects(get('effects'), where),
    risk: risk as RiskTier,
    idempotent: get('idempotent') === true,
    deterministic: get('deterministic') === true,
    provider,
  };
  const input = schema(get('input'));
  if (input) manifest.input = input;
  const output = schema(get('output'));
  if (output) manifest.output = output;
  if (typeof get('region') === 'string' || get('region') instanceof Keyword) manifest.region = kwName(get('region'));
  const costNumber = typeof cost === 'number' ? cost : cost instanceof RFloat ? cost.v : null;
  if (costNumber !== null) manifest.cost = { usdPerCall: costNumber };
  else if (IMap.isMap(cost)) manifest.cost = { usdPerCall: Number(valueToPlainJson((cost as RMap).get(Keyword.of('usd-per-call'), 0) as Value)) };
  const timeout = get('timeout-ms');
  if (typeof timeout === 'number') manifest.timeoutMs = timeout;
  const params = get('params');
  if (params !== null) {
    if (!List.isList(params)) throw new CcosError('manifest', `${where}: :params must be a vector of types`);
    manifest.params = (params as List<Value>).toArray().map((t) => ({ rtfs: printValue(t) }));
  }
  const labelList = (k: string): string[] | undefined => {
    const v = get(k);
    if (v === null) return undefined;
    if (!List.isList(v)) throw new CcosError('manifest', `${where}: :${k} must be a vector of keywords`);
    return (v as List<Value>).toArray().map((x) => kwName(x) ?? String(x));
  };
  const out = labelList('output-labels');
  if (out) manifest.outputLabels = out;
  const acc = labelList('accepts-labels');
  if (acc) manifest.acceptsLabels = acc;
  const dec = labelList('declassifies');
  if (dec) manifest.declassifies = dec;
  const sec = labelList('secrets');
  if (sec) manifest.secrets = sec;
  const eps = get('dp-epsilon');
  if (typeof eps === 'number' || (eps !== null && typeof eps === 'object' && 'v' in (eps as object))) manifest.dpEpsilon = typeof eps === 'number' ? eps : (eps as unknown as { v: number }).v;
  validateManifest(manifest);
  return manifest;
}

function printValue(v: Value): string {
  return prStr(v);
}
