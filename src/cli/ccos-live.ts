/**
 * The live step tree of `ccos run`, `resume` and `call` on a terminal: steps with their statuses
 * and durations, the calls in flight with a spinner, redrawn in place with ANSI escapes.
 *
 * Owns: turning the stream of chain actions (`ccos.subscribe`) into a redrawn tree.
 * Must never: draw anything when the output is not a terminal or `--json` is on (the caller does
 * not create a live view then), or keep the process alive (its timer is unref'd).
 */
import type { Action } from '../ccos/chain.js';
import { StepTree, makeStyle } from './ccos-format.js';

/** The part of a terminal stream the live view uses (a fake in tests). */
export interface LiveStream {
  isTTY?: boolean;
  columns?: number;
  rows?: number;
  write(s: string): unknown;
}

export interface LiveOptions {
  color?: boolean;
  /** Spinner period (ms). */
  intervalMs?: number;
  /** Actions already on the chain for this run (a resumed run shows its earlier steps). */
  history?: Iterable<Action>;
}

const ESC = '\x1b[';

/** A live view: feed it actions, stop it when the run pauses or ends. */
export class LiveView {
  readonly tree = new StepTree();
  private drawn = 0;
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private lastDraw = 0;
  private stopped = false;
  private readonly style;
  private readonly intervalMs: number;
  private readonly runIds = new Set<string>();
  private readonly restoreCursor = (): void => {
    this.out.write(`${ESC}?25h`);
  };
  /** Ctrl-C while live: show the cursor again, then stop as SIGINT would. */
  private readonly onSigint = (): void => {
    this.stop();
    process.stderr.write('interrupted: the run stays resumable (`ccos resume RUN`)\n');
    process.exit(130);
  };

  constructor(
    private readonly out: LiveStream,
    opts: LiveOptions = {},
  ) {
    this.style = makeStyle(opts.color ?? true);
    this.intervalMs = opts.intervalMs ?? 80;
    for (const a of opts.history ?? []) {
      if (a.runId) this.runIds.add(a.runId);
      this.tree.apply(a);
    }
    this.out.write(`${ESC}?25l`);
    process.once('exit', this.restoreCursor);
    if (this.out === process.stdout) process.once('SIGINT', this.onSigint);
    this.timer = setInterval(() => {
      this.frame++;
      if (this.tree.busy()) this.draw();
    }, this.intervalMs);
    this.timer.unref();
    this.draw();
  }

  /** Follows one run: actions of other runs (other processes never reach here; nested runs) are ignored. */
  follow(runId: string): void {
    this.runIds.add(runId);
  }

  /** The subscriber to pass to `ccos.subscribe`. */
  readonly onAction = (a: Action): void => {
    if (this.stopped) return;
    if (a.runId && this.runIds.size > 0 && !this.runIds.has(a.runId)) return;
    if (a.runId && a.type === 'PlanStarted') this.runIds.add(a.runId);
    if (!a.runId) return;
    this.tree.apply(a);
    this.schedule();
  };

  private schedule(): void {
    const since = Date.now() - this.lastDraw;
    if (since >= 40) {
      this.draw();
      return;
    }
    if (!this.pending) {
      this.pending = setTimeout(() => {
        this.pending = undefined;
        if (!this.stopped) this.draw();
      }, 40 - since);
      this.pending.unref();
    }
  }

  /** Redraws the tree in place. While live, only the last lines that fit on the screen. */
  private draw(final = false): void {
    this.lastDraw = Date.now();
    const width = Math.max(20, (this.out.columns || 100) - 1);
    let lines = this.tree.render({ style: this.style, frame: this.frame, width }).map((l) => clip(l, width));
    const maxRows = Math.max(3, (this.out.rows || 40) - 2);
    if (!final && lines.length > maxRows) lines = [this.style.dim(`… ${lines.length - maxRows + 1} more lines above`), ...lines.slice(lines.length - maxRows + 1)];
    let s = '';
    if (this.drawn > 0) s += `${ESC}${this.drawn}F`;
    s += `${ESC}J`;
    s += lines.map((l) => `${l}\n`).join('');
    this.out.write(s);
    this.drawn = lines.length;
  }

  /** Draws the final tree (all of it) and stops; the caller prints the outcome below. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearTimeout(this.pending);
    this.draw(true);
    this.restoreCursor();
    process.removeListener('exit', this.restoreCursor);
    process.removeListener('SIGINT', this.onSigint);
  }
}

/** Cuts a line to `width` visible characters, keeping ANSI escapes intact. */
export function clip(line: string, width: number): string {
  let visible = 0;
  let out = '';
  for (let i = 0; i < line.length; ) {
    if (line[i] === '\x1b') {
      const m = /^\x1b\[[0-9;?]*[A-Za-z]/.exec(line.slice(i));
      if (m) {
        out += m[0];
        i += m[0].length;
        continue;
      }
    }
    const cp = line.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    if (visible >= width) {
      // keep escapes (closing colours) but no more text
      i += ch.length;
      continue;
    }
    out += ch;
    visible++;
    i += ch.length;
  }
  return out;
}

/** A live view on stdout when it is a terminal (and not `--json`); otherwise none. */
export function liveViewFor(json: boolean, opts: LiveOptions = {}): LiveView | undefined {
  if (json || !process.stdout.isTTY) return undefined;
  return new LiveView(process.stdout, { color: !process.env.NO_COLOR, ...opts });
}
