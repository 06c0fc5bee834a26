/**
 * Sandboxed capabilities: a JavaScript module runs in a child process under Node's permission
 * model, with file-system allow-lists derived from the capability's declared effects, no child
 * processes, workers, addons or WASI, a heap limit, a CPU-time limit and a kill when the gate's
 * time limit passes.
 *
 * Owns: step profiles (`deriveStepProfile`: security level and isolation from the capability's
 * effects and risk and the intent's constraints), the `sandbox` provider kind (recreated from
 * persisted manifests), spawning and killing the child, turning denied access into
 * `sandbox-denied` errors (recorded as AccessDenied and as the call's failed result), and keeping
 * secret values out of what comes back.
 * Must never: hand the child the parent's environment or the data directory, or let a secret value
 * reach an error message or a result.
 *
 * Limits that are honest approximations, not guarantees:
 * - network: Node 20's permission model has no network permission; the worker blocks the public
 *   socket, DNS and fetch entry points when the profile has no network effect (best effort).
 * - memory: `--max-old-space-size` bounds the JS heap; Buffers and other off-heap memory are bounded
 *   by polling the child's resident size (Linux `/proc`) and killing it above the limit.
 * - CPU time: `ulimit -t` (whole seconds, via /bin/sh) when `cpuMs` is set; not on Windows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Json } from '../../common/canonical.js';
import { RtfsError, type Value } from '../../rtfs/index.js';
import type { CallContext, CapabilityManifest, Provider } from '../capabilities/types.js';
import { ACTION_TYPES, type ActionType } from '../chain.js';
import { CcosError } from '../errors.js';
import type { Ccos } from '../index.js';
import { redactValue, redactValues } from '../secrets.js';
import { plainJsonToValue, valueToPlainJson } from '../values-json.js';

// -------------------------------------------------------------------------------------------------
// Step profiles

export type SecurityLevel = 'low' | 'medium' | 'critical';
export type Isolation = 'inherit' | 'isolated' | 'sandboxed';

/** How a step (one capability call) must run. */
export interface StepProfile {
  securityLevel: SecurityLevel;
  /** `inherit`: in the host process; `isolated`: a separate process; `sandboxed`: a process under the permission model. */
  isolation: Isolation;
  /** Absolute paths the code may read. */
  fsRead: string[];
  /** Absolute paths the code may write. */
  fsWrite: string[];
  network: boolean;
  /** Hosts named by the network effects (empty: unspecified). */
  networkHosts: string[];
  /** Why: one line per rule that applied. */
  reasons: string[];
}

/** Options of a sandboxed capability (persisted in its manifest's provider spec). */
export interface SandboxOptions {
  /** JS heap limit in MB (default 64). */
  memoryMb?: number;
  /** CPU-time limit in ms (rounded up to whole seconds); default: none (the time limit applies). */
  cpuMs?: number;
  /** Extra paths the module may read (absolute, or relative to the workspace root). */
  fsRead?: string[];
  /** Extra paths the module may write. */
  fsWrite?: string[];
}

const LEVELS: SecurityLevel[] = ['low', 'medium', 'critical'];
const raise = (a: SecurityLevel, b: SecurityLevel): SecurityLevel => (LEVELS.indexOf(b) > LEVELS.indexOf(a) ? b : a);

function constraint(c: Record<string, unknown>, name: string): unknown {
  const camel = name.replace(/-([a-z])/g, (_, x: string) => x.toUpperCase());
  for (const k of [name, `:${name}`, camel, name.replace(/-/g, '_')]) if (k in c) return c[k];
  return undefined;
}

const asStrings = (x: unknown): string[] => (Array.isArray(x) ? x.filter((s): s is string => typeof s === 'string') : typeof x === 'string' ? [x] : []);

/**
 * The profile of a call to `manifest` under an intent's constraints (seed 003 §1.e):
 * - fs or network effects → medium; risk high → at least medium;
 * - risk critical, or the intent's `:security-level :critical` → critical (constraints only raise);
 * - isolation: a `sandbox` provider → sandboxed; otherwise critical → sandboxed (required),
 *   medium → isolated, low → inherit;
 * - allow-lists: `{kind: 'fs', access: 'read'|'write', paths: [...]}` effects (no paths: the
 *   workspace root; no access: read; write implies read), plus a sandbox provider's `fsRead` and
 *   `fsWrite`; relative paths are resolved against the workspace root.
 */
export function deriveStepProfile(manifest: CapabilityManifest, intentConstraints: Record<string, unknown> = {}, opts: { workspaceRoot?: string } = {}): StepProfile {
  const root = path.resolve(opts.workspaceRoot ?? process.cwd());
  const abs = (p: string): string => path.resolve(root, p);
  const reasons: string[] = [];
  let level: SecurityLevel = 'low';
  const fsRead = new Set<string>();
  const fsWrite = new Set<string>();
  let network = false;
  const hosts = new Set<string>();
  for (const e of manifest.effects) {
    if (e.kind === 'fs') {
      const paths = [...asStrings(e.paths), ...asStrings(e.path)];
      const targets = paths.length ? paths.map(abs) : [root];
      const write = e.access === 'write' || e.access === 'read-write' || e.access === 'readwrite';
      for (const t of targets) {
        fsRead.add(t);
        if (write) fsWrite.add(t);
      }
      level = raise(level, 'medium');
      reasons.push(`fs ${write ? 'write' : 'read'} effect → medium`);
    } else if (e.kind === 'network') {
      network = true;
      for (const h of [...asStrings(e.domains), ...asStrings(e.hosts)]) hosts.add(h);
      level = raise(level, 'medium');
      reasons.push('network effect → medium');
    }
  }
  if (manifest.risk === 'high') {
    level = raise(level, 'medium');
    reasons.push('risk high → medium');
  }
  if (manifest.risk === 'critical') {
    level = raise(level, 'critical');
    reasons.push('risk critical → critical');
  }
  const wanted = constraint(intentConstraints, 'security-level');
  const wantedName = typeof wanted === 'string' ? wanted.replace(/^:/, '') : undefined;
  if (wantedName && (LEVELS as string[]).includes(wantedName)) {
    const before = level;
    level = raise(level, wantedName as SecurityLevel);
    if (level !== before) reasons.push(`intent constraint :security-level :${wantedName} → ${wantedName}`);
  }
  const spec = manifest.provider as { kind: string; fsRead?: unknown; fsWrite?: unknown };
  for (const p of asStrings(spec.fsRead)) fsRead.add(abs(p));
  for (const p of asStrings(spec.fsWrite)) {
    fsRead.add(abs(p));
    fsWrite.add(abs(p));
  }
  let isolation: Isolation;
  if (spec.kind === 'sandbox') {
    isolation = 'sandboxed';
    reasons.push('sandbox provider → sandboxed');
  } else if (level === 'critical') {
    isolation = 'sandboxed';
    reasons.push('critical → sandboxed isolation required');
  } else isolation = level === 'medium' ? 'isolated' : 'inherit';
  return { securityLevel: level, isolation, fsRead: [...fsRead], fsWrite: [...fsWrite], network, networkHosts: [...hosts], reasons };
}

// -------------------------------------------------------------------------------------------------
// The provider

const WORKER = fileURLToPath(new URL('./sandbox-worker.js', import.meta.url));
const DEFAULT_MEMORY_MB = 64;
/** Resident memory the child may use beyond its heap limit (Node itself, code, buffers). */
const RSS_HEADROOM_MB = 128;
const RSS_POLL_MS = 50;
const STDERR_KEEP = 8192;

/** What `installSandbox` returns. */
export interface SandboxHandle {
  /** Registers (and persists) a sandboxed capability implemented by the module at `modulePath`. */
  register(id: string, modulePath: string, extras?: Partial<Omit<CapabilityManifest, 'id' | 'provider'>> & { sandbox?: SandboxOptions }): CapabilityManifest;
  /** Process ids of sandboxed children running now. */
  active(): number[];
}

const live = new Set<ChildProcess>();

/** Teaches a node the `sandbox` provider kind; returns a way to register sandboxed capabilities. */
export function installSandbox(ccos: Ccos): SandboxHandle {
  ccos.useProviderFactory('sandbox', (m) => sandboxProvider(ccos, m));
  return {
    register(id, modulePath, extras = {}) {
      const file = path.resolve(modulePath);
      if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new CcosError('file', `cannot read ${file}: no such file`, { hint: 'give the path of a JavaScript module whose default export is async function (input, context)' });
      const { sandbox = {}, ...rest } = extras;
      const spec: Record<string, Json> = { kind: 'sandbox', module: fs.realpathSync(file) };
      if (sandbox.memoryMb !== undefined) spec.memoryMb = positive(sandbox.memoryMb, 'memoryMb');
      if (sandbox.cpuMs !== undefined) spec.cpuMs = positive(sandbox.cpuMs, 'cpuMs');
      if (sandbox.fsRead?.length) spec.fsRead = [...sandbox.fsRead];
      if (sandbox.fsWrite?.length) spec.fsWrite = [...sandbox.fsWrite];
      const manifest: CapabilityManifest = { version: '0.1.0', description: '', effects: [], risk: 'medium', idempotent: false, deterministic: false, ...rest, id, provider: spec as CapabilityManifest['provider'] };
      ccos.store.tx(() => {
        ccos.registry.register(manifest, sandboxProvider(ccos, manifest));
        ccos.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: id, version: manifest.version, provider: 'sandbox', module: spec.module as string } });
      });
      return manifest;
    },
    active: () => [...live].map((c) => c.pid!).filter((p) => p !== undefined),
  };
}

function positive(n: number, what: string): number {
  if (!Number.isFinite(n) || n <= 0) throw new CcosError('invalid-input', `sandbox.${what} must be a positive number, got ${n}`);
  return Math.ceil(n);
}

/** The provider of a persisted sandbox manifest. */
export function sandboxProvider(ccos: Ccos, manifest: CapabilityManifest): Provider {
  const spec = manifest.provider as { kind: string; module?: string; memoryMb?: number; cpuMs?: number };
  if (typeof spec.module !== 'string') return { invoke: () => { throw new CcosError('sandbox-config', `${manifest.id} has no module in its sandbox provider spec`); } };
  return { invoke: (args, ctx) => invokeSandboxed(ccos, manifest, spec as { module: string; memoryMb?: number; cpuMs?: number }, args, ctx) };
}

interface ChildAnswer {
  ok: boolean;
  value?: unknown;
  error?: { name: string; message: string; code?: string; permission?: string; resource?: string };
  denied?: { permission: string; resource: string }[];
}

async function invokeSandboxed(ccos: Ccos, manifest: CapabilityManifest, spec: { module: string; memoryMb?: number; cpuMs?: number }, args: Value[], ctx: CallContext): Promise<Value> {
  const id = manifest.id;
  // Secrets are read here, at the provider boundary, and travel over IPC (never argv or env).
  const secrets: Record<string, string> = {};
  for (const name of manifest.secrets ?? []) secrets[name] = ctx.secret(name);
  const secretValues = Object.values(secrets);
  const redact = (s: string): string => redactValues(s, secretValues);

  const constraints = ctx.intentId ? (ccos.intents.get(ctx.intentId)?.constraints ?? {}) : {};
  const profile = deriveStepProfile(manifest, constraints, { workspaceRoot: ctx.workspaceRoot });
  if (!fs.existsSync(spec.module)) throw new CcosError('sandbox-config', `the module of ${id} is missing: ${spec.module}`, { hint: 'register the capability again with the module\'s new path' });
  if (!fs.existsSync(WORKER)) throw new CcosError('sandbox-config', `the sandbox worker ${WORKER} is missing`, { hint: 'run the compiled build (npm run build)' });

  const tmpDir = fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), 'ccos-sandbox-'));
  try {
    const dataDir = real(ccos.dataDir);
    const reads = allowList([spec.module, WORKER, tmpDir, ...profile.fsRead], dataDir);
    const writes = allowList([tmpDir, ...profile.fsWrite], dataDir);
    const memoryMb = spec.memoryMb ?? DEFAULT_MEMORY_MB;
    const nodeArgs = [
      '--experimental-permission',
      '--no-warnings',
      `--max-old-space-size=${memoryMb}`,
      ...(profile.securityLevel === 'critical' ? ['--disallow-code-generation-from-strings'] : []),
      ...reads.map((p) => `--allow-fs-read=${p}`),
      ...writes.map((p) => `--allow-fs-write=${p}`),
      WORKER,
    ];
    const cpuSeconds = spec.cpuMs !== undefined && process.platform !== 'win32' && fs.existsSync('/bin/sh') ? Math.max(1, Math.ceil(spec.cpuMs / 1000)) : undefined;
    const [cmd, argv] = cpuSeconds !== undefined
      ? ['/bin/sh', ['-c', `ulimit -c 0; ulimit -S -t ${cpuSeconds} && ulimit -H -t ${cpuSeconds + 1} && exec "$0" "$@"`, process.execPath, ...nodeArgs]]
      : [process.execPath, nodeArgs];
    const request = {
      module: pathToFileURL(spec.module).href,
      input: args.length ? valueToPlainJson(args[0]!) : null,
      args: args.map(valueToPlainJson),
      tmpDir,
      secrets,
      network: profile.network,
    };
    const answer = await runChild(cmd, argv as string[], tmpDir, request, memoryMb, ctx.signal);
    const denials = answer.kind === 'answer' ? [...(answer.msg.denied ?? [])] : [];
    if (answer.kind === 'answer' && answer.msg.error?.code === 'ERR_ACCESS_DENIED' && denials.length === 0) {
      denials.push({ permission: answer.msg.error.permission || answer.msg.error.message, resource: answer.msg.error.resource ?? '' });
    }
    if (denials.length) {
      recordDenials(ccos, ctx, id, denials.map((d) => ({ permission: d.permission, resource: redact(d.resource) })));
      const first = denials[0]!;
      const more = denials.length > 1 ? ` (and ${denials.length - 1} more denied access${denials.length > 2 ? 'es' : ''})` : '';
      throw new RtfsError('sandbox-denied', redact(`${id} tried to ${describeAccess(first)}, which its sandbox does not allow${more}`), undefined, undefined,
        'declare the access as an effect of the capability (e.g. {kind: "fs", access: "read", paths: [...]}) or in its sandbox options, if it is intended');
    }
    switch (answer.kind) {
      case 'answer': {
        if (answer.msg.ok) return redactValue(plainJsonToValue(answer.msg.value), secretValues);
        const e = answer.msg.error ?? { name: 'Error', message: 'unknown error' };
        throw new Error(redact(`${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${e.message}`));
      }
      case 'timeout':
        throw new RtfsError('timeout', `${id} did not answer in time; its sandboxed process was killed`);
      case 'memory':
        throw new RtfsError('sandbox-memory', `${id} ran out of memory: its sandboxed process exceeded its ${memoryMb} MB limit and was stopped`, undefined, undefined, 'raise the capability\'s sandbox memoryMb, or make it use less memory');
      case 'cpu':
        throw new RtfsError('sandbox-cpu', `${id} used more than its ${spec.cpuMs} ms of CPU time; its sandboxed process was killed`, undefined, undefined, 'raise the capability\'s sandbox cpuMs, or make it do less work');
      case 'exit':
        throw new RtfsError('sandbox-failed', redact(`${id}: its sandboxed process exited (${answer.how}) without an answer${answer.stderr ? `: ${lastLine(answer.stderr)}` : ''}`));
    }
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

type Outcome = { kind: 'answer'; msg: ChildAnswer } | { kind: 'timeout' } | { kind: 'memory' } | { kind: 'cpu' } | { kind: 'exit'; how: string; stderr: string };

function runChild(cmd: string, argv: string[], cwd: string, request: object, memoryMb: number, signal: AbortSignal): Promise<Outcome> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve({ kind: 'timeout' });
    // An empty environment: the parent's variables (tokens, NODE_OPTIONS) stay out.
    const child = spawn(cmd, argv, { cwd, env: {}, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'json' });
    live.add(child);
    let stderr = '';
    let answer: ChildAnswer | undefined;
    let killedFor: 'timeout' | 'memory' | undefined;
    const kill = (why: 'timeout' | 'memory'): void => {
      killedFor ??= why;
      child.kill('SIGKILL');
    };
    const onAbort = (): void => kill('timeout');
    signal.addEventListener('abort', onAbort, { once: true });
    const rssLimit = (memoryMb + RSS_HEADROOM_MB) * 1024 * 1024;
    const poll = process.platform === 'linux'
      ? setInterval(() => {
          const rss = residentBytes(child.pid);
          if (rss !== undefined && rss > rssLimit) kill('memory');
        }, RSS_POLL_MS)
      : undefined;
    child.stdout!.on('data', () => {}); // drained; the module's console output is not kept
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEEP);
    });
    child.on('message', (m) => {
      answer ??= m as ChildAnswer;
    });
    child.on('error', (e) => {
      stderr += `\n${e.message}`;
    });
    child.on('close', (code, sig) => {
      live.delete(child);
      signal.removeEventListener('abort', onAbort);
      if (poll) clearInterval(poll);
      if (answer) return resolve({ kind: 'answer', msg: answer });
      if (killedFor) return resolve({ kind: killedFor });
      // SIGXCPU at the soft CPU limit; SIGKILL at the hard one (a second later) if it was ignored.
      if (sig === 'SIGXCPU' || (sig === 'SIGKILL' && /ulimit/.test(argv[1] ?? '') && !/heap/i.test(stderr))) return resolve({ kind: 'cpu' });
      if (/heap out of memory|Reached heap limit|Allocation failed|Invalid array length|Array buffer allocation failed/i.test(stderr)) return resolve({ kind: 'memory' });
      resolve({ kind: 'exit', how: sig ? `signal ${sig}` : `code ${code}`, stderr: stderr.trim() });
    });
    child.send(request, (e) => {
      if (e) stderr += `\ncannot send the request: ${e.message}`;
    });
  });
}

function residentBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const pages = Number(fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return pages * 4096;
  } catch {
    return undefined;
  }
}

const real = (p: string): string => {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
};

const inside = (child: string, parent: string): boolean => child === parent || child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);

/**
 * Absolute, real, de-duplicated paths; the data directory (keys, secrets, the chain) is never
 * exposed: a path inside it is refused, and a path containing it is replaced by its entries
 * other than the one leading to the data directory.
 */
function allowList(paths: string[], dataDir: string): string[] {
  const out = new Set<string>();
  for (const p0 of paths) {
    if (p0.includes('*') || p0.includes(',')) throw new CcosError('sandbox-config', `the sandbox path ${JSON.stringify(p0)} may not contain * or ,`);
    const p = real(p0);
    if (inside(p, dataDir)) throw new CcosError('sandbox-config', `the sandbox may not be given ${p}: it is inside the data directory`, { hint: 'declare a path outside the CCOS data directory' });
    if (inside(dataDir, p)) for (const q of around(p, dataDir)) out.add(q);
    else out.add(p);
  }
  return [...out];
}

/** The entries under `dir` that do not contain `avoid` (descending along the path to it). */
function around(dir: string, avoid: string): string[] {
  if (dir === avoid) return [];
  const out: string[] = [];
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = path.join(dir, name);
    if (inside(avoid, p)) out.push(...around(p, avoid));
    else out.push(p);
  }
  return out;
}

function describeAccess(d: { permission: string; resource: string }): string {
  switch (d.permission) {
    case 'FileSystemRead':
      return `read ${d.resource}`;
    case 'FileSystemWrite':
      return `write ${d.resource}`;
    case 'ChildProcess':
      return 'start a child process';
    case 'WorkerThreads':
      return 'start a worker thread';
    case 'Network':
      return `open a network connection (${d.resource})`;
    default:
      // A denial without a permission name carries Node's message (e.g. "fs.symlink API requires
      // full fs.read and fs.write permissions.").
      return /\s/.test(d.permission) ? `use an API it may not use (${d.permission.replace(/\.$/, '')})` : `use ${d.permission}${d.resource ? ` on ${d.resource}` : ''}`;
  }
}

function lastLine(s: string): string {
  const lines = s.split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines.find((l) => /^(\w*Error|Error)\b/.test(l)) ?? lines[lines.length - 1] ?? '').slice(0, 300);
}

/** Records denied access on the chain (AccessDenied), when the chain knows that action type. */
function recordDenials(ccos: Ccos, ctx: CallContext, capability: string, denials: { permission: string; resource: string }[]): void {
  if (!(ACTION_TYPES as readonly string[]).includes('AccessDenied')) return;
  ccos.store.tx(() => {
    for (const d of denials) {
      ccos.orchestrator.record({ type: 'AccessDenied' as ActionType, runId: ctx.runId, planId: ctx.planId, intentId: ctx.intentId, stepPath: [...ctx.stepPath], data: { capability, request: ctx.requestId, permission: d.permission, resource: d.resource, sandbox: true } });
    }
  });
}
