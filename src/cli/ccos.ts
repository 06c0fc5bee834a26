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
import type { Action, Ccos, Durability, RunResult } from '../ccos/index.js';
import type { Value } from '../rtfs/index.js';
import { readVersion } from './version.js';

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
  ccos caps add-mcp NAME -- CMD ARGS...      stage an MCP server's tools (or --url URL); approve,
  ccos caps activate-mcp NAME                then activate them (pinned; drift is blocked)
  ccos caps add-openapi NAME SPEC --base-url URL   one capability per OpenAPI operation
  ccos secrets set|list|delete               encrypted secrets (value from stdin)
  ccos mcp                                   serve CCOS as an MCP server over stdio
  ccos serve --mcp --token T [--port N]      serve MCP over HTTP on 127.0.0.1 with a bearer token
  ccos intents list|show|create|relate|status  the intent graph
  ccos call CAP [ARGS...]                    call one capability through the gate
  ccos check FILE                            admission report: capabilities, effects, approvals, cost
  ccos policy load|show                      the constitution: load or amend it, show it
  ccos approvals list|show                   approval requests
  ccos approve ID --as NAME [--resume]       approve a request (signed with the approver's key)
  ccos deny ID --as NAME --reason R          deny a request
  ccos keys create|list                      approver keys (Ed25519)
  ccos help [COMMAND]                        show help (also: ccos COMMAND --help)
  ccos --version                             print the version

${GLOBAL_OPTS}

Examples:
  ccos run plan.rtfs --input n=5
  ccos resume run-1f2e... --answer '"bob"'
  ccos runs show run-1f2e
  ccos chain verify
  ccos call ccos.echo '{:a 1}'
  ccos check plan.rtfs
  ccos run --dry-run plan.rtfs

Exit codes: 0 ok, 1 failure, 2 usage error, 3 paused (waiting), 70 internal error.`;

const RUN_OUTPUT = `Output: the result (printed as RTFS) on stdout and "run RUN-ID completed" on stderr. On a
terminal, a live step tree shows steps and calls as they happen. A failure prints a diagnostic
(file:line:col) on stderr. A pause prints what the run waits for and the exact resume command;
on a terminal, a question (ccos.user.ask) is asked at once and the run continues.
With --json: {"ok","runId","status","value","valueJson","error","waiting","checkpoint","resume"}.

Exit codes: 0 completed, 1 failed or cancelled, 2 usage error, 3 paused.`;

/** Options of every command that runs capabilities (run, resume, call). */
const EFFECT_OPTS = `  --allow-host HOST    a host ccos.http.fetch may reach; repeatable
  --workspace DIR      root directory of ccos.fs.* (default: the current directory)
  --durability LEVEL   normal (default): what is written survives the process dying;
                       strict: also a power loss, synced before a call's result is used;
                       fenced: strict, and a non-idempotent call's start is synced before its effect
  --strict             the same as --durability strict`;

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
${EFFECT_OPTS}
  --intent ID          link the run to an intent
  --dry-run            run with simulated providers in a scratch node, no effects; report the
                       predicted cost and latency against the budget, the approvals that would be
                       requested, the policy denials, the calls and the value
  --no-admission       start even when admission (see \`ccos check\`) finds errors

Before anything runs, the plan is admitted (\`ccos check\`): when admission finds errors (an
unknown capability, a high-risk call outside a saga, a critical one without contracts, a call the
constitution denies), the run does not start; the report is printed and the exit code is 1.

${GLOBAL_OPTS}

${RUN_OUTPUT}
A refused plan with --json: {"ok":false,"status":"refused","error",...,"admission":{report}}.
--dry-run with --json: {"ok","status","value","valueJson","error","predictedCostUsd",
"predictedLatencyMs","budget","calls","approvals","denials","admission","notes"}; it exits 0
when the simulated run completes, 1 when it fails or admission finds errors.

Examples:
  ccos run plan.rtfs --input n=5 --input name=bob
  ccos run deploy.rtfs --deny 'ccos.http.*' --json
  ccos run --dry-run refund.rtfs`;

const RESUME_HELP = `ccos resume — continue a paused or interrupted run

Usage:
  ccos resume RUN|CHECKPOINT [options]

RUN may be a unique start or end of a run id (ids begin with their creation time, so the end
tells recent runs apart); CHECKPOINT is a cp-... id (resume from that point).

Options:
  --answer VALUE       the answer to the call the run waits for (read as RTFS data, else a string)
  --fail MESSAGE       fail that call instead, with this message
  --retry-unknown      run again calls whose outcome is unknown (you know they did not happen)
${EFFECT_OPTS}

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
  --run R        only the actions of run R (a unique start or end of its id is enough)
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
  ccos caps add-mcp NAME -- COMMAND ARGS...   stage an MCP server's tools for approval (or --url URL)
  ccos caps activate-mcp NAME                 register the approved tools (definitions pinned)
  ccos caps mcp-servers                       MCP servers and their tools
  ccos caps add-openapi NAME SPEC --base-url URL   one capability per OpenAPI 3 operation

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
${EFFECT_OPTS}

${GLOBAL_OPTS}

${RUN_OUTPUT}

Examples:
  ccos call ccos.echo '{:a 1}'
  ccos call ccos.state.counter.get '"c"'`;

const CHECK_HELP = `ccos check — the admission report of a plan, without running it

Reads and compiles the plan, finds every capability it may call (with the place of each call) and
checks it against the manifests and the constitution in force:
  - unknown capabilities (error, rule registry.unknown)
  - a :high or :critical capability that is not idempotent, called outside the primary of a
    step.with-compensation (error, rule admission.compensation)
  - a :critical capability outside a step with :pre/:post contracts (error, admission.contracts)
  - a non-idempotent capability with a network effect and no idempotency key (warning)
  - calls the constitution denies (error) or may deny depending on arguments (warning), and the
    approvals the run will need (rules with a :when predicate are reported as conditional)
  - the estimated cost (each call site once) against the plan's :resources budget

Usage:
  ccos check FILE

${GLOBAL_OPTS}

With --json: {"ok","file","errors":[{"code","message","rule","file","line","col"}],"warnings",
"capabilities":[{"id","effects","risk","count","line","col",...}],"approvals":[{"capability",
"rule","needs","conditional"}],"denials","estimatedCostUsd","budget","constitution"}.

Exit codes: 0 admitted, 1 errors found (or the file cannot be read), 2 usage error.`;

const POLICY_HELP = `ccos policy — the constitution (governance rules as RTFS data)

Usage:
  ccos policy load FILE     load it; replacing the one in force is an amendment that needs approval
  ccos policy show          id, version, hash, rules, roles

${GLOBAL_OPTS}`;

const POLICY_LOAD_HELP = `ccos policy load — load or amend the constitution

The first constitution takes effect at once. Replacing the one in force is an amendment: it needs
the approvals the current constitution's :amendment names. The command then prints the approval
request to decide (\`ccos approve ID --as NAME\`); run \`ccos policy load FILE\` again once it is
approved.

Usage:
  ccos policy load FILE

${GLOBAL_OPTS}

With --json: {"ok":true,"status":"active","hash"} or {"ok":false,"status":"pending","approval":{...}}.
Exit codes: 0 active, 1 invalid file or denied amendment, 3 amendment waiting for approval.`;

const POLICY_SHOW_HELP = `ccos policy show — the constitution in force

Prints its id, version, hash, default decision, rules (id, action, what they match, reason), the
roles of approvers and who must approve an amendment.

Usage:
  ccos policy show

${GLOBAL_OPTS}`;

const APPROVALS_HELP = `ccos approvals — approval requests (calls, steps, plans, budgets, amendments)

Usage:
  ccos approvals list [--status S]   id, kind, capability, rule, needs, status, run, expires
  ccos approvals show ID             what is being approved, in full

${GLOBAL_OPTS}`;

const APPROVALS_LIST_HELP = `ccos approvals list — list approval requests, oldest first

Usage:
  ccos approvals list [--status pending|approved|denied|expired]

${GLOBAL_OPTS}

With --json: {"ok":true,"approvals":[{"id","kind","capability","rule","needs","status","run",
"expires","summary","decisions"}]}`;

const APPROVALS_SHOW_HELP = `ccos approvals show — one approval request, as an approver sees it

Shows the capability and its description, the arguments (secrets redacted), the step, plan and
run, the rule that asks, the estimated cost, who must approve, the expiry and the decisions so far.

Usage:
  ccos approvals show ID

${GLOBAL_OPTS}`;

const APPROVE_HELP = `ccos approve — approve a request, signed with the approver's Ed25519 key

The decision is signed with the approver's private key (by default the one \`ccos keys create\`
wrote, or --key FILE) and verified against the registered public key before it counts. The
approver must hold a role the request needs (roles come from the constitution's :roles).

Usage:
  ccos approve ID --as NAME [--reason R] [--key FILE] [--resume]

Options:
  --as NAME        the approver
  --reason R       why (recorded and signed)
  --key FILE       the approver's private key (PEM)
  --resume         when the request becomes approved, resume its run at once

With --resume, the resumed run takes these options of \`ccos resume\`:
${EFFECT_OPTS}

${GLOBAL_OPTS}

Errors (exit 1, nothing changes): unknown approver, an approver without the needed role, a
signature that does not verify, a request already decided (or already decided by this approver).
With --resume, the run is reported like \`ccos resume\` (exit 0, 1 or 3).`;

const DENY_HELP = `ccos deny — deny a request, signed with the approver's Ed25519 key

The run's call then fails with the denial when the run is resumed (\`ccos resume RUN\`).

Usage:
  ccos deny ID --as NAME --reason R [--key FILE]

Options:
  --as NAME        the approver
  --reason R       why (required; recorded and signed)
  --key FILE       the approver's private key (PEM)

${GLOBAL_OPTS}`;

const KEYS_HELP = `ccos keys — approver keys (Ed25519)

Usage:
  ccos keys create NAME     create an approver's key pair; prints the key id and the private key file
  ccos keys list            approvers: name, key id, created

${GLOBAL_OPTS}`;

const KEYS_CREATE_HELP = `ccos keys create — create an approver's Ed25519 key pair

The public key is registered in the data dir; the private key is written to
<data dir>/keys/approvers/NAME.pem (mode 0600). The private key is the approver's signature: give it
to the approver, who must keep it (and should move it out of the data dir), and pass it with
\`ccos approve --key FILE\`. Keys are never replaced silently.

Usage:
  ccos keys create NAME

${GLOBAL_OPTS}`;

const KEYS_LIST_HELP = `ccos keys list — registered approvers

Usage:
  ccos keys list

${GLOBAL_OPTS}`;

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

/** What the options of a command that runs capabilities (EFFECT_OPTS) ask of the node it opens. */
function effectOptions(c: Ctx): { workspace?: string; allowHosts: string[]; durability?: string } {
  const level = str(c.values.durability);
  if (c.values.strict === true && level !== undefined && level !== 'strict') throw new UsageError(`--strict and --durability ${level} contradict each other: give one`, c.command);
  return { workspace: str(c.values.workspace), allowHosts: strs(c.values['allow-host']), durability: c.values.strict === true ? 'strict' : level };
}

async function open(c: Ctx, o: { mustExist?: boolean; workspace?: string; allowHosts?: string[]; durability?: string } = {}): Promise<{ ccos: Ccos; lib: Lib; kernel: Kernel; fmt: Format }> {
  const m = await load();
  if (o.durability !== undefined && !m.lib.DURABILITIES.includes(o.durability as Durability)) {
    throw new UsageError(`--durability must be one of ${m.lib.DURABILITIES.join(', ')}, got \`${o.durability}\``, c.command);
  }
  const ccos = m.lib.openCcos({
    dataDir: c.dataDir,
    mustExist: o.mustExist,
    workspaceRoot: o.workspace,
    allowedHosts: o.allowHosts,
    durability: o.durability as Durability | undefined,
    onUpgrade: (from, to) => process.stderr.write(`upgrading the data dir from schema ${from} to ${to} (once; a large chain takes a while)…\n`),
  });
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

/**
 * Resolves a run id, or a unique start or end of one. (Run ids begin with their creation time, so
 * runs made close together share a start; their ends are random.)
 */
function resolveRun(ccos: Ccos, id: string): string {
  if (ccos.orchestrator.runRow(id)) return id;
  const all = ccos.runs({ limit: 1_000_000 }).map((r) => r.id);
  let hits = all.filter((r) => r.startsWith(id) || r.startsWith(`run-${id}`));
  if (hits.length === 0) hits = all.filter((r) => r.endsWith(id));
  if (hits.length === 1) return hits[0];
  if (hits.length > 1) throw new lib!.CcosError('ambiguous', `${id} matches ${hits.length} run ids`, { hint: 'give more characters of the run id (its end tells runs made close together apart)' });
  throw new lib!.CcosError('not-found', `no run ${id}`, { hint: 'list runs with `ccos runs list`' });
}

function dataDirArgs(c: Ctx): string {
  return c.dataDir !== undefined ? ` --data-dir ${fmt!.shellQuote(path.resolve(c.dataDir))}` : '';
}

/** The durability a command that runs capabilities was given, for the commands it suggests. */
function durabilityArgs(c: Ctx): string {
  const level = effectOptions(c).durability;
  return level !== undefined && level !== 'normal' ? ` --durability ${level}` : '';
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
  const base = `ccos resume ${r.runId}${dataDirArgs(c)}${durabilityArgs(c)}`;
  if (kinds.includes('outcome-unknown')) return `${base} --retry-unknown   (or --answer VALUE, or --fail MESSAGE)`;
  if (kinds.includes('store-failure')) return `${base}   (once the storage problem is fixed)`;
  if (kinds.length > 0 && kinds.every((k) => k === 'approval')) {
    const ids = fmt!.approvalIds(r.waiting);
    return `ccos approve ${ids.length === 1 ? ids[0] : 'ID'} --as NAME${dataDirArgs(c)}${durabilityArgs(c)} --resume   (or, once approved: ${base})`;
  }
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
  const { ccos, kernel: k, lib: l } = await open(c, effectOptions(c));
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
  if (c.values['dry-run'] === true) return dryRunCommand(c, ccos, source, file, opts);
  // Admission before any effect: a plan with admission errors does not start.
  if (!admitted(c, (await admission()).admit(ccos, source, file))) return EXIT_FAIL;
  return driveRun(c, ccos, () => ccos.run(source, { ...opts, file }));
}

async function cmdResume(c: Ctx): Promise<number> {
  const [id] = expectArgs(c, ['RUN']);
  if (c.values.answer !== undefined && c.values.fail !== undefined) throw new UsageError('give either --answer or --fail, not both', c.command);
  const { ccos, kernel: k } = await open(c, { mustExist: true, ...effectOptions(c) });
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
  const { ccos } = await open(c, effectOptions(c));
  sources.set('<args>', args);
  sources.set('<ccos call>', `(call :${cap.replace(/^:/, '')} ${args})`);
  return driveRun(c, ccos, () => ccos.call(cap, args));
}

// -------------------------------------------------------------------------------------------------
// Governance: admission, dry-run, keys, the constitution, approvals

type Admission = typeof import('../ccos/governance/admission.js');
type AdmissionReport = import('../ccos/governance/admission.js').AdmissionReport;
type DryRunReport = import('../ccos/governance/dry-run.js').DryRunReport;
type ApprovalRequest = import('../ccos/index.js').ApprovalRequest;

const money = (x: number): string => `$${Math.round(x * 1e6) / 1e6}`;

/** The admission report as text (diagnostics with a caret excerpt, then the tables). */
function admissionText(r: AdmissionReport, f: Format): string {
  const k = kernel!;
  const out: string[] = [];
  const n = (x: number, what: string): string => `${x} ${what}${x === 1 ? '' : 's'}`;
  out.push(`admission of ${r.file}: ${r.ok ? 'ok' : 'REFUSED'} — ${n(r.errors.length, 'error')}, ${n(r.warnings.length, 'warning')}`);
  for (const [list, severity] of [[r.errors, 'error'], [r.warnings, 'warning']] as const) {
    for (const e of list) {
      const text = k.formatDiagnostic({ code: e.code, message: e.message, pos: { file: e.file, line: e.line, col: e.col } }, sourceOf(e.file), severity);
      out.push(`${text}\n  = rule: ${e.rule}${e.hint ? `\n  = hint: ${e.hint}` : ''}`);
    }
  }
  if (r.capabilities.length) {
    out.push('capabilities:');
    out.push(
      f
        .table(
          ['ID', 'RISK', 'EFFECTS', 'IDEMPOTENT', 'CALLS', 'COST/CALL', 'AT'],
          r.capabilities.map((c) => [c.id, c.risk ?? 'UNKNOWN', c.effects.join(',') || '-', c.idempotent === null ? '-' : c.idempotent ? 'yes' : 'no', String(c.count), c.costUsd ? money(c.costUsd) : '-', f.short(c.sites.map((s) => `${s.line}:${s.col}${s.steps.length ? ` in ${s.steps.join('/')}` : ''}`).join(', '), 50)]),
        )
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  } else out.push('capabilities: none');
  if (r.approvals.length) {
    out.push('approvals the run will need:');
    for (const a of r.approvals) {
      const who = a.capability ? a.capability : `every call of ${a.scope ?? 'the scope'}`;
      out.push(`  ${who}: ${a.conditional ? 'may need ' : ''}${a.needs} (rule ${a.rule}${a.conditional ? '; a :when predicate decides, from the arguments' : ''})`);
    }
  } else out.push('approvals the run will need: none');
  if (r.denials.length) {
    out.push('denials:');
    for (const d of r.denials) out.push(`  ${d.capability} at ${d.line}:${d.col}: ${d.conditional ? 'may be denied' : 'denied'} by ${d.rule}: ${d.rationale}`);
  }
  const budget = [r.budget.max_cost_usd !== undefined ? `${money(r.budget.max_cost_usd)}` : '', r.budget.max_calls !== undefined ? `${r.budget.max_calls} calls` : ''].filter(Boolean).join(', ');
  out.push(`estimated cost: ${money(r.estimatedCostUsd)} (each call site once)${budget ? `; budget: ${budget}` : ''}`);
  out.push(r.constitution ? `constitution: ${r.constitution.id} v${r.constitution.version} ${r.constitution.hash}` : 'constitution: none loaded (only the built-in checks apply)');
  if (r.dynamicCapabilities) out.push('note: a call computes its capability id; the list may be incomplete');
  return out.join('\n');
}

async function admission(): Promise<Admission> {
  return import('../ccos/governance/admission.js');
}

async function cmdCheck(c: Ctx): Promise<number> {
  const [file] = expectArgs(c, ['FILE']);
  const { ccos, fmt: f } = await open(c);
  const source = readTextFile(file, 'plan');
  sources.set(file, source);
  const report = (await admission()).admit(ccos, source, file);
  if (c.json) emit(report);
  else write(admissionText(report, f));
  return report.ok ? EXIT_OK : EXIT_FAIL;
}

function dryRunText(r: DryRunReport, f: Format): string {
  const out: string[] = [];
  out.push(`dry run of ${r.file}: ${r.status}${r.ok ? '' : r.status === 'failed' ? ` — ${r.error?.code ?? 'failed'}: ${r.error?.message ?? ''}` : ''} (simulated: no effects)`);
  if (r.value !== null) out.push(`value: ${f.short(r.value, 400)}`);
  if (r.waiting) out.push(`waiting for: ${f.describeWaiting(r.waiting).join('; ')}`);
  const b = r.budget;
  const against = [b.max_cost_usd !== undefined ? `budget ${money(b.max_cost_usd)}` : '', b.max_calls !== undefined ? `at most ${b.max_calls} calls` : ''].filter(Boolean).join(', ');
  out.push(`predicted cost: ${money(r.predictedCostUsd)}${against ? ` (${against}: ${b.withinBudget ? 'within budget' : 'OVER BUDGET'})` : ''}`);
  out.push(`predicted latency: ${r.predictedLatencyMs} ms (sum of declared latencies)`);
  if (r.calls.length) {
    out.push(`calls (${r.calls.length}):`);
    out.push(
      f
        .table(['CAPABILITY', 'STEP', 'ARGS', 'RESULT', 'COST', 'SIMULATED BY'], r.calls.map((x) => [x.capability, f.short(x.step.join('/') || '-', 30), f.short(x.args, 40), f.short(x.ok ? (x.result ?? 'nil') : `error: ${x.error ?? ''}`, 40), x.costUsd ? money(x.costUsd) : '-', x.simulatedBy]))
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  } else out.push('calls: none');
  if (r.approvals.length) {
    out.push('approvals that would be requested:');
    for (const a of r.approvals) out.push(`  ${a.capability ?? a.kind}${a.step.length ? ` in ${a.step.join('/')}` : ''}: ${a.needs} (rule ${a.rule})`);
  } else out.push('approvals that would be requested: none');
  if (r.denials.length) {
    out.push('policy denials:');
    for (const d of r.denials) out.push(`  ${d.capability}${d.step.length ? ` in ${d.step.join('/')}` : ''}: ${d.rule}: ${d.rationale}`);
  } else out.push('policy denials: none');
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

/** `ccos run --dry-run`. */
async function dryRunCommand(c: Ctx, ccos: Ccos, source: string, file: string, opts: { inputs: Record<string, Value>; fuel?: number; allow: string[]; deny: string[] }): Promise<number> {
  const { dryRun } = await import('../ccos/governance/dry-run.js');
  const r = await dryRun(ccos, source, file, opts);
  const refused = !r.admission.ok && c.values['no-admission'] !== true;
  if (c.json) emit({ ...r, ok: r.ok && !refused });
  else {
    if (!r.admission.ok) writeErr(admissionText(r.admission, fmt!));
    else for (const w of r.admission.warnings) writeErr(`warning[${w.code}]: ${w.message} (${w.file}:${w.line}:${w.col}, rule ${w.rule})`);
    write(dryRunText(r, fmt!));
  }
  return r.ok && !refused ? EXIT_OK : EXIT_FAIL;
}

/** Admission before a run: true when the run may start (the refusal has been reported). */
function admitted(c: Ctx, report: AdmissionReport): boolean {
  // A plan that does not compile fails in the run itself, with its usual diagnostic.
  if (report.errors.some((e) => e.rule === 'rtfs.compile')) return true;
  if (report.ok || c.values['no-admission'] === true) {
    if (!c.json) for (const w of report.warnings) writeErr(`warning[${w.code}]: ${w.message} (${w.file}:${w.line}:${w.col}, rule ${w.rule})`);
    return true;
  }
  const first = report.errors[0];
  if (c.json) {
    emit({ ok: false, status: 'refused', error: { code: 'admission-refused', message: `admission refused the plan: ${report.errors.length} error(s); the first: ${first.message}`, hint: 'see `ccos check FILE`; --no-admission starts it anyway', file: first.file, line: first.line, col: first.col }, admission: report });
  } else {
    writeErr(admissionText(report, fmt!));
    writeErr('the run did not start (nothing ran); fix the plan, or pass --no-admission to start it anyway');
  }
  return false;
}

async function cmdKeysCreate(c: Ctx): Promise<number> {
  const [name] = expectArgs(c, ['NAME']);
  const { ccos } = await open(c);
  const k = ccos.governance.approvals.createApprover(name);
  if (c.json) emit({ ok: true, approver: k.name, keyId: k.keyId, privateKeyFile: k.privateKeyFile });
  else {
    write(`approver ${k.name}: key ${k.keyId}`);
    write(`private key: ${k.privateKeyFile}`);
    writeErr(`warning: the private key is ${k.name}'s signature. Give it to ${k.name} (and only to them), who must keep it safe and should move it out of the data dir; approve with --key FILE. Anyone holding it can approve as ${k.name}.`);
  }
  return EXIT_OK;
}

async function cmdKeysList(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const { ccos, fmt: f } = await open(c, { mustExist: true });
  const list = ccos.governance.approvals.approvers();
  const roles = ccos.governance.roles();
  const rolesOf = (n: string): string[] => [...(roles.get(n) ?? [])].sort();
  if (c.json) emit({ ok: true, approvers: list.map((a) => ({ ...a, roles: rolesOf(a.name) })) });
  else if (list.length === 0) write('no approvers (create one with `ccos keys create NAME`)');
  else write(f.table(['NAME', 'KEY', 'ROLES', 'CREATED'], list.map((a) => [a.name, a.keyId, rolesOf(a.name).map((r) => `:${r}`).join(' ') || '-', a.created.slice(0, 19).replace('T', ' ')])));
  return EXIT_OK;
}

async function cmdPolicyLoad(c: Ctx): Promise<number> {
  const [file] = expectArgs(c, ['FILE']);
  const { ccos } = await open(c);
  if (existsSync(file)) sources.set(file, readTextFile(file, 'constitution'));
  const r = ccos.governance.load(file);
  if (r.status === 'active') {
    const con = ccos.governance.constitution!;
    if (c.json) emit({ ok: true, status: 'active', hash: r.hash, id: con.id, version: con.version, rules: con.rules.length });
    else write(`constitution ${con.id} v${con.version} active: ${r.hash} (${con.rules.length} rule${con.rules.length === 1 ? '' : 's'})`);
    return EXIT_OK;
  }
  const a = r.approval;
  const { describeNeeds } = await admission();
  const needs = describeNeeds(a.requirement);
  if (c.json) emit({ ok: false, status: 'pending', approval: approvalJson(a, needs) });
  else {
    write(`amendment pending: approval ${a.id} needs ${needs}`);
    write(`approve with: ccos approve ${a.id} --as NAME${dataDirArgs(c)}`);
    write(`then load again: ccos policy load ${fmt!.shellQuote(file)}${dataDirArgs(c)}`);
  }
  return EXIT_PAUSED;
}

function ruleSummary(r: import('../ccos/index.js').Constitution['rules'][number]): string {
  const m: string[] = [];
  if (r.capability) m.push(`capability ${r.capability.map((re) => re.source.replace(/^\^|\$$/g, '').replace(/\.\*/g, '*').replace(/\\(.)/g, '$1')).join('|')}`);
  if (r.effects) m.push(`effects ${[...r.effects].map((x) => ':' + x).join(' ')}`);
  if (r.risk) m.push(`risk ${[...r.risk].map((x) => ':' + x).join(' ')}`);
  if (r.labels) m.push(`labels ${[...r.labels].map((x) => ':' + x).join(' ')}`);
  if (r.regions) m.push(`regions ${[...r.regions].join(' ')}`);
  if (r.window) m.push(`window ${[...r.window.days].join(',')} ${r.window.tz}`);
  if (r.rate) m.push(`rate ${r.rate.max}/${r.rate.perMs / 1000}s`);
  if (r.predicate) m.push('when (predicate)');
  return m.join('; ') || 'every call';
}

async function cmdPolicyShow(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const { ccos, fmt: f } = await open(c, { mustExist: true });
  const con = ccos.governance.constitution;
  const { describeNeeds } = await admission();
  if (!con) {
    if (c.json) emit({ ok: true, constitution: null });
    else write('no constitution loaded (the gate applies only its built-in checks); load one with `ccos policy load FILE`');
    return EXIT_OK;
  }
  const roles = [...con.roles.entries()].map(([name, rs]) => ({ approver: name, roles: [...rs].sort() }));
  const rules = con.rules.map((r) => ({ id: r.id, action: r.action, match: ruleSummary(r), reason: r.reason, needs: r.approval ? describeNeeds(r.approval) : null }));
  if (c.json) {
    emit({ ok: true, constitution: { id: con.id, version: con.version, hash: con.hash, default: con.defaultAction, rules, roles, amendment: describeNeeds(con.amendment) } });
    return EXIT_OK;
  }
  write(`${'id:'.padEnd(11)}${con.id}`);
  write(`${'version:'.padEnd(11)}${con.version}`);
  write(`${'hash:'.padEnd(11)}${con.hash}`);
  write(`${'default:'.padEnd(11)}${con.defaultAction}`);
  write(`${'amendment:'.padEnd(11)}${describeNeeds(con.amendment)}`);
  write(`rules (${rules.length}):`);
  if (rules.length) write(f.table(['ID', 'ACTION', 'MATCH', 'REASON'], rules.map((r) => [r.id, r.action + (r.needs ? ` (${r.needs})` : ''), f.short(r.match, 50), f.short(r.reason, 50)])).split('\n').map((l) => `  ${l}`).join('\n'));
  write(`roles:${roles.length ? '' : ' none'}`);
  for (const r of roles) write(`  ${r.approver}: ${r.roles.map((x) => ':' + x).join(' ')}`);
  return EXIT_OK;
}

function approvalJson(a: ApprovalRequest, needs: string): Record<string, unknown> {
  return {
    id: a.id,
    kind: a.kind,
    capability: typeof a.summary.capability === 'string' ? a.summary.capability : null,
    rule: a.rule,
    needs,
    status: a.status,
    run: a.runId,
    created: a.created,
    expires: a.expires,
    summary: a.summary,
    decisions: a.decisions.map((d) => ({ approver: d.approver, decision: d.decision, reason: d.reason, time: d.time, keyId: d.keyId })),
  };
}

/** Finds an approval request by id or a unique prefix. */
function resolveApproval(ccos: Ccos, id: string): ApprovalRequest {
  const exact = ccos.governance.approvals.get(id);
  if (exact) return exact;
  const hits = ccos.governance.approvals.list().filter((a) => a.id.startsWith(id) || a.id.startsWith(`apr-${id}`));
  if (hits.length === 1) return hits[0];
  if (hits.length > 1) throw new lib!.CcosError('ambiguous', `${id} is the start of ${hits.length} approval ids`, { hint: 'give more characters of the id' });
  throw new lib!.CcosError('not-found', `no approval request ${id}`, { hint: 'list them with `ccos approvals list`' });
}

const STATUSES = ['pending', 'approved', 'denied', 'expired'];

async function cmdApprovalsList(c: Ctx): Promise<number> {
  expectArgs(c, []);
  const status = str(c.values.status);
  if (status !== undefined && !STATUSES.includes(status)) throw new UsageError(`--status must be one of ${STATUSES.join(', ')}, got \`${status}\``, c.command);
  const { ccos, fmt: f } = await open(c, { mustExist: true });
  const { describeNeeds } = await admission();
  const list = ccos.governance.approvals.list(status ? { status: status as never } : {});
  if (c.json) {
    emit({ ok: true, approvals: list.map((a) => approvalJson(a, describeNeeds(a.requirement))) });
    return EXIT_OK;
  }
  if (list.length === 0) {
    write(status ? `no ${status} approval requests` : 'no approval requests');
    return EXIT_OK;
  }
  const what = (a: ApprovalRequest): string => (typeof a.summary.capability === 'string' ? a.summary.capability : a.kind === 'amendment' ? `constitution ${String(a.summary.to ?? '').slice(0, 19)}` : '-');
  const progress = (a: ApprovalRequest): string => {
    const yes = a.decisions.filter((d) => d.decision === 'approve').length;
    return `${describeNeeds(a.requirement)}${yes ? ` (${yes} given)` : ''}`;
  };
  write(f.table(['ID', 'KIND', 'CAPABILITY', 'RULE', 'NEEDS', 'STATUS', 'RUN', 'EXPIRES'], list.map((a) => [a.id, a.kind, f.short(what(a), 30), f.short(a.rule, 24), f.short(progress(a), 40), a.status, a.runId ? f.short(a.runId, 16) : '-', a.expires.slice(0, 16).replace('T', ' ')])));
  return EXIT_OK;
}

function approvalText(a: ApprovalRequest, needs: string, redact: (s: string) => string): string {
  const s = a.summary;
  const rows: [string, string][] = [
    ['approval', a.id],
    ['kind', a.kind],
    ['status', a.status],
  ];
  const text = (v: unknown): string => redact(typeof v === 'string' ? v : JSON.stringify(v));
  if (typeof s.capability === 'string') rows.push(['capability', `${s.capability}${typeof s.description === 'string' && s.description ? ` — ${s.description}` : ''}`]);
  if (typeof s.risk === 'string') rows.push(['risk', s.risk]);
  if (s.arguments !== undefined) rows.push(['arguments', text(s.arguments)]);
  if (Array.isArray(s.step)) rows.push(['step', s.step.length ? s.step.map(String).join(' / ') : '(top level)']);
  if (s.plan !== undefined) rows.push(['plan', String(s.plan)]);
  if (a.runId) rows.push(['run', a.runId]);
  if (a.kind === 'amendment') {
    rows.push(['change', String(s.change ?? 'constitution amendment')]);
    rows.push(['from', String(s.from ?? '')], ['to', String(s.to ?? '')]);
    if (s.file !== undefined) rows.push(['file', String(s.file)]);
    if (s.rules !== undefined) rows.push(['rules', String(s.rules)]);
  }
  for (const [k, v] of Object.entries(s)) {
    if (['capability', 'description', 'risk', 'arguments', 'step', 'plan', 'run', 'rule', 'estimated_cost_usd', 'change', 'from', 'to', 'file', 'rules'].includes(k)) continue;
    rows.push([k.replace(/_/g, ' '), text(v)]);
  }
  rows.push(['rule', a.rule]);
  if (typeof s.estimated_cost_usd === 'number') rows.push(['est. cost', money(s.estimated_cost_usd)]);
  rows.push(['needs', needs]);
  rows.push(['created', a.created], ['expires', a.expires]);
  const lines = rows.map(([k, v]) => `${`${k}:`.padEnd(13)}${v}`);
  lines.push(`decisions:${a.decisions.length ? '' : '    none yet'}`);
  for (const d of a.decisions) lines.push(`  ${d.decision === 'approve' ? 'approved' : 'denied'} by ${d.approver} at ${d.time} (key ${d.keyId})${d.reason ? `: ${redact(d.reason)}` : ''}`);
  if (a.status === 'pending') lines.push(`decide with: ccos approve ${a.id} --as NAME  |  ccos deny ${a.id} --as NAME --reason R`);
  return lines.join('\n');
}

async function cmdApprovalsShow(c: Ctx): Promise<number> {
  const [id] = expectArgs(c, ['ID']);
  const { ccos } = await open(c, { mustExist: true });
  const { describeNeeds } = await admission();
  const { redact } = await import('../ccos/governance/index.js');
  const a = resolveApproval(ccos, id);
  const needs = describeNeeds(a.requirement);
  if (c.json) emit({ ok: true, approval: approvalJson(a, needs) });
  else write(approvalText(a, needs, redact));
  return EXIT_OK;
}

async function decideCommand(c: Ctx, decision: 'approve' | 'deny'): Promise<number> {
  const [id] = expectArgs(c, ['ID']);
  const who = str(c.values.as);
  if (who === undefined) throw new UsageError(`\`ccos ${c.command}\` needs --as NAME (the approver)`, c.command);
  const reason = str(c.values.reason) ?? '';
  if (decision === 'deny' && !reason.trim()) throw new UsageError('`ccos deny` needs --reason R', c.command);
  const keyFile = str(c.values.key);
  const { ccos, lib: l } = await open(c, { mustExist: true, ...effectOptions(c) });
  const { describeNeeds } = await admission();
  const req = resolveApproval(ccos, id);
  // The key is read only when the decision is signed: unknown or unauthorized approvers and
  // decided requests are reported first.
  const sign = (message: string): string => l.approverSigner(ccos.store, who, keyFile)(message);
  const after = ccos.governance.approvals.decide(req.id, who, decision, reason, ccos.governance.roles(), sign);
  const needs = describeNeeds(after.requirement);
  const resume = c.values.resume === true;
  if (c.json && !(resume && after.status === 'approved' && after.runId)) emit({ ok: true, approval: approvalJson(after, needs), resumed: false });
  else if (!c.json) {
    if (decision === 'deny') write(`${after.id} denied by ${who}`);
    else if (after.status === 'approved') write(`${after.id} approved (${who} was the last approval needed)`);
    else write(`${after.id}: approval by ${who} recorded; still pending (needs ${needs}; ${after.decisions.filter((d) => d.decision === 'approve').length} given)`);
  }
  if (after.kind === 'amendment') {
    if (!c.json && after.status === 'approved') write(`load the constitution again to put it in force: ccos policy load ${fmt!.shellQuote(String(after.summary.file ?? 'FILE'))}${dataDirArgs(c)}`);
    return EXIT_OK;
  }
  if (!after.runId) return EXIT_OK;
  if (resume && after.status === 'approved') {
    const runId = after.runId;
    const details = ccos.runDetails(runId);
    if (details) sources.set(details.file, details.source);
    return driveRun(c, ccos, () => ccos.resume(runId), details ? ccos.chain.list({ runId }) : [], details ? runId : undefined);
  }
  if (!c.json) {
    if (after.status === 'approved') write(`resume the run: ccos resume ${after.runId}${dataDirArgs(c)}`);
    else if (after.status === 'denied') write(`when resumed, the run's call fails with this denial: ccos resume ${after.runId}${dataDirArgs(c)}`);
    else if (resume) write(`not resuming: run ${after.runId} still waits for this approval`);
  }
  return resume && after.status === 'pending' ? EXIT_PAUSED : EXIT_OK;
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
  durability: { type: 'string' },
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
      'dry-run': { type: 'boolean' },
      'no-admission': { type: 'boolean' },
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
  check: { help: CHECK_HELP, options: {}, run: cmdCheck },
  'policy load': { help: POLICY_LOAD_HELP, options: {}, run: cmdPolicyLoad },
  'policy show': { help: POLICY_SHOW_HELP, options: {}, run: cmdPolicyShow },
  'approvals list': { help: APPROVALS_LIST_HELP, options: { status: { type: 'string' } }, run: cmdApprovalsList },
  'approvals show': { help: APPROVALS_SHOW_HELP, options: {}, run: cmdApprovalsShow },
  approve: { help: APPROVE_HELP, options: { ...NODE_OPTIONS, as: { type: 'string' }, reason: { type: 'string' }, key: { type: 'string' }, resume: { type: 'boolean' } }, run: (c) => decideCommand(c, 'approve') },
  deny: { help: DENY_HELP, options: { as: { type: 'string' }, reason: { type: 'string' }, key: { type: 'string' } }, run: (c) => decideCommand(c, 'deny') },
  'keys create': { help: KEYS_CREATE_HELP, options: {}, run: cmdKeysCreate },
  'keys list': { help: KEYS_LIST_HELP, options: {}, run: cmdKeysList },
};

const GROUPS: Record<string, string> = { runs: RUNS_HELP, chain: CHAIN_HELP, caps: CAPS_HELP, intents: INTENTS_HELP, policy: POLICY_HELP, approvals: APPROVALS_HELP, keys: KEYS_HELP };
const TOP = ['run', 'resume', 'replay', 'cancel', 'runs', 'chain', 'caps', 'intents', 'call', 'check', 'policy', 'approvals', 'approve', 'deny', 'keys', 'secrets', 'mcp', 'serve', 'help'];

/**
 * Commands contributed by the provider and server modules (MCP client, OpenAPI, secrets, MCP
 * server). They parse their own arguments; they are loaded only when used.
 */
interface PluggedCommand {
  name: string;
  summary: string;
  usage: string;
  args: string[];
  /** It runs plans: it takes --durability (and --strict) for the node it opens. */
  durability: boolean;
  run(ccos: Ccos, args: string[], json: boolean): Promise<number>;
}

const PLUGGED: Record<string, { summary: string; module: () => Promise<Record<string, { summary: string; usage: string; run: (...a: never[]) => Promise<number> }>>; stdin?: boolean; durability?: boolean }> = {
  'caps add-mcp': { summary: 'stage the tools of an MCP server for approval', module: async () => (await import('./ccos-mcp-commands.js')).mcpCommands },
  'caps activate-mcp': { summary: 'register the approved tools of an MCP server', module: async () => (await import('./ccos-mcp-commands.js')).mcpCommands },
  'caps mcp-servers': { summary: 'list MCP servers and their tools', module: async () => (await import('./ccos-mcp-commands.js')).mcpCommands },
  'caps add-openapi': { summary: 'import the operations of an OpenAPI 3 spec as capabilities', module: async () => (await import('./ccos-openapi-commands.js')).openapiCommands },
  'secrets set': { summary: 'store a secret (value read from stdin), encrypted at rest', module: async () => (await import('./ccos-secrets-commands.js')).secretsCommands, stdin: true },
  'secrets list': { summary: 'list secret names (never values)', module: async () => (await import('./ccos-secrets-commands.js')).secretsCommands, stdin: true },
  'secrets delete': { summary: 'delete a secret', module: async () => (await import('./ccos-secrets-commands.js')).secretsCommands, stdin: true },
  mcp: { summary: 'serve CCOS as an MCP server over stdio', module: async () => (await import('./ccos-serve-commands.js')).serveCommands, durability: true },
  serve: { summary: 'serve CCOS over HTTP (--mcp: Streamable HTTP on 127.0.0.1, bearer token)', module: async () => (await import('./ccos-serve-commands.js')).serveCommands, durability: true },
};

const SECRETS_HELP = `ccos secrets — encrypted secrets for capabilities

Commands:
${Object.entries(PLUGGED)
  .filter(([k]) => k.startsWith('secrets '))
  .map(([k, v]) => `  ccos ${k.padEnd(16)} ${v.summary}`)
  .join('\n')}

Values are encrypted (AES-256-GCM) in the data dir, injected only at the provider boundary, and
never shown in plans, the chain, logs or output. Run \`ccos secrets COMMAND --help\` for details.`;

async function pluggedCommand(first: string, rest: string[]): Promise<PluggedCommand | undefined> {
  const two = rest[0] !== undefined ? `${first} ${rest[0]}` : '';
  const name = PLUGGED[two] ? two : PLUGGED[first] ? first : first === 'secrets' ? undefined : undefined;
  if (first === 'secrets' && !PLUGGED[two]) {
    if (rest[0] === undefined || rest[0] === '-h' || rest[0] === '--help') {
      (rest[0] === undefined ? writeErr : write)(SECRETS_HELP);
      throw new ExitWith(rest[0] === undefined ? EXIT_USAGE : EXIT_OK);
    }
    throw new UsageError(`unknown command \`ccos secrets ${rest[0]}\` (secrets commands: set, list, delete)`, 'secrets');
  }
  if (!name) return undefined;
  const spec = PLUGGED[name];
  const mod = await spec.module();
  const cmd = mod[name];
  const args = name.includes(' ') ? rest.slice(1) : rest;
  const stdinReader = spec.stdin ? (await import('./ccos-secrets-commands.js')).readStdin : undefined;
  return {
    name,
    summary: cmd.summary,
    usage: cmd.usage,
    args,
    durability: spec.durability === true,
    run: (ccos, a, json) => (stdinReader ? (cmd.run as unknown as (c: Ccos, a: string[], j: boolean, s: () => Promise<string>) => Promise<number>)(ccos, a, json, stdinReader) : (cmd.run as unknown as (c: Ccos, a: string[], j: boolean) => Promise<number>)(ccos, a, json)),
  };
}

/** Runs a plugged command: its own --help, the global --data-dir/--json (and --durability, --strict), then the node. */
async function runPlugged(p: PluggedCommand, globals: string[]): Promise<number> {
  const all = [...globals, ...p.args];
  if (all.includes('--help') || all.includes('-h')) {
    write(p.usage.startsWith(`ccos ${p.name}`) ? p.usage : `ccos ${p.name} — ${p.summary}\n\n${p.usage}`);
    return EXIT_OK;
  }
  const rest: string[] = [];
  let dataDir: string | undefined;
  let json = false;
  const values: Values = {};
  for (let i = 0; i < all.length; i++) {
    const a = all[i];
    if (a === '--' ) {
      rest.push(...all.slice(i));
      break;
    }
    if (a === '--json') json = true;
    else if (a === '--data-dir') dataDir = all[++i];
    else if (a.startsWith('--data-dir=')) dataDir = a.slice('--data-dir='.length);
    else if (p.durability && a === '--durability') values.durability = all[++i] ?? '';
    else if (p.durability && a.startsWith('--durability=')) values.durability = a.slice('--durability='.length);
    else if (p.durability && a === '--strict') values.strict = true;
    else rest.push(a);
  }
  const c: Ctx = { command: p.name, values, positionals: [], json, dataDir };
  const { ccos } = await open(c, { durability: effectOptions(c).durability });
  try {
    return await p.run(ccos, rest, json);
  } finally {
    await ccos.shutdown();
    opened.splice(opened.indexOf(ccos), 1);
  }
}

/** Ends `main` with an exit code from inside a helper. */
class ExitWith extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

function helpFor(words: string[]): string | undefined {
  const key = words.join(' ');
  if (key === '') return MAIN_HELP;
  if (key === 'secrets') return SECRETS_HELP;
  if (PLUGGED[key]) return `ccos ${key} — ${PLUGGED[key].summary}\n\nRun \`ccos ${key} --help\` for its options.`;
  return COMMANDS[key]?.help ?? (words.length === 1 ? GROUPS[key] : undefined);
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
    const plugged = await pluggedCommand(first, rest);
    if (plugged) {
      command = plugged.name;
      return await runPlugged(plugged, [...globals]);
    }
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
    if (e instanceof ExitWith) return e.code;
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
