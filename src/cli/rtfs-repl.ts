/**
 * The `rtfs repl` read-eval-print loop.
 *
 * Owns: line editing (node:readline), continuation of unbalanced input, history in
 * `~/.rtfs_history` (or `$RTFS_HISTORY`), REPL commands (`:help`, `:doc`, `:quit`), and the
 * non-interactive mode used when stdin is not a terminal (each complete input is evaluated, the
 * loop ends at end of input, and the exit status is 1 if any input failed).
 * Must never: exit the process on a user error (diagnostics are printed and the loop goes on).
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { CallHandler, Runtime } from '../rtfs/index.js';

type Kernel = typeof import('../rtfs/index.js');

export interface ReplOptions {
  kernel: Kernel;
  onCall?: CallHandler;
  fuel: number;
  input?: Readable & { isTTY?: boolean };
  output?: Writable;
  errorOutput?: Writable;
}

const PROMPT = 'rtfs> ';
const CONTINUE = '...> ';
const HISTORY_LIMIT = 1000;

const REPL_COMMANDS = `Commands:
  :help          this help
  :doc NAME      documentation of a function, macro or special form
  :quit          leave (also Ctrl-D)

Input continues on the next line (prompt ...>) while brackets or a string are open.
Definitions persist between inputs. Examples:
  (+ 1 2)
  (def xs [1 2 3])
  (map inc xs)
  (defn square [x] (* x x))
  (let [{:keys [a b]} {:a 1 :b 2}] (+ a b))
  (try (/ 1 0) (catch :arithmetic e (str "caught: " (ex-message e))))`;

/**
 * Whether `text` needs more lines: an open bracket, string or block comment. Counts brackets
 * outside strings, `;` comments, `#| |#` block comments and character literals (`\(`).
 */
export function isIncomplete(text: string): boolean {
  let depth = 0;
  let inString = false;
  let inBlock = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (inBlock) {
      if (c === '|' && text[i + 1] === '#') {
        inBlock = false;
        i++;
      }
      continue;
    }
    if (c === '"') inString = true;
    else if (c === ';') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '#' && text[i + 1] === '|') {
      inBlock = true;
      i++;
    } else if (c === '\\') i++;
    else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
  }
  return inString || inBlock || depth > 0;
}

function historyFile(): string {
  return process.env.RTFS_HISTORY || join(homedir(), '.rtfs_history');
}

function loadHistory(path: string): string[] {
  try {
    const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '');
    return lines.slice(-HISTORY_LIMIT).reverse();
  } catch {
    return [];
  }
}

/** Text `:doc NAME` shows. */
function docOf(kernel: Kernel, rt: Runtime, name: string): string {
  if (kernel.SPECIAL_FORM_NAMES.includes(name)) return `${name}: special form`;
  if (rt.macro(name)) return `${name}: macro`;
  const cell = rt.findCell(name);
  if (!cell || !cell.defined) return `no definition named \`${name}\``;
  const v = cell.value;
  if (typeof v === 'object' && v !== null && (v as { kind?: string }).kind === 'builtin') {
    const b = v as { doc?: string; minArity: number; maxArity: number };
    const arity = b.minArity === b.maxArity ? `${b.minArity}` : b.maxArity === Infinity ? `${b.minArity} or more` : `${b.minArity} to ${b.maxArity}`;
    return `${b.doc ?? `${name}: core function (no documentation)`}\n  arguments: ${arity}`;
  }
  if (v instanceof kernel.Closure) return `${name}: ${cell.core ? 'standard library function written in RTFS' : 'function'} (no documentation)`;
  return `${name} = ${kernel.prStr(v)}`;
}

/** Runs the REPL until `:quit` or end of input; resolves to the exit status. */
export function runRepl(opts: ReplOptions): Promise<number> {
  const { kernel, onCall, fuel } = opts;
  const input = opts.input ?? process.stdin;
  const output = opts.output ?? process.stdout;
  const errOut = opts.errorOutput ?? process.stderr;
  const interactive = input.isTTY === true && (output as { isTTY?: boolean }).isTTY === true;
  const rt = kernel.createRuntime();
  const histPath = historyFile();

  const rl = createInterface({
    input,
    output: interactive ? output : undefined,
    terminal: interactive,
    prompt: PROMPT,
    history: interactive ? loadHistory(histPath) : [],
    historySize: HISTORY_LIMIT,
    removeHistoryDuplicates: true,
  });

  let buffer = '';
  let failed = false;

  const write = (s: string): void => void output.write(`${s}\n`);
  const writeErr = (s: string): void => void errOut.write(`${s}\n`);
  const prompt = (): void => {
    if (!interactive) return;
    rl.setPrompt(buffer === '' ? PROMPT : CONTINUE);
    rl.prompt();
  };

  const evalInput = (text: string): void => {
    try {
      const v = kernel.evaluate(text, { runtime: rt, file: '<repl>', onCall, fuel });
      write(kernel.prStr(v));
    } catch (e) {
      failed = true;
      if (e instanceof kernel.RtfsError && e.code !== 'internal') {
        writeErr(kernel.formatDiagnostic(e, e.pos?.file === '<repl>' ? text : undefined));
      } else {
        const err = e instanceof Error ? e : new Error(String(e));
        writeErr(kernel.formatDiagnostic({ code: 'internal', message: err.message }));
        writeErr('this is a bug in rtfs; please report it with the input that triggers it');
        if (err.stack) writeErr(err.stack);
      }
    }
  };

  /** Handles a REPL command; false when the line is not one (then it is RTFS input). */
  const command = (line: string): boolean | 'quit' => {
    const [cmd, ...args] = line.trim().split(/\s+/);
    switch (cmd) {
      case ':help':
      case ':h':
      case ':?':
        write(REPL_COMMANDS);
        return true;
      case ':quit':
      case ':q':
      case ':exit':
        return 'quit';
      case ':doc':
        if (args.length !== 1) writeErr('usage: :doc NAME   (for example :doc inc)');
        else write(docOf(kernel, rt, args[0]));
        return true;
      default:
        return false;
    }
  };

  return new Promise<number>((resolve) => {
    let quit = false;
    rl.on('line', (line) => {
      // Lines already read from a pipe still arrive after :quit closed the interface.
      if (quit) return;
      if (interactive && line.trim() !== '') {
        try {
          appendFileSync(histPath, `${line}\n`);
        } catch {
          // History is best effort.
        }
      }
      if (buffer === '' && line.trim().startsWith(':')) {
        const r = command(line);
        if (r === 'quit') {
          quit = true;
          rl.close();
          return;
        }
        if (r) {
          prompt();
          return;
        }
      }
      buffer = buffer === '' ? line : `${buffer}\n${line}`;
      if (buffer.trim() === '') {
        buffer = '';
      } else if (!isIncomplete(buffer)) {
        const text = buffer;
        buffer = '';
        evalInput(text);
      }
      prompt();
    });
    rl.on('SIGINT', () => {
      if (buffer !== '') {
        buffer = '';
        output.write('\n');
        prompt();
      } else {
        output.write('\n');
        rl.close();
      }
    });
    rl.on('close', () => {
      if (!quit && buffer.trim() !== '') {
        // Unfinished input at end of file: let the reader report where it is open.
        const text = buffer;
        buffer = '';
        evalInput(text);
      }
      if (interactive) output.write('\n');
      resolve(!interactive && failed ? 1 : 0);
    });
    if (interactive) {
      write('RTFS repl — :help for commands, :quit to leave');
    }
    prompt();
  });
}
