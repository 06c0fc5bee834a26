#!/usr/bin/env node
/**
 * The `ccos` command-line tool: run, resume, replay and cancel plans; inspect runs, the causal
 * chain, capabilities and intents; call a capability through the same gate as plans.
 *
 * Owns: argument parsing, exit codes (0 ok, 1 failure, 2 usage error, 3 paused, 70 internal
 * error), the text and `--json` output of every command, and asking a person on a terminal when a
 * run waits for an answer.
 * Must never: reach a capability except through the library's gate (`Ccos.run/resume/call`), print
 * a stack trace for a user error, or load the runtime before a command needs it (`--help` stays
 * fast).
 */
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Action, Ccos, RunResult } from '../ccos/index.js';
import type { Value } from '../rtfs/index.js';

type Lib = typeof import('../ccos/index.js');
type Kernel = typeof import('../rtfs/index.js');
type Format = typeof import('./ccos-format.js');

const EXIT_OK = 0;
const EXIT_FAIL = 1;
const EXIT_USAGE = 2;
const EXIT_PAUSED = 3;
const EXIT_INTERNAL = 70;

// -------------------------------------------------------------------------------------------------
// Usage texts

const GLOBAL_OPTS = `Global options (every command):
  --data-dir DIR     the data directory (default: $CCOS_HOME, else ./.ccos)
  --json             print one JSON object on stdout (for scripts)
  -h, --help         show help`;

const MAIN_HELP = `ccos — run RTFS plans under governance, with a tamper-evident causal chain

Usage:
  ccos run FILE [--input k=v]... [options]   run a plan
  ccos resume RUN|CP [--answer V|--fail M]   continue a paused run
  ccos replay RUN                            re-execute a run from its journal, no effects
  ccos cancel RUN                            cancel a paused or running run
  ccos runs list|show                        list runs, show one with its step tree
  ccos chain show|verify|export              read, verify and export the causal chain
  ccos caps list|show|add                    capabilities: list, show a manifest, add RTFS ones
  ccos intents list|show|create|relate|status  the intent graph
  ccos call CAP [ARGS...]                    call one capability through the gate
  ccos help [COMMAND]                        show help (also: ccos COMMAND --help)
  ccos --version                             print the version

${GLOBAL_OPTS}

Examples:
  ccos run plan.rtfs --input n=5
  ccos resume run-1f2e... --answer '"bob"'
  ccos runs show run-1f2e
  ccos chain verify
  ccos call ccos.echo '{:a 1}'

Exit codes: 0 ok, 1 failure, 2 usage error, 3 paused (waiting), 70 internal error.`;

const RUN_OUTPUT = `Output: the result (printed as RTFS) on stdout and "run RUN-ID completed" on stderr. On a
terminal, a live step tree shows steps and calls as they happen. A failure prints a diagnostic
(file:line:col) on stderr. A pause prints what the run waits for and the exact resume command;
on a terminal, a question (ccos.user.ask) is asked at once and the run continues.
With --json: {"ok","runId","status","value","valueJson","error","waiting","checkpoint","resume"}.

Exit codes: 0 completed, 1 failed or cancelled, 2 usage error, 3 paused.`;

const RUN_HELP = `ccos run — run a plan file

Usage:
  ccos run FILE [options]

Options:
  --input k=v          bind (:k input) in the plan; v is read as RTFS data (5, "x", :kw, [1 2],
                       {:a 1}); text that is not RTFS data is taken as a string. Repeatable.
  --input-file F       inputs from a file: F.json (an object) or F.rtfs (a map); --input overrides
  --fuel N             budget of pure computation (function calls + loop iterations)
  --allow PATTERN      capability ids the run may call (* wildcard); repeatable
  --deny PATTERN       capability ids the run may never call; repeatable
  --allow-host HOST    a host ccos.http.fetch may reach; repeatable
  --workspace DIR      root directory of ccos.fs.* (default: the current directory)
  --strict             fsync before a call's result is used (durability strict)
  --intent ID          link the run to an intent

${GLOBAL_OPTS}

${RUN_OUTPUT}

Examples:
  ccos run plan.rtfs --input n=5 --input name=bob
  ccos run deploy.rtfs --deny 'ccos.http.*' --json`;

const RESUME_HELP = `ccos resume — continue a paused or interrupted run

Usage:
  ccos resume RUN|CHECKPOINT [options]

RUN may be a unique prefix of a run id; CHECKPOINT is a cp-... id (resume from that point).

Options:
  --answer VALUE       the answer to the call the run waits for (read as RTFS data, else a string)
  --fail MESSAGE       fail that call instead, with this message
  --retry-unknown      run again calls whose outcome is unknown (you know they did not happen)
  --allow-host HOST    a host ccos.http.fetch may reach; repeatable
  --workspace DIR      root directory of ccos.fs.*
  --strict             fsync before a call's result is used

${GLOBAL_OPTS}

${RUN_OUTPUT}

Example:
  ccos resume run-1f2e --answer '"bob"'`;

const REPLAY_HELP = `ccos replay — re-execute a run from its journal, with no effects

Prints "identical (N requests)" when the plan asks exactly what the journal recorded and ends
the same way, else "DIVERGED: ..." (exit 1).

Usage:
  ccos replay RUN

${GLOBAL_OPTS}`;

const CANCEL_HELP = `ccos cancel — cancel a run

A paused run is cancelled at once; a running one at its next request.

Usage:
  ccos cancel RUN

${GLOBAL_OPTS}`;

const RUNS_HELP = `ccos runs — the runs of this data directory

Usage:
  ccos runs list [--status S] [--limit N]   newest first: id, status, file, created, waiting
  ccos runs show RUN                       status, file, inputs, result or error, waiting,
                                           checkpoint, and the step tree with its calls

${GLOBAL_OPTS}`;

const RUNS_LIST_HELP = `ccos runs list — list runs, newest first

Usage:
  ccos runs list [--status S] [--limit N]

Options:
  --status S     only runs with this status (running, paused, completed, failed, cancelled)
  --limit N      at most N runs (default 1000)

${GLOBAL_OPTS}

With --json: {"ok":true,"runs":[{"id","planId","intentId","file","status","created","updated",
"checkpoint","waiting","error"}]}`;

const RUNS_SHOW_HELP = `ccos runs show — one run in detail

Prints status, source file, inputs, the result or error, what it waits for, its checkpoint, and
the step tree rebuilt from its chain actions, with durations and the calls with args/results.

Usage:
  ccos runs show RUN

${GLOBAL_OPTS}

With --json: {"ok":true,"run":{...,"inputs","value","valueJson","steps":[...],"actions":N}}`;

const CHAIN_HELP = `ccos chain — the causal chain (tamper-evident record of every action)

Usage:
  ccos chain show [--run R] [--limit N]    one line per action
  ccos chain verify                        check hashes, links and seals
  ccos chain export [--run R] [--out F]    JSON Lines, one full action per line

${GLOBAL_OPTS}`;

const CHAIN_SHOW_HELP = `ccos chain show — one line per action: seq, time, type, run, step path, summary

Usage:
  ccos chain show [--run R] [--limit N]

Options:
  --run R        only the actions of run R (a unique prefix is enough)
  --limit N      only the last N actions

${GLOBAL_OPTS}`;

const CHAIN_VERIFY_HELP = `ccos chain verify — verify the whole chain

Recomputes every action's hash and link and checks every seal's signature. Prints
"ok: N actions, M seals", or each problem with the sequence number of the action (exit 1).

Usage:
  ccos chain verify

${GLOBAL_OPTS}`;

const CHAIN_EXPORT_HELP = `ccos chain export — export actions as JSON Lines

Each line is one full action: seq, id, parentId, runId, planId, intentId, stepPath, type, time,
data, costUsd, durationMs, prevHash, hash.

Usage:
  ccos chain export [--run R] [--out FILE]

Options:
  --run R        only the actions of run R
  --out FILE     write to FILE instead of stdout

${GLOBAL_OPTS}`;

const CAPS_HELP = `ccos caps — capabilities

Usage:
  ccos caps list            id, version, risk, provider, description
  ccos caps show ID         the manifest of one capability
  ccos caps add FILE.rtfs   register the (capability ...) definitions of an RTFS file

${GLOBAL_OPTS}`;

const CAPS_LIST_HELP = `ccos caps list — list registered capabilities

Usage:
  ccos caps list

${GLOBAL_OPTS}`;

const CAPS_SHOW_HELP = `ccos caps show — show a capability's manifest

Usage:
  ccos caps show ID

${GLOBAL_OPTS}`;

const CAPS_ADD_HELP = `ccos caps add — register the capabilities defined in an RTFS file

The file's (capability :id {manifest} (fn [input] ...)) definitions are registered and
persisted: later runs in any process can call them. Their own calls go through the gate.

Usage:
  ccos caps add FILE.rtfs

Example file:
  (capability :demo.double {:description "doubles" :input [:map [:x :int]] :output :int}
    (fn [{:keys [x]}] (* 2 x)))

${GLOBAL_OPTS}`;

const INTENTS_HELP = `ccos intents — the intent graph (goals, constraints, relations, linked runs)

Usage:
  ccos intents list
  ccos intents show ID
  ccos intents create GOAL [--constraint k=v]... [--success TEXT]
  ccos intents relate FROM TO RELATION    depends-on, is-subgoal-of, conflicts-with, enables, related-to
  ccos intents status ID STATUS           Active, Executing, Completed, Failed, Suspended, Archived

${GLOBAL_OPTS}`;

const INTENTS_LIST_HELP = `ccos intents list — list intents, newest first

Usage:
  ccos intents list

${GLOBAL_OPTS}`;

const INTENTS_SHOW_HELP = `ccos intents show — one intent: goal, status, constraints, success criteria, relations, runs

Usage:
  ccos intents show ID

${GLOBAL_OPTS}`;

const INTENTS_CREATE_HELP = `ccos intents create — create an intent

Usage:
  ccos intents create GOAL [--constraint k=v]... [--success TEXT]

Options:
  --constraint k=v   a constraint; v is read as RTFS data, else taken as a string. Repeatable.
  --success TEXT     the success criteria

${GLOBAL_OPTS}

Example:
  ccos intents create "cut p99 latency" --constraint max-cost=100 --success "p99 < 200ms"`;

const INTENTS_RELATE_HELP = `ccos intents relate — relate two intents

Usage:
  ccos intents relate FROM TO RELATION

RELATION: depends-on, is-subgoal-of, conflicts-with, enables, related-to

${GLOBAL_OPTS}`;

const INTENTS_STATUS_HELP = `ccos intents status — set an intent's status

Usage:
  ccos intents status ID STATUS

STATUS: Active, Executing, Completed, Failed, Suspended, Archived

${GLOBAL_OPTS}`;

const CALL_HELP = `ccos call — call one capability through the gate

The call runs as a one-call plan: it is decided by policy, journaled and recorded on the chain
like any call of a plan.

Usage:
  ccos call CAP [ARGS...] [options]

ARGS are RTFS source text, joined with spaces: ccos call ccos.echo '{:a 1}'

Options:
  --allow-host HOST    a host ccos.http.fetch may reach; repeatable
  --workspace DIR      root directory of ccos.fs.*
  --strict             fsync before a call's result is used

${GLOBAL_OPTS}

${RUN_OUTPUT}

Examples:
  ccos call ccos.echo '{:a 1}'
  ccos call ccos.state.counter.get '"c"'`;

// -------------------------------------------------------------------------------------------------
// Errors and small helpers

class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

type OptionSpec = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | string[] | undefined>;

interface Ctx {
  command: string;
  values: Values;
  positionals: string[];
  json: boolean;
  dataDir?: string;
}

const GLOBAL_OPTIONS: OptionSpec = {
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

function parse(command: string, args: string[], options: OptionSpec): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args, options: { ...GLOBAL_OPTIONS, ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (e) {
    const err = e as Error & { code?: string };
    const quoted = /'([^']+)'/.exec(err.message)?.[1];
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${quoted ?? ''} for \`ccos ${command}\``.replace('  ', ' '), command);
    throw new UsageError(err.message.replace(/^Option /, 'option ').replace(/\.$/, ''), command);
  }
}

const strs = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function positiveInt(s: string | undefined, what: string, command: string): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s) || Number(s) <= 0) throw new UsageError(`${what} needs a positive integer, got \`${s}\``, command);
  return Number(s);
}

function expectArgs(c: Ctx, names: string[], opts: { rest?: boolean; min?: number } = {}): string[] {
  const min = opts.min ?? names.length;
  if (c.positionals.length < min) throw new UsageError(`\`ccos ${c.command}\` needs ${names.slice(c.positionals.length, min).join(' ')}`, c.command);
  if (!opts.rest && c.positionals.length > names.length) throw new UsageError(`unexpected argument \`${c.positionals[names.length]}\` for \`ccos ${c.command}\``, c.command);
  return c.positionals;
}

const write = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
};
const writeErr = (s: string): void => {
  process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);
};
const emit = (o: unknown): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

// Lazily loaded modules (startup stays fast for --help).
let lib: Lib | undefined;
let kernel: Kernel | undefined;
let fmt: Format | undefined;
const opened: Ccos[] = [];
/** Source texts by file name, for diagnostics with a caret excerpt. */
const sources = new Map<string, string>();

async function load(): Promise<{ lib: Lib; kernel: Kernel; fmt: Format }> {
  if (!lib || !kernel || !fmt) [lib, kernel, fmt] = await Promise.all([import('../ccos/index.js'), import('../rtfs/index.js'), import('./ccos-format.js')]);
  return { lib, kernel, fmt };
}

async function open(c: Ctx, o: { mustExist?: boolean; workspace?: string; allowHosts?: string[]; strict?: boolean } = {}): Promise<{ ccos: Ccos; lib: Lib; kernel: Kernel; fmt: Format }> {
  const m = await load();
  const ccos = m.lib.openCcos({ dataDir: c.dataDir, mustExist: o.mustExist, workspaceRoot: o.workspace, allowedHosts: o.allowHosts, durability: o.strict ? 'strict' : 'normal' });
  opened.push(ccos);
  return { ccos, ...m };
}

/** RTFS data reads as itself; anything else (symbols, code, several forms, bad syntax) is a string. */
function readLoose(k: Kernel, text: string): Value {
  let forms: Value[];
  try {
    forms = k.readAll(text, '<input>');
  } catch {
    return text;
  }
  return forms.length === 1 && isData(k, forms[0]) ? forms[0] : text;
}

function isData(k: Kernel, v: unknown): boolean {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string') return true;
  if (v instanceof k.RFloat || v instanceof k.Keyword) return true;
  if (k.isVector(v) || k.isSet(v)) return [...(v as Iterable<unknown>)].every((x) => isData(k, x));
  if (k.isMap(v)) {
    for (const [a, b] of v) if (!isData(k, a) || !isData(k, b)) return false;
    return true;
  }
  return false;
}

function splitKv(s: string, flag: string, command: string): [string, string] {
  const i = s.indexOf('=');
  if (i <= 0) throw new UsageError(`${flag} needs k=v, got \`${s}\``, command);
  return [s.slice(0, i).replace(/^:/, ''), s.slice(i + 1)];
}

function readTextFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new lib!.CcosError('file', `cannot read ${what} ${file}: ${why}`);
  }
}

/** Resolves a run id or a unique prefix of one. */
function resolveRun(ccos: Ccos, id: string): string {
  if (ccos.orchestrator.runRow(id)) return id;
  const all = ccos.runs({ limit: 1_000_000 }).map((r) => r.id);
  let hits = all.filter((r) => r.startsWith(id));
  if (hits.length === 0) hits = all.filter((r) => r.startsWith(`run-${id}`));
  if (hits.length === 1) return hits[0];
  if (hits.length > 1) throw new lib!.CcosError('ambiguous', `${id} is the start of ${hits.length} run ids`, { hint: 'give more characters of the run id' });
  throw new lib!.CcosError('not-found', `no run ${id}`, { hint: 'list runs with `ccos runs list`' });
}

function dataDirArgs(c: Ctx): string {
  return c.dataDir !== undefined ? ` --data-dir ${fmt!.shellQuote(path.resolve(c.dataDir))}` : '';
}

// -------------------------------------------------------------------------------------------------
// Printing errors

type ErrorInfo = { code: string; message: string; hint?: string; file?: string; line?: number; col?: number };

function errorJson(e: ErrorInfo): Record<string, unknown> {
  return { code: e.code, message: e.message, hint: e.hint ?? null, file: e.file ?? null, line: e.line ?? null, col: e.col ?? null };
}

function sourceOf(file: string | undefined): string | undefined {
  if (!file) return undefined;
  if (sources.has(file)) return sources.get(file);
  if (!file.startsWith('<') && existsSync(file)) {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function diagnostic(e: ErrorInfo): string {
  const pos = e.file && e.line ? { file: e.file, line: e.line, col: e.col ?? 1 } : undefined;
  return kernel!.formatDiagnostic({ code: e.code, message: e.message, pos, hint: e.hint }, pos ? sourceOf(pos.file) : undefined);
}

function isUserError(e: unknown): boolean {
  return (lib !== undefined && e instanceof lib.CcosError) || (kernel !== undefined && e instanceof kernel.RtfsError && e.code !== 'internal');
}

// -------------------------------------------------------------------------------------------------
// Runs: drive, ask, report

function isSingleAnswer(waiting: unknown): waiting is { kind: 'answer'; prompt?: string; args?: string; capability?: string } {
  return typeof waiting === 'object' && waiting !== null && !Array.isArray(waiting) && (waiting as { kind?: unknown }).kind === 'answer';
}

/** Asks on the terminal; undefined when the person gives no answer (empty line, end of input). */
async function ask(question: string): Promise<string | undefined> {
  const readline = await import('node:readline');
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  return new Promise((resolve) => {
    let done = false;
    rl.on('close', () => {
      if (!done) {
        done = true;
        resolve(undefined);
      }
    });
    rl.question(`? ${question} `, (a) => {
      done = true;
      rl.close();
      resolve(a.trim() === '' ? undefined : a);
    });
  });
}

/**
 * Runs `start` with a live view on a terminal, asks interactively when the run waits for an
 * answer (terminal only), and reports the outcome. Returns the exit code.
 */
async function driveRun(c: Ctx, ccos: Ccos, start: () => Promise<RunResult>, history: Action[] = [], runId?: string): Promise<number> {
  const { liveViewFor } = await import('./ccos-live.js');
  for (;;) {
    const live = liveViewFor(c.json, { history });
    if (live && runId) live.follow(runId);
    const unsubscribe = live ? ccos.subscribe(live.onAction) : undefined;
    let r: RunResult;
    try {
      r = await start();
    } finally {
      unsubscribe?.();
      live?.stop();
    }
    if (r.status === 'paused' && !c.json && process.stdin.isTTY && process.stdout.isTTY && isSingleAnswer(r.waiting)) {
      const w = r.waiting;
      const question = w.prompt ?? `answer for ${w.capability ?? 'the waiting call'} ${w.args ?? ''}`.trim();
      const text = await ask(question);
      if (text !== undefined) {
        const answer = readLoose(kernel!, text);
        const id = r.runId;
        runId = id;
        history = ccos.chain.list({ runId: id });
        start = () => ccos.resume(id, { answer });
        continue;
      }
    }
    return report(c, r);
  }
}

function resumeCommand(c: Ctx, r: RunResult): string {
  const kinds = fmt!.waitingKinds(r.waiting);
  const base = `ccos resume ${r.runId}${dataDirArgs(c)}`;
  if (kinds.includes('outcome-unknown')) return `${base} --retry-unknown   (or --answer VALUE, or --fail MESSAGE)`;
  return `${base} --answer VALUE`;
}

function report(c: Ctx, r: RunResult): number {
  const k = kernel!;
  const { valueToPlainJson } = lib!;
  switch (r.status) {
    case 'completed': {
      const value = r.value ?? null;
      if (c.json) emit({ ok: true, runId: r.runId, status: r.status, value: k.prStr(value), valueJson: valueToPlainJson(value) });
      else {
        write(k.prStr(value));
        writeErr(`run ${r.runId} completed`);
      }
      return EXIT_OK;
    }
    case 'paused': {
      const cmd = resumeCommand(c, r);
      if (c.json) emit({ ok: false, runId: r.runId, status: r.status, waiting: r.waiting ?? null, checkpoint: r.checkpoint ?? null, resume: cmd });
      else {
        write(`run ${r.runId} paused, waiting for ${fmt!.describeWaiting(r.waiting).join('; ') || 'something'}`);
        if (r.checkpoint) write(`checkpoint: ${r.checkpoint}`);
        write(`resume with: ${cmd}`);
      }
      return EXIT_PAUSED;
    }
    case 'failed': {
      const error = r.error ?? { code: 'failed', message: 'the run failed' };
      if (c.json) emit({ ok: false, runId: r.runId, status: r.status, error: errorJson(error) });
      else {
        writeErr(diagnostic(error));
        writeErr(`run ${r.runId} failed`);
      }
      return EXIT_FAIL;
    }
    default: {
      if (c.json) emit({ ok: false, runId: r.runId, status: r.status });
      else writeErr(`run ${r.runId} ${r.status}`);
      return EXIT_FAIL;
    }
  }
}

// -------------------------------------------------------------------------------------------------
// Commands

async function cmdRun(c: Ctx): Promise<number> {
  const [file] = expectArgs(c, ['FILE']);
  const fuel = positiveInt(str(c.values.fuel), '--fuel', c.command);
  const { ccos, kernel: k, lib: l } = await open(c, { workspace: str(c.values.workspace), allowHosts: strs(c.values['allow-host']), strict: c.values.strict === true });
  const source = readTextFile(file, 'plan');
  sources.set(file, source);
  const inputs: Record<string, Value> = {};
  const inputFile = str(c.values['input-file']);
  if (inputFile !== undefined) {
    const text = readTextFile(inputFile, 'input file');
    if (inputFile.endsWith('.json')) {
      let j: unknown;
      try {
        j = JSON.parse(text);
      } catch (e) {
        throw new l.CcosError('invalid-input', `${inputFile} is not valid JSON: ${(e as Error).message}`);
      }
      if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new l.CcosError('invalid-input', `${inputFile} must hold a JSON object of inputs`);
      for (const [key, v] of Object.entries(j)) inputs[key] = l.plainJsonToValue(v);
    } else {
      sources.set(inputFile, text);
      const form = k.readOne(text, inputFile);
      if (!k.isMap(form) || !isData(k, form)) throw new l.CcosError('invalid-input', `${inputFile} must hold one RTFS map of data, like {:n 5 :name "x"}`);
      for (const [key, v] of form) {
        const name = key instanceof k.Keyword ? key.name : typeof key === 'string' ? key : undefined;
        if (name === undefined) throw new l.CcosError('invalid-input', `${inputFile}: input names must be keywords or strings, found ${k.prStr(key)}`);
        inputs[name] = v;
      }
    }
  }
  for (const kv of strs(c.values.input)) {
    const [key, v] = splitKv(kv, '--input', c.command);
    inputs[key] = readLoose(k, v);
  }
  const intentId = str(c.values.intent);
  if (intentId !== undefined && !ccos.intents.get(intentId)) throw new l.CcosError('not-found', `no intent ${intentId}`, { hint: 'list intents with `ccos intents list`' });
  const opts = { inputs, fuel, allow: strs(c.values.allow), deny: strs(c.values.deny), intentId };
  return driveRun(c, ccos, () => ccos.run(source, { ...opts, file }));
}

async function cmdResume(c: Ctx): Promise<number> {
  const [id] = expectArgs(c, ['RUN']);
  if (c.values.answer !== undefined && c.values.fail !== undefined) throw new UsageError('give either --answer or --fail, not both', c.command);
  const { ccos, kernel: k } = await open(c, { mustExist: true, workspace: str(c.values.workspace), allowHosts: strs(c.values['allow-host']), strict: c.values.strict === true });
  const target = id.startsWith('cp-') ? id : resolveRun(ccos, id);
  let runId = target;
  if (target.startsWith('cp-')) {
    const row = ccos.store.db.prepare('SELECT run_id FROM checkpoints WHERE id = ?').get(target) as { run_id: string } | undefined;
    if (row) runId = row.run_id;
  }
  const details = ccos.runDetails(runId);
  if (details) sources.set(details.file, details.source);
  const answerText = str(c.values.answer);
  const opts = { answer: answerText !== undefined ? readLoose(k, answerText) : undefined, fail: str(c.values.fail), retryUnknown: c.values['retry-unknown'] === true };
  const history = details ? ccos.chain.list({ runId }) : [];
  return driveRun(c, ccos, () => ccos.resume(target, opts), history, details ? runId : undefined);
}

async function cmdReplay(c: Ctx): Promise<number> {
  const [id] = expectArgs(c, ['RUN']);
  const { ccos } = await open(c, { mustExist: true });
  const runId = resolveRun(ccos, id);
  const r = ccos.replay(runId);
  if (c.json) emit({ ok: r.identical, runId, ...r });
  else if (r.identical) write(`identical (${r.requests} requests)${r.result ? `: ${r.result}` : ''}`);
  else write(`DIVERGED: ${r.divergence ?? 'unknown divergence'} (after ${r.requests} requests)`);
  return r.identical ? EXIT_OK : EXIT_FAIL;
}

async function cmdCancel(c: Ctx): Promise<number> {
  const [id] = expectArgs(c, ['RUN']);
  const { ccos } = await open(c, { mustExist: true });
  const runId = resolveRun(ccos, id);
  // A cancel runs the run's compensations (newest first), then it ends as cancelled.
  const r: RunResult = await ccos.cancel(runId);
  if (r.status !== 'cancelled') return report(c, r);
  if (c.json) emit({ ok: true, runId: r.runId, status: r.status });
  else write(`run ${r.runId} cancelled`);
  return EXIT_OK;
}

async function cmdRunsList(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const limit = positiveInt(str(c.values.limit), '--limit', c.command);
  const { ccos, fmt: f } = await open(c, { mustExist: true });
  const runs = ccos.runs({ status: str(c.values.status), limit });
  if (c.json) {
    emit({ ok: true, runs });
    return EXIT_OK;
  }
  if (runs.length === 0) {
    write(c.values.status ? `no ${String(c.values.status)} runs` : 'no runs');
    return EXIT_OK;
  }
  write(f.table(['ID', 'STATUS', 'FILE', 'CREATED', 'WAITING FOR'], runs.map((r) => [r.id, r.status, f.short(r.file, 30), r.created.slice(0, 19).replace('T', ' '), f.waitingCell(r.waiting)])));
  return EXIT_OK;
}

async function cmdRunsShow(c: Ctx): Promise<number> {
  const [id] = expectArgs(c, ['RUN']);
  const { ccos, fmt: f, kernel: k, lib: l } = await open(c, { mustExist: true });
  const d = ccos.runDetails(resolveRun(ccos, id))!;
  const tree = f.stepTreeOf(d.actions);
  if (c.json) {
    const { actions, result, ...rest } = d;
    emit({ ok: true, run: { ...rest, value: result === null ? null : k.prStr(result), valueJson: result === null ? null : l.valueToPlainJson(result), steps: tree.toJson(), actions: actions.length } });
    return EXIT_OK;
  }
  const rows: [string, string][] = [
    ['run', d.id],
    ['status', d.status],
    ['file', d.file],
    ['plan', d.planId],
  ];
  if (d.intentId) rows.push(['intent', d.intentId]);
  rows.push(['created', d.created], ['updated', d.updated], ['inputs', f.short(d.inputs, 200)]);
  if (d.status === 'completed' && d.result !== undefined) rows.push(['result', f.short(k.prStr(d.result), 400)]);
  if (d.error) {
    const e = d.error as ErrorInfo;
    rows.push(['error', `${e.code}: ${e.message}${e.file && e.line ? ` (at ${e.file}:${e.line}:${e.col ?? 1})` : ''}`]);
  }
  if (d.waiting) rows.push(['waiting for', f.describeWaiting(d.waiting).join('; ')]);
  if (d.checkpoint) rows.push(['checkpoint', d.checkpoint]);
  rows.push(['actions', String(d.actions.length)]);
  for (const [name, v] of rows) write(`${`${name}:`.padEnd(13)}${v}`);
  const lines = tree.render({ width: process.stdout.columns || 100 });
  write(lines.length ? `steps:\n${lines.map((l2) => `  ${l2}`).join('\n')}` : 'steps:       (none)');
  if (d.status === 'paused') write(`resume with: ${resumeCommand(c, { runId: d.id, status: 'paused', waiting: d.waiting as never })}`);
  return EXIT_OK;
}

async function cmdChainShow(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const limit = positiveInt(str(c.values.limit), '--limit', c.command);
  const { ccos, fmt: f } = await open(c, { mustExist: true });
  const runId = str(c.values.run) !== undefined ? resolveRun(ccos, str(c.values.run)!) : undefined;
  let actions = ccos.chain.list({ runId });
  if (limit !== undefined) actions = actions.slice(-limit);
  if (c.json) emit({ ok: true, actions });
  else if (actions.length === 0) write('no actions');
  else write(actions.map(f.actionLine).join('\n'));
  return EXIT_OK;
}

async function cmdChainVerify(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const { ccos } = await open(c, { mustExist: true });
  const r = ccos.verifyChain();
  if (c.json) emit({ ...r });
  else if (r.ok) write(`ok: ${r.actions} actions, ${r.seals} seals`);
  else {
    for (const p of r.problems) write(`seq ${p.seq}: ${p.problem}`);
    write(`NOT OK: ${r.problems.length} problem(s) in ${r.actions} actions, ${r.seals} seals; actions are intact up to the seal at seq ${r.sealed}`);
  }
  return r.ok ? EXIT_OK : EXIT_FAIL;
}

async function cmdChainExport(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const { ccos, lib: l } = await open(c, { mustExist: true });
  const runId = str(c.values.run) !== undefined ? resolveRun(ccos, str(c.values.run)!) : undefined;
  const out = str(c.values.out);
  let fd = 1;
  if (out !== undefined) {
    try {
      fd = openSync(out, 'w');
    } catch (e) {
      throw new l.CcosError('file', `cannot write ${out}: ${(e as Error).message}`);
    }
  }
  let n = 0;
  try {
    const actions = runId ? ccos.chain.list({ runId }) : ccos.chain.iterate();
    let buf = '';
    for (const a of actions) {
      buf += `${JSON.stringify(a)}\n`;
      n++;
      if (buf.length > 1 << 16) {
        writeSync(fd, buf);
        buf = '';
      }
    }
    if (buf) writeSync(fd, buf);
  } finally {
    if (fd !== 1) closeSync(fd);
  }
  if (out !== undefined) {
    if (c.json) emit({ ok: true, file: out, actions: n });
    else writeErr(`exported ${n} actions to ${out}`);
  }
  return EXIT_OK;
}

async function cmdCapsList(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const { ccos, fmt: f } = await open(c);
  const caps = ccos.registry.list();
  if (c.json) {
    emit({ ok: true, capabilities: caps.map((m) => ({ id: m.id, version: m.version, risk: m.risk, provider: m.provider.kind, description: m.description })) });
    return EXIT_OK;
  }
  write(f.table(['ID', 'VERSION', 'RISK', 'PROVIDER', 'DESCRIPTION'], caps.map((m) => [m.id, m.version, m.risk, m.provider.kind, f.short(m.description, 70)])));
  return EXIT_OK;
}

async function cmdCapsShow(c: Ctx): Promise<number> {
  const [id] = expectArgs(c, ['ID']);
  const { ccos, lib: l } = await open(c);
  const m = ccos.registry.manifest(id.replace(/^:/, ''));
  if (!m) throw new l.CcosError('not-found', `no capability ${id}`, { hint: 'list capabilities with `ccos caps list`' });
  if (c.json) {
    emit({ ok: true, capability: m });
    return EXIT_OK;
  }
  const schema = (s: unknown): string => (s && typeof s === 'object' && 'rtfs' in s ? String((s as { rtfs: string }).rtfs) : JSON.stringify((s as { jsonSchema?: unknown })?.jsonSchema ?? s));
  const rows: [string, string][] = [
    ['id', m.id],
    ['version', m.version],
    ['description', m.description],
    ['risk', m.risk],
    ['provider', m.provider.kind === 'rtfs' ? `rtfs (${m.provider.file})` : m.provider.kind],
  ];
  if (m.input) rows.push(['input', schema(m.input)]);
  if (m.params) rows.push(['params', m.params.map(schema).join(', ')]);
  if (m.output) rows.push(['output', schema(m.output)]);
  rows.push(['effects', m.effects.length ? m.effects.map((e) => JSON.stringify(e)).join(', ') : 'none']);
  rows.push(['idempotent', String(m.idempotent)], ['deterministic', String(m.deterministic)]);
  if (m.cost?.usdPerCall !== undefined) rows.push(['cost', `$${m.cost.usdPerCall} per call`]);
  if (m.timeoutMs !== undefined) rows.push(['timeout', `${m.timeoutMs}ms`]);
  if (m.region) rows.push(['region', m.region]);
  for (const [name, v] of rows) write(`${`${name}:`.padEnd(15)}${v}`);
  return EXIT_OK;
}

async function cmdCapsAdd(c: Ctx): Promise<number> {
  const [file] = expectArgs(c, ['FILE']);
  const { ccos } = await open(c);
  if (existsSync(file)) sources.set(path.resolve(file), readTextFile(file, 'capability file'));
  const added = ccos.addRtfsCapabilities(file);
  if (c.json) emit({ ok: true, capabilities: added.map((m) => m.id) });
  else for (const m of added) write(`added ${m.id}`);
  return EXIT_OK;
}

function intentJson(ccos: Ccos, id: string): Record<string, unknown> | undefined {
  const i = ccos.intents.get(id);
  if (!i) return undefined;
  return { ...i, relations: ccos.intents.relations(id), runs: ccos.intents.runs(id) };
}

async function cmdIntentsList(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const { ccos, fmt: f } = await open(c, { mustExist: true });
  const intents = ccos.intents.list();
  if (c.json) emit({ ok: true, intents });
  else if (intents.length === 0) write('no intents');
  else write(f.table(['ID', 'STATUS', 'CREATED', 'GOAL'], intents.map((i) => [i.id, i.status, i.created.slice(0, 19).replace('T', ' '), f.short(i.goal, 60)])));
  return EXIT_OK;
}

async function cmdIntentsShow(c: Ctx): Promise<number> {
  const [id] = expectArgs(c, ['ID']);
  const { ccos, lib: l } = await open(c, { mustExist: true });
  const j = intentJson(ccos, id);
  if (!j) throw new l.CcosError('not-found', `no intent ${id}`, { hint: 'list intents with `ccos intents list`' });
  if (c.json) {
    emit({ ok: true, intent: j });
    return EXIT_OK;
  }
  const i = ccos.intents.get(id)!;
  write(`${'id:'.padEnd(13)}${i.id}`);
  write(`${'goal:'.padEnd(13)}${i.goal}`);
  write(`${'status:'.padEnd(13)}${i.status}`);
  write(`${'created:'.padEnd(13)}${i.created}`);
  write(`${'updated:'.padEnd(13)}${i.updated}`);
  const cons = Object.entries(i.constraints);
  write(`${'constraints:'.padEnd(13)}${cons.length ? cons.map(([k2, v]) => `${k2}=${JSON.stringify(v)}`).join(', ') : 'none'}`);
  write(`${'success:'.padEnd(13)}${i.successCriteria || '-'}`);
  const rel = ccos.intents.relations(id);
  write(`relations:${rel.length ? '' : '   none'}`);
  for (const r of rel) write(`  ${r.from === id ? 'this' : r.from} ${r.relation} ${r.to === id ? 'this' : r.to}`);
  const runs = ccos.intents.runs(id);
  write(`runs:${runs.length ? '' : '        none'}`);
  for (const r of runs) write(`  ${r.id}  ${r.status}  ${r.created}`);
  return EXIT_OK;
}

async function cmdIntentsCreate(c: Ctx): Promise<number> {
  const [goal] = expectArgs(c, ['GOAL']);
  const { ccos, kernel: k, lib: l } = await open(c);
  const constraints: Record<string, unknown> = {};
  for (const kv of strs(c.values.constraint)) {
    const [key, v] = splitKv(kv, '--constraint', c.command);
    constraints[key] = l.valueToPlainJson(readLoose(k, v));
  }
  const intent = ccos.intents.create(goal, { constraints, successCriteria: str(c.values.success) });
  if (c.json) emit({ ok: true, intent });
  else write(intent.id);
  return EXIT_OK;
}

async function cmdIntentsRelate(c: Ctx): Promise<number> {
  const [from, to, relation] = expectArgs(c, ['FROM', 'TO', 'RELATION']);
  const { ccos } = await open(c, { mustExist: true });
  ccos.intents.relate(from, to, relation as never);
  if (c.json) emit({ ok: true, from, to, relation });
  else write(`${from} ${relation} ${to}`);
  return EXIT_OK;
}

async function cmdIntentsStatus(c: Ctx): Promise<number> {
  const [id, status] = expectArgs(c, ['ID', 'STATUS']);
  const { ccos } = await open(c, { mustExist: true });
  const normalized = status.charAt(0).toUpperCase() + status.slice(1).toLowerCase();
  ccos.intents.setStatus(id, normalized as never, 'set with ccos intents status');
  if (c.json) emit({ ok: true, id, status: normalized });
  else write(`${id} ${normalized}`);
  return EXIT_OK;
}

async function cmdCall(c: Ctx): Promise<number> {
  const [cap, ...rest] = expectArgs(c, ['CAP', 'ARGS...'], { rest: true, min: 1 });
  const args = rest.join(' ');
  const { ccos } = await open(c, { workspace: str(c.values.workspace), allowHosts: strs(c.values['allow-host']), strict: c.values.strict === true });
  sources.set('<args>', args);
  sources.set('<ccos call>', `(call :${cap.replace(/^:/, '')} ${args})`);
  return driveRun(c, ccos, () => ccos.call(cap, args));
}

// -------------------------------------------------------------------------------------------------
// The command table

interface Command {
  help: string;
  options: OptionSpec;
  run(c: Ctx): Promise<number>;
}

const NODE_OPTIONS: OptionSpec = {
  'allow-host': { type: 'string', multiple: true },
  workspace: { type: 'string' },
  strict: { type: 'boolean' },
};

const COMMANDS: Record<string, Command> = {
  run: {
    help: RUN_HELP,
    options: {
      ...NODE_OPTIONS,
      input: { type: 'string', multiple: true },
      'input-file': { type: 'string' },
      fuel: { type: 'string' },
      allow: { type: 'string', multiple: true },
      deny: { type: 'string', multiple: true },
      intent: { type: 'string' },
    },
    run: cmdRun,
  },
  resume: { help: RESUME_HELP, options: { ...NODE_OPTIONS, answer: { type: 'string' }, fail: { type: 'string' }, 'retry-unknown': { type: 'boolean' } }, run: cmdResume },
  replay: { help: REPLAY_HELP, options: {}, run: cmdReplay },
  cancel: { help: CANCEL_HELP, options: {}, run: cmdCancel },
  'runs list': { help: RUNS_LIST_HELP, options: { status: { type: 'string' }, limit: { type: 'string' } }, run: cmdRunsList },
  'runs show': { help: RUNS_SHOW_HELP, options: {}, run: cmdRunsShow },
  'chain show': { help: CHAIN_SHOW_HELP, options: { run: { type: 'string' }, limit: { type: 'string' } }, run: cmdChainShow },
  'chain verify': { help: CHAIN_VERIFY_HELP, options: {}, run: cmdChainVerify },
  'chain export': { help: CHAIN_EXPORT_HELP, options: { run: { type: 'string' }, out: { type: 'string' } }, run: cmdChainExport },
  'caps list': { help: CAPS_LIST_HELP, options: {}, run: cmdCapsList },
  'caps show': { help: CAPS_SHOW_HELP, options: {}, run: cmdCapsShow },
  'caps add': { help: CAPS_ADD_HELP, options: {}, run: cmdCapsAdd },
  'intents list': { help: INTENTS_LIST_HELP, options: {}, run: cmdIntentsList },
  'intents show': { help: INTENTS_SHOW_HELP, options: {}, run: cmdIntentsShow },
  'intents create': { help: INTENTS_CREATE_HELP, options: { constraint: { type: 'string', multiple: true }, success: { type: 'string' } }, run: cmdIntentsCreate },
  'intents relate': { help: INTENTS_RELATE_HELP, options: {}, run: cmdIntentsRelate },
  'intents status': { help: INTENTS_STATUS_HELP, options: {}, run: cmdIntentsStatus },
  call: { help: CALL_HELP, options: NODE_OPTIONS, run: cmdCall },
};

const GROUPS: Record<string, string> = { runs: RUNS_HELP, chain: CHAIN_HELP, caps: CAPS_HELP, intents: INTENTS_HELP };
const TOP = ['run', 'resume', 'replay', 'cancel', 'runs', 'chain', 'caps', 'intents', 'call', 'help'];

function helpFor(words: string[]): string | undefined {
  const key = words.join(' ');
  if (key === '') return MAIN_HELP;
  return COMMANDS[key]?.help ?? (words.length === 1 ? GROUPS[key] : undefined);
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Global options written before the command word: `ccos --data-dir D runs list`. */
function splitLeadingGlobals(argv: string[]): { globals: string[]; rest: string[] } {
  const globals: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') globals.push(a);
    else if (a === '--data-dir' && i + 1 < argv.length) globals.push(a, argv[++i]);
    else if (a.startsWith('--data-dir=')) globals.push(a);
    else break;
  }
  return { globals, rest: argv.slice(i) };
}

async function main(argv: string[]): Promise<number> {
  const { globals, rest: words } = splitLeadingGlobals(argv);
  const json = globals.includes('--json') || words.includes('--json');
  const [first, ...rest] = words;
  let command: string | undefined;
  try {
    switch (first) {
      case undefined:
        writeErr(MAIN_HELP);
        return EXIT_USAGE;
      case '-h':
      case '--help':
        write(MAIN_HELP);
        return EXIT_OK;
      case '-v':
      case '--version':
        if (json) emit({ ok: true, version: readVersion() });
        else write(`ccos ${readVersion()}`);
        return EXIT_OK;
      case 'help': {
        const topic = rest.filter((w) => !w.startsWith('-'));
        const text = helpFor(topic);
        if (text === undefined) throw new UsageError(`no help for unknown command \`${topic.join(' ')}\` (commands: ${TOP.join(', ')})`);
        write(text);
        return EXIT_OK;
      }
      default:
        break;
    }
    if (first.startsWith('-')) throw new UsageError(`unknown option \`${first}\``);
    let args = rest;
    if (GROUPS[first]) {
      const sub = rest[0];
      if (sub === undefined) {
        writeErr(GROUPS[first]);
        return EXIT_USAGE;
      }
      if (sub === '-h' || sub === '--help') {
        write(GROUPS[first]);
        return EXIT_OK;
      }
      command = `${first} ${sub}`;
      if (!COMMANDS[command]) {
        const subs = Object.keys(COMMANDS).filter((k) => k.startsWith(`${first} `)).map((k) => k.split(' ')[1]);
        command = first;
        throw new UsageError(`unknown command \`ccos ${first} ${sub}\` (${first} commands: ${subs.join(', ')})`, first);
      }
      args = rest.slice(1);
    } else if (COMMANDS[first]) command = first;
    else throw new UsageError(`unknown command \`${first}\` (commands: ${TOP.join(', ')})`);
    const cmd = COMMANDS[command];
    const { values, positionals } = parse(command, [...args, ...globals], cmd.options);
    if (values.help) {
      write(cmd.help);
      return EXIT_OK;
    }
    return await cmd.run({ command, values, positionals, json: values.json === true, dataDir: str(values['data-dir']) });
  } catch (e) {
    if (e instanceof UsageError) {
      if (json) emit({ ok: false, error: { code: 'usage', message: e.message, hint: `run \`ccos ${e.command ? `${e.command} ` : ''}--help\` for usage`, file: null, line: null, col: null } });
      writeErr(`ccos: ${e.message}`);
      writeErr(`hint: run \`ccos ${e.command ? `${e.command} ` : ''}--help\` for usage`);
      return EXIT_USAGE;
    }
    if (isUserError(e)) {
      const info = lib!.describeError(e);
      if (json) emit({ ok: false, error: errorJson(info) });
      else writeErr(diagnostic(info));
      return EXIT_FAIL;
    }
    const err = e instanceof Error ? e : new Error(String(e));
    if (json) emit({ ok: false, error: { code: 'internal', message: `${err.message} (this is a bug in ccos)`, hint: null, file: null, line: null, col: null } });
    writeErr(`ccos: internal error: ${err.message}\nthis is a bug in ccos; please report it`);
    if (err.stack) writeErr(err.stack);
    return EXIT_INTERNAL;
  } finally {
    for (const c of opened.splice(0)) {
      try {
        c.close();
      } catch {
        // closing is best effort
      }
    }
  }
}

process.exitCode = await main(process.argv.slice(2));
