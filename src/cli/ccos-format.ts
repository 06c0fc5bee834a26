/**
 * Text rendering for the `ccos` tool: the step tree of a run (built from its chain actions, used
 * both live and by `ccos runs show`), one-line summaries of actions, tables, waiting descriptions.
 *
 * Owns: how runs, actions and capabilities look on a terminal.
 * Must never: import the CCOS or RTFS runtime (only types), so that `--help` stays fast; write to
 * a stream itself (callers decide where text goes).
 */
import type { Action } from '../ccos/chain.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

// -------------------------------------------------------------------------------------------------
// Small text helpers

/** Shortens text to `max` characters (one line). */
export function short(text: string, max = 60): string {
  const one = text.replace(/\s*\n\s*/g, ' ');
  return one.length > max ? `${one.slice(0, Math.max(1, max - 1))}…` : one;
}

/** `1.2ms`, `340ms`, `2.5s`, `3m04s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 10) return `${Math.round(ms * 10) / 10}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10}s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return `${m}m${String(s).padStart(2, '0')}s`;
}

/** A fixed-width table; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** Quotes a word for a POSIX shell when needed. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** ANSI styles, or identity functions when colour is off. */
export interface Style {
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
  dim(s: string): string;
  bold(s: string): string;
}

export function makeStyle(color: boolean): Style {
  const wrap = (open: number, close: number) => (s: string) => (color ? `\x1b[${open}m${s}\x1b[${close}m` : s);
  return { green: wrap(32, 39), red: wrap(31, 39), yellow: wrap(33, 39), cyan: wrap(36, 39), dim: wrap(2, 22), bold: wrap(1, 22) };
}

export const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

// -------------------------------------------------------------------------------------------------
// What a paused run waits for

/** One line per thing a run waits for. */
export function describeWaiting(waiting: unknown): string[] {
  if (waiting === null || waiting === undefined) return [];
  if (Array.isArray(waiting)) return waiting.flatMap(describeWaiting);
  if (typeof waiting !== 'object') return [String(waiting)];
  const w = waiting as Record<string, Json>;
  const cap = typeof w.capability === 'string' ? ` (${w.capability})` : '';
  if (w.kind === 'answer') {
    const q = typeof w.prompt === 'string' ? JSON.stringify(w.prompt) : typeof w.args === 'string' ? w.args : '';
    return [`an answer${q ? ` to ${q}` : ''}${cap}`];
  }
  if (w.kind === 'outcome-unknown') return [`the outcome of an interrupted call${cap}: did it take effect?`];
  if (w.kind === 'store-failure') return [`the data store: ${str(w.error)}`];
  if (w.kind === 'approval') return [`approval ${str(w.approval)}${cap}: ${typeof w.needs === 'string' ? w.needs : 'an approval'}${typeof w.rule === 'string' ? ` (rule ${w.rule})` : ''}`];
  return [`${String(w.kind ?? 'something')}${cap}${typeof w.prompt === 'string' ? `: ${w.prompt}` : ''}`];
}

/** The kinds of things a run waits for. */
export function waitingKinds(waiting: unknown): string[] {
  if (waiting === null || waiting === undefined) return [];
  if (Array.isArray(waiting)) return waiting.flatMap(waitingKinds);
  if (typeof waiting === 'object') return [String((waiting as Record<string, unknown>).kind ?? 'unknown')];
  return [String(waiting)];
}

/** The approval request ids a run waits for. */
export function approvalIds(waiting: unknown): string[] {
  if (waiting === null || waiting === undefined) return [];
  if (Array.isArray(waiting)) return waiting.flatMap(approvalIds);
  const w = waiting as Record<string, unknown>;
  return typeof waiting === 'object' && w.kind === 'approval' && typeof w.approval === 'string' ? [w.approval] : [];
}

/** A short cell for `runs list`. */
export function waitingCell(waiting: unknown): string {
  const d = describeWaiting(waiting);
  return d.length ? short(d.join('; '), 50) : '';
}

// -------------------------------------------------------------------------------------------------
// One-line action summaries (`ccos chain show`)

const str = (v: Json | undefined): string => (v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v));

function errMsg(e: Json | undefined): string {
  if (e && typeof e === 'object' && !Array.isArray(e)) return `${str(e.code)}: ${str(e.message)}`;
  return str(e);
}

/** A short summary of an action's data. */
export function summarizeAction(a: Action): string {
  const d = a.data as Record<string, Json>;
  switch (a.type) {
    case 'PlanStarted':
      return `${str(d.file)} inputs ${short(str(d.inputs), 40)}`;
    case 'PlanPaused':
      return `waiting for ${describeWaiting(d.waiting).join('; ')}`;
    case 'PlanResumed':
      return `from ${short(str(d.checkpoint), 20)} by ${str(d.by)}`;
    case 'PlanCompleted':
      return `=> ${short(str(d.result))}`;
    case 'PlanAborted':
      return short(errMsg(d.error), 80);
    case 'PlanCancelled':
      return `by ${str(d.by)}`;
    case 'StepStarted':
      return str(d.name);
    case 'StepCompleted':
      return `${str(d.name)} => ${short(str(d.value), 50)}`;
    case 'StepFailed':
      return `${str(d.name)}: ${short(errMsg(d.error), 60)}${d.continued ? ' (continued)' : ''}`;
    case 'StepRetrying':
      return `${str(d.name)} attempt ${str(d.attempt)}/${str(d.of)} in ${str(d.backoff_ms)}ms: ${short(errMsg(d.error), 50)}`;
    case 'CapabilityCall':
      return `${str(d.capability)} ${short(str(d.args), 50)}`;
    case 'CapabilityResult':
      return d.ok ? `${str(d.capability)} => ${short(str(d.result), 50)}${a.durationMs !== undefined ? ` (${formatDuration(a.durationMs)})` : ''}` : `${str(d.capability)} failed: ${short(errMsg(d.error), 60)}`;
    case 'PolicyDecision':
      return `${str(d.capability)} ${str(d.decision)} (${str(d.rule)})${d.decision === 'allow' ? '' : `: ${short(str(d.rationale), 60)}`}`;
    case 'CheckpointCreated':
      return `${str(d.reason)} ${short(str(d.checkpoint), 20)}`;
    case 'IntentCreated':
      return short(str(d.goal), 60);
    case 'IntentStatusChanged':
      return `${str(d.from)} -> ${str(d.to)}${d.reason ? ` (${short(str(d.reason), 50)})` : ''}`;
    case 'IntentRelationshipCreated':
      return `${short(str(d.from), 20)} ${str(d.relation)} ${short(str(d.to), 20)}`;
    case 'CapabilityRegistered':
      return `${str(d.capability)} ${str(d.version)}`;
    default:
      return short(JSON.stringify(d), 80);
  }
}

/** One line of `ccos chain show`. */
export function actionLine(a: Action): string {
  const time = a.time.length >= 23 ? a.time.slice(11, 23) : a.time;
  const run = a.runId ? a.runId.slice(0, 12) : a.intentId ? a.intentId.slice(0, 15) : '-';
  const step = a.stepPath.length ? a.stepPath.join(' > ') : '-';
  return `${String(a.seq).padStart(5)} ${time} ${a.type.padEnd(26)} ${run.padEnd(15)} ${short(step, 24).padEnd(12)} ${summarizeAction(a)}`;
}

// -------------------------------------------------------------------------------------------------
// The step tree

export type StepStatus = 'running' | 'ok' | 'failed' | 'continued' | 'retrying' | 'waiting' | 'cancelled';
export type CallStatus = 'in-flight' | 'ok' | 'failed' | 'denied' | 'waiting';

export interface CallNode {
  kind: 'call';
  actionId: string | null;
  capability: string;
  args: string;
  status: CallStatus;
  result?: string;
  error?: string;
  durationMs?: number;
  /** Calls made by this call's provider (RTFS capabilities), through the gate. */
  children: CallNode[];
  startedAt: number;
}

export interface StepNode {
  kind: 'step';
  name: string;
  path: string[];
  status: StepStatus;
  started?: string;
  ended?: string;
  startedAt: number;
  durationMs?: number;
  value?: string;
  error?: string;
  attempt?: number;
  children: (StepNode | CallNode)[];
}

const t = (iso: string): number => Date.parse(iso);

/** A run's step tree, fed one action at a time (live) or all at once (`runs show`). */
export class StepTree {
  readonly root: StepNode = { kind: 'step', name: '', path: [], status: 'running', startedAt: 0, children: [] };
  /** The latest step node of each step path. */
  private readonly byPath = new Map<string, StepNode>();
  private readonly callsById = new Map<string, CallNode>();
  /** Open calls (no result yet), innermost last, per step path. */
  private readonly open: CallNode[] = [];
  status: 'running' | 'paused' | 'completed' | 'failed' | 'cancelled' = 'running';
  actions = 0;

  constructor() {
    this.byPath.set('', this.root);
  }

  private key(path: readonly string[]): string {
    return JSON.stringify(path);
  }

  private stepAt(path: readonly string[]): StepNode {
    if (path.length === 0) return this.root;
    const found = this.byPath.get(this.key(path));
    if (found) return found;
    // A step we did not see start (e.g. the tree starts mid-run): create it.
    const parent = this.stepAt(path.slice(0, -1));
    const node: StepNode = { kind: 'step', name: path[path.length - 1], path: [...path], status: 'running', startedAt: Date.now(), children: [] };
    parent.children.push(node);
    this.byPath.set(this.key(path), node);
    return node;
  }

  /** Calls by request id: a call made by another call's provider has id `outer/inner`. */
  private readonly byRequest = new Map<string, CallNode>();

  /** The container of a call: the call whose provider made it (request `outer/inner`), else the step. */
  private callParent(step: StepNode, request: string): { children: { push(n: CallNode): unknown } } {
    const slash = request.lastIndexOf('/');
    const outer = slash > 0 ? this.byRequest.get(request.slice(0, slash)) : undefined;
    return outer ?? step;
  }

  apply(a: Action): void {
    this.actions++;
    const d = a.data as Record<string, Json>;
    switch (a.type) {
      case 'PlanStarted':
        this.root.started = a.time;
        this.root.startedAt = t(a.time);
        this.status = 'running';
        break;
      case 'PlanResumed':
        this.status = 'running';
        this.root.status = 'running';
        for (const n of this.byPath.values()) if (n.status === 'waiting') n.status = 'running';
        break;
      case 'PlanPaused':
        this.status = 'paused';
        this.root.status = 'waiting';
        for (const c of this.open) if (c.status === 'in-flight') c.status = 'waiting';
        if (!this.open.some((c) => c.status === 'waiting')) {
          // The waiting call may not be on the chain yet (it is recorded with its answer): show
          // it from what the run waits for, in the innermost running step.
          const running = [...this.byPath.values()].filter((n) => n !== this.root && n.status === 'running');
          const step = running.sort((x, y) => y.path.length - x.path.length)[0] ?? this.root;
          for (const w of Array.isArray(d.waiting) ? d.waiting : [d.waiting]) {
            if (!w || typeof w !== 'object' || Array.isArray(w)) continue;
            const node: CallNode = { kind: 'call', actionId: null, capability: str(w.capability) || (w.kind === 'answer' ? 'ccos.user.ask' : str(w.kind)), args: typeof w.prompt === 'string' ? JSON.stringify([w.prompt]).replace(/^\[|\]$/g, '') : str(w.args), status: 'waiting', children: [], startedAt: t(a.time) };
            step.children.push(node);
            this.open.push(node);
          }
        }
        for (const n of this.byPath.values()) if (n.status === 'running' && n !== this.root) n.status = 'waiting';
        break;
      case 'PlanCompleted':
        this.status = 'completed';
        this.root.status = 'ok';
        this.root.value = str(d.result);
        this.finishRoot(a);
        break;
      case 'PlanAborted':
        this.status = 'failed';
        this.root.status = 'failed';
        this.root.error = errMsg(d.error);
        this.finishRoot(a);
        break;
      case 'PlanCancelled':
        this.status = 'cancelled';
        this.root.status = 'cancelled';
        for (const n of this.byPath.values()) if (n.status === 'running' || n.status === 'waiting') n.status = 'cancelled';
        this.finishRoot(a);
        break;
      case 'StepStarted': {
        const parent = this.stepAt(a.stepPath.slice(0, -1));
        const node: StepNode = { kind: 'step', name: str(d.name) || a.stepPath[a.stepPath.length - 1] || '?', path: [...a.stepPath], status: 'running', started: a.time, startedAt: t(a.time), children: [] };
        const prev = this.byPath.get(this.key(a.stepPath));
        if (prev && prev.status === 'retrying' && prev !== this.root) {
          // A retry restarts the same step: keep one node, count attempts.
          prev.status = 'running';
          prev.started = a.time;
          prev.startedAt = t(a.time);
          break;
        }
        parent.children.push(node);
        this.byPath.set(this.key(a.stepPath), node);
        break;
      }
      case 'StepCompleted': {
        const n = this.stepAt(a.stepPath);
        n.status = 'ok';
        n.value = str(d.value);
        n.ended = a.time;
        n.durationMs = n.started ? t(a.time) - t(n.started) : undefined;
        break;
      }
      case 'StepFailed': {
        const n = this.stepAt(a.stepPath);
        n.status = d.continued ? 'continued' : 'failed';
        n.error = errMsg(d.error);
        n.ended = a.time;
        n.durationMs = n.started ? t(a.time) - t(n.started) : undefined;
        break;
      }
      case 'StepRetrying': {
        const n = this.stepAt(a.stepPath);
        n.status = 'retrying';
        n.attempt = typeof d.attempt === 'number' ? d.attempt : (n.attempt ?? 0) + 1;
        n.error = errMsg(d.error);
        break;
      }
      case 'PolicyDecision': {
        if (d.decision === 'allow') break;
        const step = this.stepAt(a.stepPath);
        const node: CallNode = { kind: 'call', actionId: a.id, capability: str(d.capability), args: '', status: 'denied', error: `${str(d.rationale)} (${str(d.rule)})`, children: [], startedAt: t(a.time) };
        this.callParent(step, '').children.push(node);
        break;
      }
      case 'CapabilityCall': {
        const step = this.stepAt(a.stepPath);
        const node: CallNode = { kind: 'call', actionId: a.id, capability: str(d.capability), args: str(d.args), status: 'in-flight', children: [], startedAt: t(a.time) };
        this.callParent(step, str(d.request)).children.push(node);
        this.callsById.set(a.id, node);
        if (typeof d.request === 'string') this.byRequest.set(d.request, node);
        this.open.push(node);
        if (step.status === 'waiting') step.status = 'running';
        break;
      }
      case 'CapabilityResult': {
        let node = a.parentId ? this.callsById.get(a.parentId) : undefined;
        if (!node && d.answered_by === 'resume') {
          // The answer to a call that waited for a person (possibly seen in an earlier process).
          node = this.open.find((c) => c.status === 'waiting' && c.capability === d.capability) ?? this.open.find((c) => c.status === 'waiting' && c.actionId === null);
        }
        if (!node) {
          const step = this.stepAt(a.stepPath);
          node = { kind: 'call', actionId: null, capability: str(d.capability), args: '?', status: 'in-flight', children: [], startedAt: t(a.time) };
          step.children.push(node);
        }
        node.status = d.ok ? 'ok' : 'failed';
        if (d.ok) node.result = str(d.result);
        else node.error = typeof d.error === 'string' ? d.error : errMsg(d.error);
        if (a.durationMs !== undefined) node.durationMs = a.durationMs;
        const i = this.open.indexOf(node);
        if (i >= 0) this.open.splice(i, 1);
        break;
      }
      default:
        break;
    }
  }

  private finishRoot(a: Action): void {
    this.root.ended = a.time;
    if (this.root.started) this.root.durationMs = t(a.time) - t(this.root.started);
    for (const c of this.open) if (c.status === 'in-flight' && this.status !== 'completed') c.status = 'failed';
  }

  /** True while something is running or a call is in flight (the spinner turns). */
  busy(): boolean {
    return this.open.some((c) => c.status === 'in-flight') || [...this.byPath.values()].some((n) => n !== this.root && n.status === 'running');
  }

  /** The tree as plain data (`runs show --json`). */
  toJson(): Json[] {
    const conv = (n: StepNode | CallNode): Json =>
      n.kind === 'step'
        ? stripUndef({ kind: 'step', name: n.name, path: n.path, status: n.status, started: n.started, ended: n.ended, durationMs: n.durationMs, value: n.value, error: n.error, attempt: n.attempt, children: n.children.map(conv) })
        : stripUndef({ kind: 'call', capability: n.capability, args: n.args, status: n.status, result: n.result, error: n.error, durationMs: n.durationMs, children: n.children.map(conv) });
    return this.root.children.map(conv);
  }

  /** The tree as lines of text. */
  render(opts: { style?: Style; frame?: number; now?: number; width?: number } = {}): string[] {
    const s = opts.style ?? makeStyle(false);
    const frame = SPINNER[(opts.frame ?? 0) % SPINNER.length];
    const now = opts.now ?? Date.now();
    const width = opts.width ?? 100;
    const lines: string[] = [];
    const stepIcon = (st: StepStatus): string =>
      ({ running: s.cyan(frame), ok: s.green('✓'), failed: s.red('✗'), continued: s.yellow('✗'), retrying: s.yellow('↻'), waiting: s.yellow('⏸'), cancelled: s.dim('⊘') })[st];
    const callIcon = (st: CallStatus): string => ({ 'in-flight': s.cyan(frame), ok: s.green('→'), failed: s.red('→'), denied: s.red('⊘'), waiting: s.yellow('⏸') })[st];
    const budget = (used: number): number => Math.max(16, width - used);
    const walk = (n: StepNode | CallNode, depth: number): void => {
      const pad = '  '.repeat(depth);
      if (n.kind === 'step') {
        const dur = n.durationMs !== undefined ? formatDuration(n.durationMs) : n.status === 'running' ? formatDuration(now - n.startedAt) : '';
        let tail = '';
        if (n.status === 'failed' || n.status === 'continued') tail = s.red(short(n.error ?? '', budget(pad.length + n.name.length + 20))) + (n.status === 'continued' ? s.dim(' (continued)') : '');
        else if (n.status === 'retrying') tail = s.yellow(`retry ${n.attempt ?? ''}: ${short(n.error ?? '', budget(pad.length + n.name.length + 30))}`);
        else if (n.status === 'ok' && n.value !== undefined) tail = s.dim(`=> ${short(n.value, budget(pad.length + n.name.length + 20))}`);
        else if (n.status === 'waiting') tail = s.yellow('waiting');
        lines.push(`${pad}${stepIcon(n.status)} ${s.bold(n.name)}${dur ? ' ' + s.dim(dur) : ''}${tail ? '  ' + tail : ''}`);
      } else {
        const head = `${pad}${callIcon(n.status)} ${n.capability}${n.args ? ' ' + short(n.args, Math.min(40, budget(pad.length + n.capability.length + 30))) : ''}`;
        let tail = '';
        if (n.status === 'ok') tail = `=> ${short(n.result ?? '', budget(head.length + 14))}${n.durationMs !== undefined ? ' ' + s.dim(formatDuration(n.durationMs)) : ''}`;
        else if (n.status === 'failed') tail = s.red(`failed: ${short(n.error ?? '', budget(head.length + 12))}`);
        else if (n.status === 'denied') tail = s.red(`denied: ${short(n.error ?? '', budget(head.length + 12))}`);
        else if (n.status === 'waiting') tail = s.yellow('waiting');
        else tail = s.dim(formatDuration(now - n.startedAt));
        lines.push(`${head}  ${tail}`);
      }
      for (const c of n.children) walk(c, depth + 1);
    };
    for (const c of this.root.children) walk(c, 0);
    return lines;
  }
}

function stripUndef(o: Record<string, Json | undefined>): Json {
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

/** Builds the step tree of a run from its actions. */
export function stepTreeOf(actions: Iterable<Action>): StepTree {
  const tree = new StepTree();
  for (const a of actions) tree.apply(a);
  return tree;
}
