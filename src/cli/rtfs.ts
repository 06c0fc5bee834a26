#!/usr/bin/env node
/**
 * The `rtfs` command-line tool: `eval`, `check`, `repl`, `help`.
 *
 * Owns: argument parsing, reading files, exit codes (0 ok, 1 program error, 2 usage error), and
 * turning kernel errors into diagnostics. User errors never print a JS stack trace; internal
 * errors do, and say that they are a bug.
 * Must never: load the kernel before a command needs it (startup stays fast for `--help`).
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Builtin, CallHandler, HostRequest, RtfsError as RtfsErrorT, Value } from '../rtfs/index.js';
import { readVersion } from './version.js';

type Kernel = typeof import('../rtfs/index.js');

const DEFAULT_FUEL = 100_000_000;

// -------------------------------------------------------------------------------------------------
// Usage texts

const MAIN_HELP = `rtfs — the RTFS language tool

Usage:
  rtfs eval (-e EXPR | FILE) [options]   evaluate a program and print its value
  rtfs check FILE [--json]               compile without running: errors, warnings, capabilities
  rtfs repl [--host FILE]                interactive read-eval-print loop
  rtfs help [COMMAND]                    show help (also: rtfs COMMAND --help)
  rtfs --version                         print the version

Examples:
  rtfs eval -e '(reduce + (map inc [1 2 3]))'
  rtfs eval plan.rtfs --host mocks.rtfs
  rtfs check plan.rtfs
  rtfs repl

Exit codes: 0 success, 1 error in the program, 2 usage error.`;

const EVAL_HELP = `rtfs eval — evaluate an RTFS program and print the value of its last form

Usage:
  rtfs eval -e EXPR [options]
  rtfs eval FILE [options]        (FILE may be - for standard input)

Options:
  -e, --expr EXPR    evaluate EXPR instead of a file
  --host FILE        answer (call ...) with mock capabilities: FILE is an RTFS program whose last
                     value is a map from capability ids to functions, e.g.
                       {"svc.get" (fn [& args] {:id (first args)})}
  --fuel N           step budget (function calls + loop iterations); default ${DEFAULT_FUEL}
  --roundtrip        save the machine to JSON and restore it at every host request (a self-test)
  --json             print {"ok":true,"value":...} or {"ok":false,"error":{...}} on stdout
  --trace            print each host request (kind, capability, args, step path) on stderr
  -h, --help         show this help

Examples:
  rtfs eval -e '(+ 1 2)'
  rtfs eval plan.rtfs --host mocks.rtfs --trace`;

const CHECK_HELP = `rtfs check — compile a program without running it

Reports the first compile error of every top-level form (unbound symbols, wrong arity of
standard functions, malformed special forms), warnings, and the capabilities the program calls.

Usage:
  rtfs check FILE [--json]

Options:
  --json             print {"file","ok","diagnostics":[...],"capabilities":[...]} on stdout
  -h, --help         show this help

Example:
  rtfs check plan.rtfs`;

const REPL_HELP = `rtfs repl — interactive read-eval-print loop

Definitions persist between inputs. Unbalanced input continues on the next line (prompt ...>).
Commands: :help, :doc NAME, :quit. History is kept in ~/.rtfs_history (env RTFS_HISTORY).
With piped input, each complete input is evaluated and the loop ends at end of input.

Usage:
  rtfs repl [--host FILE] [--fuel N]

Options:
  --host FILE        mock capabilities, as for rtfs eval
  --fuel N           step budget per input; default ${DEFAULT_FUEL}
  -h, --help         show this help

Example:
  echo '(def x 2) (* x 21)' | rtfs repl`;

const HELP: Record<string, string> = { eval: EVAL_HELP, check: CHECK_HELP, repl: REPL_HELP };

// -------------------------------------------------------------------------------------------------
// Small helpers

class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

function usageFail(e: UsageError): number {
  process.stderr.write(`rtfs: ${e.message}\n`);
  process.stderr.write(`hint: run \`rtfs ${e.command ? `${e.command} ` : ''}--help\` for usage\n`);
  return 2;
}

interface Parsed {
  values: { [name: string]: string | boolean | undefined };
  positionals: string[];
}

function parse(command: string, args: string[], options: ParseArgsConfig['options']): Parsed {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    const quoted = /'([^']+)'/.exec(err.message)?.[1];
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${quoted ?? ''} for \`rtfs ${command}\``.replace('  ', ' '), command);
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      throw new UsageError(err.message.replace(/^Option /, 'option ').replace(/\.$/, ''), command);
    }
    throw new UsageError(err.message, command);
  }
}

function parseFuel(s: string | undefined, command: string): number {
  if (s === undefined) return DEFAULT_FUEL;
  if (!/^\d+$/.test(s) || Number(s) <= 0) throw new UsageError(`--fuel needs a positive integer, got \`${s}\``, command);
  return Number(s);
}

/** Reads a file for the program; an unreadable file is an `io` error (exit 1). */
function readSource(kernel: Kernel, path: string): string {
  try {
    return path === '-' ? readFileSync(0, 'utf8') : readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new kernel.RtfsError('io', `cannot read ${path}: ${why}`);
  }
}

/** Source texts by file name, so diagnostics can show an excerpt of the right file. */
type Sources = Map<string, string>;

function isInternal(kernel: Kernel, e: unknown): boolean {
  return !(e instanceof kernel.RtfsError) || e.code === 'internal';
}

/** Prints an error as a diagnostic; a stack trace only for internal errors (bugs). */
function printError(kernel: Kernel, e: unknown, sources: Sources): void {
  if (!isInternal(kernel, e)) {
    const err = e as RtfsErrorT;
    const src = err.pos ? sources.get(err.pos.file) : undefined;
    process.stderr.write(`${kernel.formatDiagnostic(err, src)}\n`);
    return;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  const pos = (err as Partial<RtfsErrorT>).pos;
  process.stderr.write(`${kernel.formatDiagnostic({ code: 'internal', message: err.message, pos }, pos ? sources.get(pos.file) : undefined)}\n`);
  process.stderr.write('this is a bug in rtfs; please report it with the program that triggers it\n');
  if (err.stack) process.stderr.write(`${err.stack}\n`);
}

function errorJson(kernel: Kernel, e: unknown): object {
  if (!isInternal(kernel, e)) {
    const err = e as RtfsErrorT;
    return { code: err.code, message: err.message, file: err.pos?.file ?? null, line: err.pos?.line ?? null, col: err.pos?.col ?? null, hint: err.hint ?? null };
  }
  const err = e instanceof Error ? e : new Error(String(e));
  return { code: 'internal', message: `${err.message} (this is a bug in rtfs)`, file: null, line: null, col: null, hint: null };
}

// -------------------------------------------------------------------------------------------------
// --host: mock capabilities written in RTFS

/** Loads a host file and returns a call handler answering from its map of capability functions. */
function loadHost(kernel: Kernel, path: string, sources: Sources, fuel: number): CallHandler {
  const text = readSource(kernel, path);
  sources.set(path, text);
  const rt = kernel.createRuntime();
  const unit = rt.load(text, path);
  const value = rt.runToCompletion(unit.main, [], fuel);
  const hint = 'the last form of a --host file must be a map like {"svc.get" (fn [& args] ...)}';
  if (!kernel.isMap(value)) {
    throw new kernel.RtfsError('host', `--host file ${path} must end with a map of capability ids to functions, but its last value is ${kernel.prStr(value).slice(0, 60)} (${kernel.typeName(value)})`, undefined, undefined, hint);
  }
  const caps = new Map<string, Value>();
  for (const [k, v] of value) {
    const id = typeof k === 'string' ? k : k instanceof kernel.Keyword ? k.name : null;
    if (id === null) {
      throw new kernel.RtfsError('host', `--host file ${path}: capability ids must be strings or keywords, found ${kernel.prStr(k)}`, undefined, undefined, hint);
    }
    if (!kernel.isFn(v)) {
      throw new kernel.RtfsError('host', `--host file ${path}: capability ${id} must be a function, found ${kernel.prStr(v)} (${kernel.typeName(v)})`, undefined, undefined, hint);
    }
    caps.set(id, v);
  }
  return (cap, args, req) => {
    const fn = caps.get(cap);
    if (fn === undefined) {
      const known = [...caps.keys()].sort().join(', ') || 'none';
      throw new kernel.RtfsError('host', `unknown capability ${cap} in --host file ${path} (it defines: ${known})`, req.pos, undefined, `add ${JSON.stringify(cap)} to the map in ${path}`);
    }
    if (fn instanceof kernel.Closure) return rt.runToCompletion(fn, args, fuel);
    const b = fn as Builtin;
    if (b.special || args.length < b.minArity || args.length > b.maxArity) {
      throw new kernel.RtfsError('host', `capability ${cap}: cannot call core function ${b.name} with ${args.length} argument(s) directly`, req.pos, undefined, 'wrap it in (fn [& args] ...)');
    }
    return b.fn(args);
  };
}

const NO_HOST_HINT = 'pass --host FILE with a map of mock capabilities, e.g. {"svc.get" (fn [& args] ...)}, or run the plan with ccos';

/** A host error without --host gets a hint (the kernel's own hint does not survive the machine). */
function withNoHostHint(kernel: Kernel, e: unknown): unknown {
  if (e instanceof kernel.RtfsError && e.code === 'host' && !e.hint && e.message.startsWith('no host to run capability')) {
    return new kernel.RtfsError(e.code, e.message, e.pos, e.data, NO_HOST_HINT);
  }
  return e;
}

function traceRequests(kernel: Kernel, requests: HostRequest[]): void {
  for (const r of requests) {
    const where = r.pos ? ` at ${r.pos.file}:${r.pos.line}:${r.pos.col}` : '';
    const path = r.stepPath.length > 0 ? ` step: ${r.stepPath.join(' > ')}` : '';
    let what: string;
    if (r.kind === 'call') what = `call ${r.capability} args: ${kernel.prStr(kernel.List<Value>(r.args))}`;
    else if (r.kind === 'step-start') what = `step-start ${JSON.stringify(r.name)}`;
    else if (r.kind === 'contract') what = `contract ${r.phase} args: ${kernel.prStr(kernel.List<Value>(r.args))}`;
    else what = `step-end ${JSON.stringify(r.name)} ${r.outcome.ok ? `ok: ${kernel.prStr(r.outcome.value)}` : `error: ${r.outcome.error.message}`}`;
    process.stderr.write(`[trace] ${what}${path}${where}\n`);
  }
}

// -------------------------------------------------------------------------------------------------
// Commands

async function cmdEval(args: string[]): Promise<number> {
  const parsed = parse('eval', args, {
    expr: { type: 'string', short: 'e' },
    host: { type: 'string' },
    fuel: { type: 'string' },
    roundtrip: { type: 'boolean' },
    json: { type: 'boolean' },
    trace: { type: 'boolean' },
  });
  const positionals = parsed.positionals;
  const values = parsed.values as { expr?: string; host?: string; fuel?: string; roundtrip?: boolean; json?: boolean; trace?: boolean; help?: boolean };
  if (values.help) {
    process.stdout.write(`${EVAL_HELP}\n`);
    return 0;
  }
  if (values.expr !== undefined && positionals.length > 0) throw new UsageError('give either -e EXPR or a FILE, not both', 'eval');
  if (values.expr === undefined && positionals.length === 0) throw new UsageError('nothing to evaluate: give -e EXPR or a FILE', 'eval');
  if (positionals.length > 1) throw new UsageError(`expected one FILE, got ${positionals.length}: ${positionals.join(' ')}`, 'eval');
  const fuel = parseFuel(values.fuel, 'eval');

  const kernel: Kernel = await import('../rtfs/index.js');
  const sources: Sources = new Map();
  try {
    const file = values.expr !== undefined ? '<expr>' : positionals[0] === '-' ? '<stdin>' : positionals[0];
    const source = values.expr ?? readSource(kernel, positionals[0]);
    sources.set(file, source);
    const onCall = values.host !== undefined ? loadHost(kernel, values.host, sources, fuel) : undefined;
    const value = kernel.evaluate(source, {
      file,
      onCall,
      fuel,
      roundtrip: values.roundtrip === true,
      onSuspend: values.trace ? (reqs) => traceRequests(kernel, reqs) : undefined,
    });
    const printed = kernel.prStr(value);
    process.stdout.write(values.json ? `${JSON.stringify({ ok: true, value: printed })}\n` : `${printed}\n`);
    return 0;
  } catch (err) {
    const e = values.host === undefined ? withNoHostHint(kernel, err) : err;
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ ok: false, error: errorJson(kernel, e) })}\n`);
      if (isInternal(kernel, e)) printError(kernel, e, sources);
    } else printError(kernel, e, sources);
    return 1;
  }
}

async function cmdCheck(args: string[]): Promise<number> {
  const { values, positionals } = parse('check', args, { json: { type: 'boolean' } });
  if (values.help) {
    process.stdout.write(`${CHECK_HELP}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'check needs a FILE' : `expected one FILE, got ${positionals.length}`, 'check');
  const path = positionals[0];
  const file = path === '-' ? '<stdin>' : path;
  const [kernel, { checkProgram }] = await Promise.all([import('../rtfs/index.js'), import('../rtfs/check.js')]);
  let source: string;
  try {
    source = readSource(kernel, path);
  } catch (e) {
    if (values.json) process.stdout.write(`${JSON.stringify({ file, ok: false, diagnostics: [{ severity: 'error', ...errorJson(kernel, e) }], capabilities: [] })}\n`);
    else printError(kernel, e, new Map());
    return 1;
  }
  const result = checkProgram(source, file);
  const errors = result.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = result.diagnostics.length - errors;
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ file, ok: errors === 0, diagnostics: result.diagnostics, capabilities: result.capabilities, dynamicCapabilities: result.dynamicCapabilities })}\n`,
    );
    return errors > 0 ? 1 : 0;
  }
  for (const d of result.diagnostics) {
    const src = d.file === file ? source : undefined;
    process.stdout.write(`${kernel.formatDiagnostic({ code: d.code, message: d.message, pos: { file: d.file, line: d.line, col: d.col }, hint: d.hint }, src, d.severity)}\n\n`);
  }
  const ids = [...new Set(result.capabilities.map((c) => c.id))].sort();
  let caps = ids.length > 0 ? ids.map((id) => `:${id}`).join(', ') : 'none';
  if (result.dynamicCapabilities) caps += ' (dynamic capability ids present)';
  const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`;
  process.stdout.write(`${file}: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}\n`);
  process.stdout.write(`capabilities: ${caps}\n`);
  return errors > 0 ? 1 : 0;
}

async function cmdRepl(args: string[]): Promise<number> {
  const parsed = parse('repl', args, { host: { type: 'string' }, fuel: { type: 'string' } });
  const positionals = parsed.positionals;
  const values = parsed.values as { host?: string; fuel?: string; help?: boolean };
  if (values.help) {
    process.stdout.write(`${REPL_HELP}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`repl takes no arguments, got ${positionals.join(' ')}`, 'repl');
  const fuel = parseFuel(values.fuel, 'repl');
  const kernel: Kernel = await import('../rtfs/index.js');
  const sources: Sources = new Map();
  let onCall: CallHandler | undefined;
  if (values.host !== undefined) {
    try {
      onCall = loadHost(kernel, values.host, sources, fuel);
    } catch (e) {
      printError(kernel, e, sources);
      return 1;
    }
  }
  const { runRepl } = await import('./rtfs-repl.js');
  return runRepl({ kernel, onCall, fuel });
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  try {
    switch (first) {
      case undefined:
        process.stderr.write(`${MAIN_HELP}\n`);
        return 2;
      case '-h':
      case '--help':
        process.stdout.write(`${MAIN_HELP}\n`);
        return 0;
      case 'help': {
        const topic = rest[0];
        if (topic === undefined) process.stdout.write(`${MAIN_HELP}\n`);
        else if (HELP[topic]) process.stdout.write(`${HELP[topic]}\n`);
        else throw new UsageError(`no help for unknown command \`${topic}\` (commands: eval, check, repl)`);
        return 0;
      }
      case '-v':
      case '--version':
        process.stdout.write(`rtfs ${readVersion()}\n`);
        return 0;
      case 'eval':
        return await cmdEval(rest);
      case 'check':
        return await cmdCheck(rest);
      case 'repl':
        return await cmdRepl(rest);
      default:
        if (first.startsWith('-')) throw new UsageError(`unknown option \`${first}\``);
        throw new UsageError(`unknown command \`${first}\` (commands: eval, check, repl, help)`);
    }
  } catch (e) {
    if (e instanceof UsageError) return usageFail(e);
    process.stderr.write(`rtfs: internal error: ${e instanceof Error ? e.message : String(e)}\nthis is a bug in rtfs; please report it\n`);
    if (e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return 70;
  }
}

process.exitCode = await main(process.argv.slice(2));
