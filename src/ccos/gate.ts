/**
 * The one gate every capability call crosses: plans, `ccos call`, the library API.
 *
 * Owns: the built-in checks (capability exists, arguments match the manifest, idempotency keys
 * where policy requires them, allow/deny lists), the interceptor chain (`compose`) after them;
 * then the effect itself (journaled before it starts, with a time limit), output validation, and
 * the record of the result.
 * Must never: let a provider run before its PolicyDecision and CapabilityCall are durable (or, for
 * an idempotent call, recorded with its result), or let a result reach the plan before it is
 * recorded (durable first with strict durability; see the orchestrator's commit rule).
 * The governance kernel plugs its own interceptors in with `Gate.use` (before the effect).
 */
import type { Json } from '../common/canonical.js';
import { EMPTY_MAP, ErrorValue, Labeled, RtfsError, collectLabels, kw, unlabel, type HostRequest, type Value } from '../rtfs/index.js';
import { CcosError } from './errors.js';
import type { ActiveRun } from './orchestrator.js';
import { PauseRun, RESULT_MARK, type CallContext, type CapabilityManifest, type ProviderResult } from './capabilities/types.js';
import type { Capability, CapabilityRegistry } from './capabilities/registry.js';
import type { SqliteStore } from './store/sqlite.js';

/** The decision recorded for every call. */
export interface Decision {
  capability: string;
  decision: 'allow' | 'deny' | 'pause';
  /** The rule that decided (e.g. `registry.unknown`, `acl.deny`). */
  rule: string;
  rationale: string;
}

/** One call on its way through the gate. */
export interface GateCall {
  run: ActiveRun;
  request: HostRequest & { kind: 'call' };
  /** A re-execution of a call whose outcome was unknown after a crash. */
  retry: boolean;
  capability?: Capability;
  /** The call carries an idempotency key. */
  keyed?: boolean;
  /** The rule that allowed the call and why (set by the governance stage; default: the gate's). */
  allowedBy?: { rule: string; rationale: string };
  /** Notes for the decision record (e.g. budget overruns under `:on-exceed :warn`). */
  warnings?: string[];
  /** Runs a call made by this call's provider (an RTFS capability) through the gate. */
  nested?: (capability: string, args: Value[], subId: string) => Promise<Value>;
}

/** What an interceptor produces: allow (go on), a deny decision, or a pause (e.g. for approval). */
export type GateVerdict = { allow: true } | { allow: false; decision: Decision; error: RtfsError } | { allow: false; decision: Decision; pause: Json };

/**
 * A stage of the gate before the effect. Return a deny verdict to stop the call. A stage that has
 * nothing to wait for returns its verdict (and `next()` may return one) rather than a promise:
 * a call that no stage and no provider waits on then crosses the gate without any promise (the
 * handful a call used to make cost ~0.6 µs here, and more in a process where async hooks are on,
 * as LangChain's AsyncLocalStorage turns them on).
 */
export type Interceptor = (call: GateCall, next: () => GateVerdict | Promise<GateVerdict>) => GateVerdict | Promise<GateVerdict>;

const ALLOW: GateVerdict = { allow: true };

/** Runs interceptors in order, each deciding whether to call the next. */
export function compose(interceptors: readonly Interceptor[]): (call: GateCall) => GateVerdict | Promise<GateVerdict> {
  return (call) => {
    const step = (i: number): GateVerdict | Promise<GateVerdict> => (i < interceptors.length ? interceptors[i](call, () => step(i + 1)) : ALLOW);
    return step(0);
  };
}

/** What a call through the gate comes to: its value, its error, or what `hooks.waiting` made of a pause. */
export type GateOutcome<P> = { value: Value } | { error: ErrorValue | RtfsError } | P;

/** How the gate reports to the orchestrator (which owns the journal and transactions). */
export interface GateHooks<P> {
  /**
   * Records the decision (and, if allowed, the call) durably; or returns a promise that resolves
   * when the record becomes durable a moment later (the effect waits for it).
   */
  beforeEffect(decision: Decision, stepPath: readonly string[]): void | Promise<void>;
  /** Records the result before the plan sees it (durable per the orchestrator's commit rule). */
  afterEffect(result: { value: Value; costUsd?: number; tokens?: number } | { error: ErrorValue | RtfsError }, durationMs: number): void;
  /** A denied call: its error becomes the plan's answer. */
  denied(error: RtfsError): { error: ErrorValue | RtfsError };
  /** The provider needs a person: the run pauses. */
  waiting(waiting: Json): P;
}

/** Settings of the gate that come from the node's configuration. */
export interface GateSettings {
  workspaceRoot: string;
  allowedHosts: string[];
  defaultTimeoutMs: number;
  /** Reads a secret's value (the secret store); absent: no secrets are available. */
  readSecret?: (name: string) => string;
}

function deny(call: GateCall, rule: string, rationale: string, code = 'policy-denied'): GateVerdict {
  const capability = call.request.capability;
  return { allow: false, decision: { capability, decision: 'deny', rule, rationale }, error: new RtfsError(code, `call to ${capability} denied: ${rationale}`, call.request.pos, undefined, `rule ${rule}`) };
}

/** `*` matches any run of characters in a capability id pattern. */
export function matchesPattern(pattern: string, id: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(id);
}

export class Gate {
  private readonly extra: Interceptor[] = [];
  /** The composed chain of `extra`, built once per change rather than per call. */
  private chain: ((call: GateCall) => GateVerdict | Promise<GateVerdict>) | null = null;

  constructor(
    private readonly registry: CapabilityRegistry,
    private readonly store: SqliteStore,
    private readonly settings: GateSettings,
  ) {}

  /**
   * The built-in stages, in order; null when all of them let the call go on. Plain synchronous
   * checks rather than interceptors: every call passes them, and each async stage costs a promise.
   */
  private builtinVerdict(call: GateCall): GateVerdict | null {
    // The capability must exist (and its code be loaded here).
    const id = call.request.capability;
    const cap = this.registry.resolve(id);
    if (!cap) {
      return this.registry.manifest(id)
        ? deny(call, 'registry.unloaded', `capability ${id} is registered but its provider is not available in this process`, 'unknown-capability')
        : deny(call, 'registry.unknown', `unknown capability ${id}`, 'unknown-capability');
    }
    call.capability = cap;
    const m = cap.manifest;
    // Arguments must match the manifest's schema.
    const problem = this.registry.checkArgs(m, call.request.args);
    if (problem) return deny(call, 'schema.input', problem, 'invalid-input');
    // Policy may require idempotency keys for effect classes (non-idempotent capabilities only).
    const required = call.run.options.requireIdempotencyFor ?? [];
    const needsKey = required.length > 0 ? m.effects.find((e) => required.includes(e.kind)) : undefined;
    if (needsKey && !m.idempotent && !call.keyed) return deny(call, 'idempotency.required', `${m.id} has a ${needsKey.kind} effect and is not idempotent: it needs ^{:idempotency {:key ..}}`, 'idempotency-required');
    // Run-level allow and deny lists.
    const { allow = [], deny: denyList = [] } = call.run.options;
    const hit = denyList.find((p) => matchesPattern(p, id));
    if (hit) return deny(call, 'acl.deny', `${id} matches the deny pattern ${hit}`);
    if (allow.length && !allow.some((p) => matchesPattern(p, id))) return deny(call, 'acl.allow', `${id} is not in the allow list (${allow.join(', ')})`);
    return null;
  }

  /** Adds an interceptor after the built-in ones (governance plugs in here). */
  use(i: Interceptor): void {
    this.extra.push(i);
    this.chain = null;
  }

  manifest(id: string): CapabilityManifest | undefined {
    return this.registry.manifest(id);
  }

  /** The directory file effects are confined to (step profiles resolve paths against it). */
  get workspaceRoot(): string {
    return this.settings.workspaceRoot;
  }

  /**
   * Takes one call through the gate and, if allowed, runs it. Synchronous (no promise) when every
   * stage decides at once and the provider answers at once.
   */
  call<P>(call: GateCall, hooks: GateHooks<P>): GateOutcome<P> | Promise<GateOutcome<P>> {
    const verdict = this.builtinVerdict(call) ?? (this.extra.length > 0 ? (this.chain ??= compose(this.extra))(call) : ALLOW);
    return verdict instanceof Promise ? verdict.then((v) => this.decided(call, v, hooks)) : this.decided(call, verdict, hooks);
  }

  private decided<P>(call: GateCall, verdict: GateVerdict, hooks: GateHooks<P>): GateOutcome<P> | Promise<GateOutcome<P>> {
    const req = call.request;
    if (!verdict.allow) {
      hooks.beforeEffect(verdict.decision, req.stepPath);
      return 'pause' in verdict ? hooks.waiting(verdict.pause) : hooks.denied(verdict.error);
    }
    const allowed = call.allowedBy ?? { rule: 'gate.default', rationale: 'registered, arguments valid, not denied' };
    const durable = hooks.beforeEffect({ capability: req.capability, decision: 'allow', rule: allowed.rule, rationale: allowed.rationale }, req.stepPath);
    return durable instanceof Promise ? durable.then(() => this.invoke(call, hooks)) : this.invoke(call, hooks);
  }

  /** Runs the provider (its record is durable: see `beforeEffect`), then records its result. */
  private invoke<P>(call: GateCall, hooks: GateHooks<P>): GateOutcome<P> | Promise<GateOutcome<P>> {
    const cap = call.capability!;
    const req = call.request;
    const started = performance.now();
    const failed = (e: unknown): GateOutcome<P> => {
      if (e instanceof PauseRun) return hooks.waiting(e.waiting as Json);
      const error = providerError(e, req);
      hooks.afterEffect({ error }, performance.now() - started);
      return { error };
    };
    const answered = (rawResult: ProviderResult): GateOutcome<P> => {
      const result = isMarked(rawResult) ? { value: rawResult.value, costUsd: rawResult.costUsd, tokens: rawResult.tokens } : { value: rawResult as Value, costUsd: cap.manifest.cost?.usdPerCall, tokens: undefined };
      // Data labels: a result carries its inputs' labels and its declared ones, less what the
      // capability declassifies.
      const labels = resultLabels(cap.manifest, req.args);
      if (labels) result.value = new Labeled(unlabel(result.value), labels);
      const problem = this.registry.checkResult(cap.manifest, result.value);
      if (problem) {
        const error = new RtfsError('invalid-output', problem, req.pos, undefined, `the provider of ${req.capability} returned data that does not match its declared output`);
        hooks.afterEffect({ error }, performance.now() - started);
        return { error };
      }
      hooks.afterEffect(result, performance.now() - started);
      return { value: result.value };
    };
    const controller = new AbortController();
    let pending: ProviderResult | Promise<ProviderResult>;
    try {
      pending = cap.provider.invoke(req.args, new ProviderContext(call, cap.manifest, controller, this.store, this.settings));
      // A synchronous provider has already finished; only a pending one needs a time limit.
      if (!(pending instanceof Promise)) return answered(pending);
    } catch (e) {
      return failed(e);
    }
    const limit = this.timeoutFor(call, cap.manifest);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        // Whether a timed-out effect happened is unknown; a retry may repeat it unless safe.
        const unknown = !cap.manifest.idempotent && !call.keyed;
        reject(new RtfsError('timeout', `${req.capability} did not answer within ${limit} ms`, req.pos, unknown ? EMPTY_MAP.set(kw('outcome-unknown'), true) : undefined, unknown ? 'its outcome is unknown and it is not idempotent: it will not be retried automatically' : 'raise :timeout-ms on the step, or check the provider'));
      }, limit);
    });
    return Promise.race([pending, timedOut])
      .finally(() => clearTimeout(timer))
      .then(answered)
      .catch(failed);
  }

  private timeoutFor(call: GateCall, m: CapabilityManifest): number {
    let limit = m.timeoutMs ?? this.settings.defaultTimeoutMs;
    // Every enclosing step's :timeout-ms narrows the limit (children may only narrow).
    for (const s of call.request.scopes) {
      const opts = s.opts as { get?: (k: unknown, d: unknown) => unknown } | null;
      const t = opts && typeof opts.get === 'function' ? opts.get(KW_TIMEOUT, null) : null;
      if (typeof t === 'number' && t > 0) limit = Math.min(limit, t);
    }
    return limit;
  }
}

/**
 * What a provider is given (`CallContext`). A class rather than an object literal: a literal with
 * a getter is built by the runtime, slowly (~0.5 µs), and every call makes one.
 */
class ProviderContext implements CallContext {
  readonly runId: string | null;
  readonly planId: string | null;
  readonly intentId: string | null;
  readonly requestId: string;
  readonly stepPath: readonly string[];
  readonly workspaceRoot: string;
  readonly allowedHosts: readonly string[];

  constructor(
    private readonly gateCall: GateCall,
    readonly capability: CapabilityManifest,
    private readonly controller: AbortController,
    readonly store: SqliteStore,
    private readonly settings: GateSettings,
  ) {
    this.runId = gateCall.run.runId;
    this.planId = gateCall.run.planId;
    this.intentId = gateCall.run.intentId;
    this.requestId = gateCall.request.id;
    this.stepPath = gateCall.request.stepPath;
    this.workspaceRoot = settings.workspaceRoot;
    this.allowedHosts = settings.allowedHosts;
  }

  // Made only when a provider asks: most never do, and a signal costs more than the call.
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  call(capability: string, args: Value[], subId: string): Promise<Value> {
    const nested = this.gateCall.nested;
    return nested ? nested(capability, args, subId) : Promise.reject(new CcosError('unsupported', 'nested calls are not available here'));
  }

  secret(name: string): string {
    // A provider reads only the secrets its manifest declares.
    const manifest = this.capability;
    if (!(manifest.secrets ?? []).includes(name)) throw new CcosError('secret-denied', `${manifest.id} did not declare the secret ${name}`, { hint: 'list it in the manifest\'s secrets' });
    if (!this.settings.readSecret) throw new CcosError('secret-missing', `no secret store is configured for ${manifest.id}`);
    return this.settings.readSecret(name);
  }
}

const KW_TIMEOUT = kw('timeout-ms');

/** The labels a result carries (null: none): its inputs' and its declared ones, less what the capability declassifies. */
function resultLabels(m: CapabilityManifest, args: Value[]): Set<string> | null {
  let labels: Set<string> | null = m.outputLabels?.length ? new Set(m.outputLabels) : null;
  for (const a of args) labels = collectLabels(a, labels);
  if (labels) for (const d of m.declassifies ?? []) labels.delete(d);
  return labels?.size ? labels : null;
}

function isMarked(x: unknown): x is { value: Value; costUsd?: number; tokens?: number } {
  return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[RESULT_MARK] === true;
}

function providerError(e: unknown, req: HostRequest & { kind: 'call' }): ErrorValue | RtfsError {
  if (e instanceof ErrorValue || e instanceof RtfsError) return e;
  if (e instanceof CcosError) return new RtfsError(e.code, e.message, req.pos, undefined, e.hint);
  return new RtfsError('provider-failed', `${req.capability} failed: ${e instanceof Error ? e.message : String(e)}`, req.pos);
}
