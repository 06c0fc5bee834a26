/**
 * The CCOS library API: open a node over a data directory, register capabilities, run, resume,
 * replay and cancel plans, call capabilities through the gate, read and verify the causal chain,
 * subscribe to actions.
 *
 * Owns: wiring the store, key, chain, registry, gate and orchestrator together, and the explicit
 * export list of the `ccos` layer.
 * Must never: offer a path to a capability that skips the gate.
 */
import fs from 'node:fs';
import path from 'node:path';
import { readAll, valueFromJson, type Value } from '../rtfs/index.js';
import { CausalChain, type Action, type VerifyReport } from './chain.js';
import { BUILTINS } from './capabilities/builtins.js';
import { CapabilityRegistry } from './capabilities/registry.js';
import { loadRtfsCapabilities, rtfsProvider } from './capabilities/rtfs-provider.js';
import type { CapabilityManifest, Provider } from './capabilities/types.js';
import { CcosError } from './errors.js';
import { Gate } from './gate.js';
import { NodeKey } from './keys.js';
import { Orchestrator, type ActionListener, type ResumeOptions, type RunOptions, type RunResult } from './orchestrator.js';
import { resolveDataDir, SqliteStore, translateSqliteError, type Durability } from './store/sqlite.js';
import { IntentGraph } from './intents.js';
import { Governance } from './governance/index.js';
import { installSecrets, type SecretStore } from './secrets.js';

export { CcosError, describeError } from './errors.js';
export { ACTION_TYPES, type Action, type ActionType, type VerifyReport } from './chain.js';
export { PauseRun, withCost, type CapabilityManifest, type CallContext, type Provider, type Effect, type RiskTier, type SchemaSpec } from './capabilities/types.js';
export { type RunOptions, type RunResult, type ResumeOptions, type RunStatus } from './orchestrator.js';
export { type Interceptor, type Decision, compose, matchesPattern } from './gate.js';
export { DURABILITIES, resolveDataDir, type Durability } from './store/sqlite.js';
export { valueToPlainJson, plainJsonToValue } from './values-json.js';
export { IntentGraph, type Intent, type IntentStatus, type IntentRelation } from './intents.js';
export { SecretStore, installSecrets, redactSecrets } from './secrets.js';
export { Governance, Approvals, approverSigner, parseConstitution, decide, type ApprovalRequest, type Constitution, type Verdict } from './governance/index.js';

export interface CcosOptions {
  /** Data directory (default: `CCOS_HOME`, else `.ccos` in the current directory). */
  dataDir?: string;
  /**
   * `normal` (default): survives the process dying. `strict`: fsync before a call's result is
   * used. `fenced`: also fsync a non-idempotent call's start before its effect runs.
   */
  durability?: Durability;
  /** How long (ms) writes may wait to share a commit (default 2; with strict durability 20). */
  groupCommitMs?: number;
  /** The WAL size (bytes) at which a thread of the store takes over its checkpoints (default 4 MiB). */
  walThreadAtBytes?: number;
  /** Root directory of `ccos.fs.*` (default: the current directory). */
  workspaceRoot?: string;
  /** Hosts `ccos.http.fetch` may reach. */
  allowedHosts?: string[];
  /** Time limit of a call without its own (ms). */
  defaultTimeoutMs?: number;
  /** Refuse to create a missing data dir. */
  mustExist?: boolean;
  /** Told before data written by an older CCOS is upgraded (a large chain takes seconds). */
  onUpgrade?: (fromSchema: number, toSchema: number) => void;
}

/** A summary row of `runs()`. */
export interface RunSummary {
  id: string;
  planId: string;
  intentId: string | null;
  file: string;
  status: string;
  created: string;
  updated: string;
  checkpoint: string | null;
  waiting: unknown;
  error: unknown;
}

/** A CCOS node over one data directory. */
export class Ccos {
  readonly store: SqliteStore;
  readonly chain: CausalChain;
  readonly registry: CapabilityRegistry;
  readonly gate: Gate;
  readonly orchestrator: Orchestrator;
  readonly intents: IntentGraph;
  readonly governance: Governance;
  readonly dataDir: string;
  /** How hard this node works to survive a power loss (`CcosOptions.durability`). */
  get durability(): Durability {
    return this.store.durability;
  }
  /** Recreate providers of persisted capabilities by kind (MCP, OpenAPI, sandbox, ...). */
  private readonly providerFactories = new Map<string, (m: CapabilityManifest) => Provider | undefined>();
  /** The encrypted secret store of this data dir. */
  readonly secrets: SecretStore;
  private readonly closers: (() => Promise<void> | void)[] = [];

  constructor(opts: CcosOptions = {}) {
    this.dataDir = resolveDataDir(opts.dataDir);
    this.store = new SqliteStore(this.dataDir, { durability: opts.durability, mustExist: opts.mustExist, onUpgrade: opts.onUpgrade, groupCommitMs: opts.groupCommitMs, walThreadAtBytes: opts.walThreadAtBytes });
    const key = NodeKey.load(this.store);
    this.chain = new CausalChain(this.store, key);
    this.registry = new CapabilityRegistry(this.store, (m) => (m.provider.kind === 'rtfs' ? rtfsProvider(m) : this.providerFactories.get(m.provider.kind)?.(m)));
    for (const b of BUILTINS) this.registry.register(b.manifest, b.provider, !this.registry.manifest(b.manifest.id) || JSON.stringify(this.registry.manifest(b.manifest.id)) !== JSON.stringify(b.manifest));
    this.gate = new Gate(this.registry, this.store, {
      workspaceRoot: path.resolve(opts.workspaceRoot ?? process.cwd()),
      allowedHosts: opts.allowedHosts ?? [],
      defaultTimeoutMs: opts.defaultTimeoutMs ?? 30_000,
    });
    this.orchestrator = new Orchestrator(this.store, this.chain, this.gate);
    this.intents = new IntentGraph(this.store, this.orchestrator);
    this.governance = new Governance(this.store, this.orchestrator);
    this.gate.use(this.governance.interceptor);
    this.secrets = installSecrets(this);
    // Providers of these kinds load their modules (MCP SDK, OpenAPI parser, sandbox) on first use.
    this.lazyProviders('mcp', async () => {
      const { installMcp } = await import('./providers/mcp.js');
      const hub = installMcp(this);
      this.closers.push(() => hub.close());
    });
    this.lazyProviders('openapi', async () => void (await import('./providers/openapi.js')).installOpenApi(this));
    this.lazyProviders('sandbox', async () => void (await import('./providers/sandbox.js')).installSandbox(this));
    // Every table and replayer exists now: redo what crashed processes persisted but never committed.
    try {
      this.store.recoverRedo();
    } catch (e) {
      this.store.close();
      throw e;
    }
  }

  /** Registers a provider factory that first loads (and installs) the module of its kind. */
  private lazyProviders(kind: string, install: () => Promise<void>): void {
    let installing: Promise<void> | null = null;
    const placeholder = (m: CapabilityManifest): Provider => ({
      invoke: async (args, ctx) => {
        installing ??= install();
        await installing;
        const real = this.providerFactories.get(kind);
        const provider = real && real !== placeholder ? real(m) : undefined;
        if (!provider) throw new CcosError('unknown-capability', `no ${kind} provider could be created for ${m.id}`);
        return provider.invoke(args, ctx);
      },
    });
    this.useProviderFactory(kind, placeholder);
  }

  /**
   * Teaches this node to recreate providers of a kind from their persisted manifests (so that
   * capabilities registered by another process work here too).
   */
  useProviderFactory(kind: string, factory: (m: CapabilityManifest) => Provider | undefined): void {
    this.providerFactories.set(kind, factory);
  }

  /** Registers a capability implemented in TypeScript (lives in this process). */
  registerCapability(manifest: Omit<CapabilityManifest, 'provider' | 'effects' | 'risk' | 'idempotent' | 'deterministic' | 'version' | 'description'> & Partial<CapabilityManifest>, provider: Provider | Provider['invoke']): void {
    const full: CapabilityManifest = { version: '0.1.0', description: '', effects: [], risk: 'low', idempotent: false, deterministic: false, ...manifest, provider: { kind: 'local' } };
    this.registry.register(full, typeof provider === 'function' ? { invoke: provider } : provider);
  }

  /** Registers the `(capability ...)` definitions of an RTFS file (persisted: they survive restarts). */
  addRtfsCapabilities(file: string): CapabilityManifest[] {
    const source = readSource(file);
    const caps = loadRtfsCapabilities(source, path.resolve(file));
    this.store.tx(() => {
      for (const c of caps) {
        this.registry.register(c.manifest, c.provider);
        this.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: c.manifest.id, version: c.manifest.version, provider: 'rtfs', file: path.resolve(file) } });
      }
    });
    return caps.map((c) => c.manifest);
  }

  /** Runs a plan given as source text. */
  run(source: string, opts: RunOptions & { file?: string } = {}): Promise<RunResult> {
    return this.orchestrator.start(source, opts.file ?? '<plan>', opts);
  }

  /** Runs a plan file. */
  runFile(file: string, opts: RunOptions = {}): Promise<RunResult> {
    return this.orchestrator.start(readSource(file), file, opts);
  }

  /** Continues a paused or interrupted run by run id or checkpoint id, in this process. */
  resume(id: string, opts: ResumeOptions = {}): Promise<RunResult> {
    return this.orchestrator.resume(id, opts);
  }

  /** Re-executes a run from its journal with no effects; reports identical or the first divergence. */
  replay(runId: string): ReturnType<Orchestrator['replay']> {
    return this.orchestrator.replay(runId);
  }

  /** Cancels a run: its compensations run (newest first), then it ends as cancelled. */
  cancel(runId: string): Promise<RunResult> {
    return this.orchestrator.cancel(runId);
  }

  /**
   * Calls one capability through the same gate as plans: it runs as a one-call plan, so it is
   * decided, journaled and recorded like any other call. `args` is RTFS source text.
   */
  call(capability: string, args = '', opts: RunOptions = {}): Promise<RunResult> {
    if (!/^[^\s()[\]{}"]+$/.test(capability)) throw new CcosError('invalid-input', `invalid capability id ${JSON.stringify(capability)}`);
    readAll(args, '<args>'); // argument syntax errors are reported before anything runs
    return this.orchestrator.start(`(call :${capability.replace(/^:/, '')} ${args})`, '<ccos call>', opts);
  }

  /** Listens to every action this node records. */
  subscribe(listener: ActionListener): () => void {
    return this.orchestrator.subscribe(listener);
  }

  /** Runs, newest first. */
  runs(filter: { status?: string; limit?: number } = {}): RunSummary[] {
    try {
      return this.runsUnsafe(filter);
    } catch (e) {
      throw translateSqliteError(e, this.store.dbPath);
    }
  }

  private runsUnsafe(filter: { status?: string; limit?: number }): RunSummary[] {
    const rows = this.store.stmt(`SELECT id, plan_id, intent_id, file, status, created, updated, checkpoint, waiting, error FROM runs ${filter.status ? 'WHERE status = ?' : ''} ORDER BY created DESC, rowid DESC LIMIT ?`)
      .all(...(filter.status ? [filter.status] : []), filter.limit ?? 1000) as Record<string, string | null>[];
    return rows.map((r) => ({
      id: r.id!,
      planId: r.plan_id!,
      intentId: r.intent_id,
      file: r.file!,
      status: r.status!,
      created: r.created!,
      updated: r.updated!,
      checkpoint: r.checkpoint,
      waiting: r.waiting ? JSON.parse(r.waiting) : null,
      error: r.error ? JSON.parse(r.error) : null,
    }));
  }

  /** Everything known about one run. */
  runDetails(runId: string): (RunSummary & { source: string; inputs: string; result: Value | null; actions: Action[] }) | undefined {
    const row = this.orchestrator.runRow(runId);
    if (!row) return undefined;
    const summary = this.runs().find((r) => r.id === runId)!;
    return { ...summary, source: row.source, inputs: row.inputs, result: row.result ? valueFromJson(JSON.parse(row.result)) : null, actions: this.chain.list({ runId }) };
  }

  verifyChain(): VerifyReport {
    return this.chain.verify();
  }

  /** Stops what this node started (MCP server processes, connections) and closes the store. */
  async shutdown(): Promise<void> {
    for (const c of this.closers.splice(0)) await c();
    closeStore(this);
  }

  /** Closes the store (use `shutdown` when MCP servers may have been started). */
  close(): void {
    for (const c of this.closers.splice(0)) void c();
    closeStore(this);
  }
}

/** Seals what a node appended (a pause may still be waiting for its seal), then closes its store. */
function closeStore(ccos: Ccos): void {
  if (!ccos.store.db.open) return;
  try {
    ccos.chain.sealIfUnsealed();
  } finally {
    ccos.store.close();
  }
}

function readSource(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new CcosError('file', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

/** Opens a CCOS node over a data directory. */
export function openCcos(opts: CcosOptions = {}): Ccos {
  return new Ccos(opts);
}
