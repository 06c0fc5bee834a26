/**
 * What a capability is: its manifest (the contract the gate checks) and its provider (the code
 * that runs it).
 *
 * Owns: the `CapabilityManifest`, `Provider` and `CallContext` interfaces — the plug-in point
 * for every kind of provider (local TypeScript, RTFS, built-in; MCP/OpenAPI/sandbox later).
 * Must never: let a provider reach another capability except through `CallContext.call`, which
 * goes back through the gate.
 */
import type { Json } from '../../common/canonical.js';
import type { Value } from '../../rtfs/index.js';
import type { SqliteStore } from '../store/sqlite.js';

export type RiskTier = 'low' | 'medium' | 'high' | 'critical';

/** A declared effect, e.g. `{kind: 'network', domains: ['api.example.com']}`. */
export interface Effect {
  kind: string;
  [detail: string]: Json;
}

/** A schema: an RTFS type expression (as text) or a JSON Schema object. */
export type SchemaSpec = { rtfs: string } | { jsonSchema: Record<string, Json> };

/**
 * Where a capability's code lives. Kinds other than the built-in ones are recreated after a
 * restart by the provider factory registered for them (`Ccos.useProviderFactory`).
 */
export type ProviderSpec =
  | { kind: 'builtin' }
  | { kind: 'local' }
  | { kind: 'rtfs'; file: string; source: string }
  | { kind: string; [detail: string]: Json };

/** The contract of a capability. */
export interface CapabilityManifest {
  /** Id as plans call it, without the colon: `com.config:v1.rollback`. */
  id: string;
  version: string;
  description: string;
  /** Schema of the single argument (`(call :id arg)`). */
  input?: SchemaSpec;
  /** Schemas of positional arguments, when there are several. */
  params?: SchemaSpec[];
  output?: SchemaSpec;
  effects: Effect[];
  risk: RiskTier;
  /** Cost model: a fixed price per call (USD). */
  cost?: { usdPerCall?: number };
  /** Safe to run again with the same arguments (retried after a crash). */
  idempotent: boolean;
  /** Same arguments, same result (results may be cached and replayed). */
  deterministic: boolean;
  region?: string;
  /** Default time limit of one call. */
  timeoutMs?: number;
  /** Data labels its results carry (e.g. `pii`, `confidential`, `eu_only`). */
  outputLabels?: string[];
  /** Labels its arguments may carry; a call with any other label is denied. Absent: any. */
  acceptsLabels?: string[];
  /** Labels it removes (a declassifier such as a PII redactor). */
  declassifies?: string[];
  /** Differential-privacy cost ε of one call. */
  dpEpsilon?: number;
  /** Names of the secrets its provider needs (`ccos secrets set NAME`). */
  secrets?: string[];
  provider: ProviderSpec;
}

/**
 * What a provider may use while it runs, given with each call. It is not a plain object
 * (`signal`, `call` and `secret` belong to its prototype): to change a member for an inner
 * provider, derive from it with `Object.create(ctx, {...})` rather than spreading it.
 */
export interface CallContext {
  runId: string | null;
  planId: string | null;
  intentId: string | null;
  /** Stable id of this call within its run (also the journal key). */
  requestId: string;
  stepPath: readonly string[];
  capability: CapabilityManifest;
  store: SqliteStore;
  /** The directory `ccos.fs.*` is confined to. */
  workspaceRoot: string;
  /** Hosts `ccos.http.fetch` may reach. */
  allowedHosts: readonly string[];
  /** Aborted when the call times out or the run is cancelled. */
  signal: AbortSignal;
  /** Calls another capability through the gate (used by RTFS-defined capabilities). */
  call(capability: string, args: Value[], requestId: string): Promise<Value>;
  /**
   * The value of a secret the capability declares (`manifest.secrets`). Values exist only here,
   * at the provider boundary: never in plans, the chain, logs or errors.
   */
  secret(name: string): string;
}

/** What a provider returns: a value, optionally with the cost it incurred. */
export type ProviderResult = Value | { value: Value; costUsd?: number; tokens?: number; [RESULT_MARK]: true };
export const RESULT_MARK = Symbol('provider-result');

/** Wraps a value with its reported cost (and, for model calls, the tokens it used). */
export function withCost(value: Value, costUsd: number, tokens?: number): ProviderResult {
  return tokens === undefined ? { value, costUsd, [RESULT_MARK]: true } : { value, costUsd, tokens, [RESULT_MARK]: true };
}

/** The code behind a capability. */
export interface Provider {
  invoke(args: Value[], ctx: CallContext): Promise<ProviderResult> | ProviderResult;
}

/**
 * Thrown by a provider that cannot finish now and needs someone (e.g. `ccos.user.ask`): the run
 * pauses with this description of what it waits for, and `ccos resume RUN --answer ...` supplies
 * the call's result later, in any process.
 */
export class PauseRun extends Error {
  constructor(
    readonly waiting: { kind: string; prompt?: string; [k: string]: Json | undefined },
  ) {
    // A signal, not a failure: no stack trace to capture (that would cost more than the pause).
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`paused: ${waiting.kind}`);
    Error.stackTraceLimit = limit;
  }
}
