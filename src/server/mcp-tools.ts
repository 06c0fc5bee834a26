/**
 * The tools CCOS offers over MCP: run and resume plans, call capabilities, inspect capabilities,
 * list and decide approvals, query and verify the causal chain, check RTFS programs, and the
 * material an agent needs to write plans (a cheatsheet and the sample plans).
 *
 * Owns: the tool names, their input schemas, and how results and errors are rendered for MCP
 * clients (a readable text plus `structuredContent`; errors as `isError` results naming the code,
 * the message and a hint, never a stack trace).
 * Must never: reach a capability other than through `Ccos.run`/`Ccos.call` (the gate); let an
 * authenticated connection decide an approval as anyone but its own identity.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { approverSigner, CcosError, describeError, plainJsonToValue, valueToPlainJson, type ApprovalRequest, type Ccos, type CapabilityManifest, type RunResult } from '../ccos/index.js';
import { isMap, isSet, isVector, Keyword, prStr, readAll, readOne, RFloat, type Value } from '../rtfs/index.js';
import { checkProgram } from '../rtfs/check.js';

/** Who is on the other end of a connection, as far as approvals are concerned. */
export type McpIdentity =
  /** Not authenticated by the transport (stdio: the local user who started the server). */
  | { kind: 'local' }
  /** Authenticated (HTTP bearer token): `approver` is the approver name the token maps to, if any. */
  | { kind: 'token'; approver: string | null };

export interface CcosToolOptions {
  /** Directory of the sample plans (default: `examples/` of this package). */
  examplesDir?: string;
  /** The identity of the connection, when it is fixed for the server's lifetime. */
  identity?: McpIdentity;
}

/** Every tool this server registers, in registration order. */
export const CCOS_TOOL_NAMES = [
  'ccos_run_plan',
  'ccos_resume_run',
  'ccos_call_capability',
  'ccos_search_capabilities',
  'ccos_get_capability',
  'ccos_list_approvals',
  'ccos_decide_approval',
  'ccos_query_chain',
  'ccos_verify_chain',
  'ccos_check_program',
  'ccos_rtfs_cheatsheet',
  'ccos_sample_plans',
] as const;

/** URI of the cheatsheet resource. */
export const CHEATSHEET_URI = 'ccos://rtfs/cheatsheet';

/** A short guide to writing RTFS plans for CCOS (every example passes `ccos_check_program`). */
export const RTFS_CHEATSHEET = `# RTFS cheatsheet (plans for CCOS)

RTFS is a pure Clojure dialect: no I/O, clock or randomness. The only way to act on the world is
\`(call :capability.id args...)\`, which goes through the CCOS gate (policy, approvals, budgets,
journal, causal chain). A plan's value is the value of its last form.

## Forms
- Literals: \`nil true false 42 3.14 "text" :keyword [1 2] {:k "v"} #{:a :b}\`
- Definitions: \`(def x 1)\`, \`(defn f [a b] (+ a b))\`, \`(fn [x] (* x 2))\`, \`#(* % 2)\`
- Binding and flow: \`(let [a 1 b (inc a)] ...)\`, \`(if c then else)\`, \`(when c ...)\`,
  \`(cond c1 v1 c2 v2 :else v3)\`, \`(case x 1 :one :other)\`, \`(do a b)\`, \`(loop [i 0] (recur (inc i)))\`
- Data: \`(get m :k)\`, \`(:k m)\`, \`(assoc m :k v)\`, \`(map f xs)\`, \`(filter pred xs)\`, \`(reduce + xs)\`,
  \`(str "a" 1)\`, \`(count xs)\`, \`(-> x f g)\`, \`(->> xs (map f) (reduce +))\`
- Destructuring: \`(let [{:keys [a b]} m [x & more] xs] ...)\`
- Errors: \`(try (call :svc.op) (catch :host e (ex-message e)))\`, \`(throw (ex-info "msg" {:type :bad}))\`
- Pattern matching: \`(match v {:status :ok :value x} x _ nil)\`

## Calls
\`\`\`clojure
(call :ccos.state.counter.inc "visits")          ; => the new count
(call :ccos.state.kv.put "last-user" {:name "ada"})
(call :ccos.state.kv.get "last-user")
(call :ccos.state.event.append "audit" {:what "deploy"})
(call :ccos.echo "hello")
(:iso (call :ccos.time.now))
\`\`\`
\`ccos.user.ask\` pauses the run until someone answers (\`ccos_resume_run\` with \`answer\`).
Find more with \`ccos_search_capabilities\`; \`ccos_get_capability\` shows a capability's parameters,
effects and risk. A call may carry metadata: \`^{:idempotency-key "order-7"} (call :svc.charge 10)\`.

## Steps
\`\`\`clojure
(let [n (step "count" (call :ccos.state.counter.inc "runs"))]
  (step "record" {:retries {:max 2 :backoff-ms 100} :timeout-ms 5000}
    (call :ccos.state.event.append "log" {:run n}))
  (step.parallel
    (step "a" (call :ccos.state.kv.get "a"))
    (step "b" (call :ccos.state.kv.get "b"))))
\`\`\`
- \`(step "name" opts? body...)\` names a unit of work (journaled, on the chain); options:
  \`:retries {:max n :backoff-ms ms}\`, \`:timeout-ms ms\`.
- \`(step.parallel branch...)\` runs branches concurrently; the value is a vector in branch order.
- \`(step.with-compensation primary compensation)\`: if a later step fails or the run is cancelled,
  the compensation runs (newest first).

## Plans and metadata
\`\`\`clojure
(plan "nightly-report"
  ^{:policy {:requires_approvals 1} :resources {:max_cost_usd 5}}
  :intent "count visits and record them"
  :program
  (let [n (step "count" (call :ccos.state.counter.inc "visits"))]
    (step "store" (call :ccos.state.kv.put "visits/last" n))
    {:visits n}))
\`\`\`
- The metadata map governs every call of the plan: \`:policy\` (\`:requires_approvals n\`,
  \`:quorum [:role ...]\`) and \`:resources\` (\`:max_cost_usd\`, \`:max_calls\`, \`:data_locality :eu_only\`).
  A step may carry its own: \`(step "shift" ^{:policy {:requires_approvals 1}} (call ...))\`.
- Inputs given to \`ccos_run_plan\` are bound to \`input\`: \`(:service input)\`.

## Pauses
A run pauses when a call needs an approval (constitution rule or plan policy) or a person's answer.
\`ccos_run_plan\` then returns \`status: "paused"\`, the run id and \`waiting\`:
- \`{:kind "approval" :approval "apr-..."}\`: an approver decides with \`ccos_decide_approval\`, then
  \`ccos_resume_run\` continues the run (in any process; completed calls are not repeated).
- \`{:kind "answer"}\`: \`ccos_resume_run\` with \`answer\` (RTFS text, e.g. \`"\\"yes\\""\` or \`42\`).

Check a program before running it: \`ccos_check_program\` reports unbound symbols, arity errors and
malformed forms with line and column, and lists the capabilities it calls.
`;

/** The default directory of sample plans: `examples/` at the package root. */
function defaultExamplesDir(): string {
  // dist/src/server/mcp-tools.js → package root
  return fileURLToPath(new URL('../../../examples/', import.meta.url));
}

const json = (x: unknown): string => JSON.stringify(x, null, 2);

function ok(text: string, structured?: Record<string, unknown>): CallToolResult {
  return structured === undefined ? { content: [{ type: 'text', text }] } : { content: [{ type: 'text', text }], structuredContent: structured };
}

/** An error as an MCP tool result: code, message and hint; never a stack trace. */
export function errorResult(e: unknown): CallToolResult {
  const d = describeError(e);
  const error: Record<string, unknown> = { code: d.code, message: d.message };
  if (d.hint) error.hint = d.hint;
  if (d.line !== undefined) Object.assign(error, { file: d.file, line: d.line, col: d.col });
  const where = d.line !== undefined ? ` (${d.file}:${d.line}:${d.col})` : '';
  return { content: [{ type: 'text', text: `error[${d.code}]: ${d.message}${where}${d.hint ? `\nhint: ${d.hint}` : ''}` }], structuredContent: { error }, isError: true };
}

function guarded<A>(fn: (args: A, extra: ToolExtra) => Promise<CallToolResult> | CallToolResult): (args: A, extra: ToolExtra) => Promise<CallToolResult> {
  return async (args, extra) => {
    try {
      return await fn(args, extra);
    } catch (e) {
      return errorResult(e);
    }
  };
}

/** The part of the SDK's request context the tools use. */
interface ToolExtra {
  authInfo?: { extra?: Record<string, unknown> };
}

/** RTFS data reads as itself; anything else (symbols, code, several forms, bad syntax) is a string. */
function readLoose(text: string): Value {
  let forms: Value[];
  try {
    forms = readAll(text, '<answer>');
  } catch {
    return text;
  }
  return forms.length === 1 && isData(forms[0]) ? forms[0] : text;
}

function isData(v: unknown): boolean {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string') return true;
  if (v instanceof RFloat || v instanceof Keyword) return true;
  if (isVector(v) || isSet(v)) return [...(v as Iterable<unknown>)].every(isData);
  if (isMap(v)) {
    for (const [a, b] of v as Iterable<[unknown, unknown]>) if (!isData(a) || !isData(b)) return false;
    return true;
  }
  return false;
}

function parseInputs(inputs: unknown): Record<string, Value> {
  const out: Record<string, Value> = {};
  if (inputs === undefined || inputs === null) return out;
  if (typeof inputs === 'string') {
    const form = readOne(inputs, '<inputs>');
    if (!isMap(form) || !isData(form)) throw new CcosError('invalid-input', 'inputs given as text must be one RTFS map of data, like {:n 5 :name "x"}');
    for (const [key, v] of form as Iterable<[Value, Value]>) {
      const name = key instanceof Keyword ? key.name : typeof key === 'string' ? key : undefined;
      if (name === undefined) throw new CcosError('invalid-input', `input names must be keywords or strings, found ${prStr(key)}`);
      out[name] = v;
    }
    return out;
  }
  for (const [key, v] of Object.entries(inputs as Record<string, unknown>)) out[key.replace(/^:/, '')] = plainJsonToValue(v);
  return out;
}

/** What the next move is for a paused run, in terms of these tools. */
function nextMove(r: RunResult): string | undefined {
  if (r.status !== 'paused') return undefined;
  const w = (r.waiting ?? {}) as { kind?: string; approval?: string };
  if (w.kind === 'approval' && w.approval) return `an approver decides with ccos_decide_approval {"id": "${w.approval}"}, then ccos_resume_run {"runId": "${r.runId}"}`;
  if (w.kind === 'answer') return `answer with ccos_resume_run {"runId": "${r.runId}", "answer": "<RTFS value>"}`;
  return `continue with ccos_resume_run {"runId": "${r.runId}"} once the cause is dealt with`;
}

/** A run result for MCP: text for people and models, structured content for programs. */
export function runResultOut(r: RunResult): CallToolResult {
  const out: Record<string, unknown> = { status: r.status, runId: r.runId, waiting: r.waiting ?? null };
  if (r.value !== undefined) {
    out.value = prStr(r.value);
    out.valueJson = valueToPlainJson(r.value);
  }
  if (r.error) out.error = r.error;
  if (r.checkpoint) out.checkpoint = r.checkpoint;
  const next = nextMove(r);
  if (next) out.next = next;
  let text: string;
  switch (r.status) {
    case 'completed':
      text = `completed (run ${r.runId}): ${out.value}`;
      break;
    case 'paused':
      text = `paused (run ${r.runId}), waiting for: ${JSON.stringify(r.waiting ?? null)}\nnext: ${next}`;
      break;
    case 'failed':
      text = `failed (run ${r.runId}): error[${r.error?.code}]: ${r.error?.message}${r.error?.line !== undefined ? ` (${r.error.file}:${r.error.line}:${r.error.col})` : ''}${r.error?.hint ? `\nhint: ${r.error.hint}` : ''}`;
      break;
    default:
      text = `${r.status} (run ${r.runId})${out.value !== undefined ? `: ${out.value}` : ''}`;
  }
  return ok(text, out);
}

function approvalOut(a: ApprovalRequest): Record<string, unknown> {
  return {
    id: a.id,
    runId: a.runId,
    kind: a.kind,
    status: a.status,
    rule: a.rule,
    summary: a.summary,
    requirement: a.requirement,
    created: a.created,
    expires: a.expires,
    decisions: a.decisions.map((d) => ({ approver: d.approver, decision: d.decision, reason: d.reason, time: d.time, keyId: d.keyId })),
  };
}

function capabilityRow(m: CapabilityManifest): Record<string, unknown> {
  return { id: m.id, description: m.description, risk: m.risk, effects: m.effects.map((e) => e.kind), provider: m.provider.kind };
}

/** The identity that must decide approvals on this connection, or `null` for local (trusted) use. */
function identityOf(extra: ToolExtra, fixed: McpIdentity | undefined): McpIdentity {
  if (fixed) return fixed;
  const auth = extra.authInfo;
  if (auth) {
    const a = auth.extra?.approver;
    return { kind: 'token', approver: typeof a === 'string' && a ? a : null };
  }
  return { kind: 'local' };
}

function readSamples(dir: string): { name: string; source: string }[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.rtfs')).sort();
  } catch (e) {
    throw new CcosError('file', `cannot read the sample plans in ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return names.map((name) => ({ name, source: fs.readFileSync(path.join(dir, name), 'utf8') }));
}

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, openWorldHint: false } as const;

/** Registers every CCOS tool (and the cheatsheet resource) on an MCP server. */
export function registerCcosTools(server: McpServer, ccos: Ccos, opts: CcosToolOptions = {}): void {
  const examplesDir = opts.examplesDir ?? defaultExamplesDir();

  server.registerTool(
    'ccos_run_plan',
    {
      title: 'Run an RTFS plan',
      description:
        'Runs an RTFS plan through the CCOS gate (every call is governed, journaled and recorded on the causal chain). ' +
        'Returns status "completed" with the value (printed RTFS and as JSON), "failed" with the error, or "paused" with the run id and what the run waits for ' +
        '(an approval: decide it with ccos_decide_approval, then ccos_resume_run; an answer: ccos_resume_run with answer). ' +
        'Read ccos_rtfs_cheatsheet first; check the source with ccos_check_program.',
      inputSchema: {
        source: z.string().describe('RTFS source of the plan'),
        inputs: z
          .union([z.record(z.string(), z.unknown()), z.string()])
          .optional()
          .describe('Inputs bound to `input` in the plan: a JSON object (keys become keywords) or RTFS text of a map, like {:service "checkout"}'),
        fuel: z.number().int().positive().optional().describe('Budget of pure computation (function calls + loop iterations)'),
      },
    },
    guarded(async ({ source, inputs, fuel }: { source: string; inputs?: unknown; fuel?: number }) => runResultOut(await ccos.run(source, { file: '<mcp plan>', inputs: parseInputs(inputs), fuel }))),
  );

  server.registerTool(
    'ccos_resume_run',
    {
      title: 'Resume a paused run',
      description:
        'Continues a paused or interrupted run (by run id) once what it waited for is done: an approval decided with ccos_decide_approval, or a question answered here with `answer`. ' +
        'Completed calls are not executed again. Returns the same shape as ccos_run_plan.',
      inputSchema: {
        runId: z.string().describe('The run id (run-...) or a checkpoint id (cp-...)'),
        answer: z.string().optional().describe('Answer for a call waiting on a person (ccos.user.ask), as RTFS text: "\\"ship it\\"", 42, {:ok true}; other text is taken as a string'),
        fail: z.string().optional().describe('Fail the waiting call with this message instead of answering it'),
      },
    },
    guarded(async ({ runId, answer, fail }: { runId: string; answer?: string; fail?: string }) => {
      if (answer !== undefined && fail !== undefined) throw new CcosError('invalid-input', 'give either answer or fail, not both');
      return runResultOut(await ccos.resume(runId, { answer: answer !== undefined ? readLoose(answer) : undefined, fail }));
    }),
  );

  server.registerTool(
    'ccos_call_capability',
    {
      title: 'Call one capability',
      description:
        'Calls one capability through the same gate as plans (it runs as a one-call plan: decided by policy, journaled, recorded; it may pause for an approval). ' +
        'Arguments are RTFS source text, e.g. `"visits" 2` or `{:url "https://example.com"}`. Returns the same shape as ccos_run_plan.',
      inputSchema: {
        capability: z.string().describe('Capability id, e.g. ccos.state.counter.inc'),
        args: z.string().optional().describe('Arguments as RTFS source text (space-separated forms)'),
      },
    },
    guarded(async ({ capability, args }: { capability: string; args?: string }) => runResultOut(await ccos.call(capability, args ?? ''))),
  );

  server.registerTool(
    'ccos_search_capabilities',
    {
      title: 'Search capabilities',
      description: 'Lists the registered capabilities whose id or description contains the query (case-insensitive; empty: all), with risk, effect kinds and provider.',
      inputSchema: { query: z.string().describe('Text to look for in capability ids and descriptions') },
      annotations: READ_ONLY,
    },
    guarded(({ query }: { query: string }) => {
      const q = query.trim().toLowerCase();
      const hits = ccos.registry
        .list()
        .filter((m) => !q || m.id.toLowerCase().includes(q) || m.description.toLowerCase().includes(q))
        .sort((a, b) => a.id.localeCompare(b.id))
        .map(capabilityRow);
      const text = hits.length ? hits.map((h) => `${h.id} [${h.risk}] ${h.description}`).join('\n') : `no capability matches ${JSON.stringify(query)}`;
      return ok(text, { capabilities: hits });
    }),
  );

  server.registerTool(
    'ccos_get_capability',
    {
      title: 'Show a capability',
      description: 'The manifest of one capability: parameters and schemas, effects, risk, cost, idempotence, labels, provider.',
      inputSchema: { id: z.string().describe('Capability id, with or without the leading colon') },
      annotations: READ_ONLY,
    },
    guarded(({ id }: { id: string }) => {
      const m = ccos.registry.manifest(id.replace(/^:/, ''));
      if (!m) throw new CcosError('not-found', `no capability ${id}`, { hint: 'search with ccos_search_capabilities' });
      return ok(json(m), { capability: m as unknown as Record<string, unknown> });
    }),
  );

  server.registerTool(
    'ccos_list_approvals',
    {
      title: 'List approval requests',
      description: 'Approval requests (oldest first), optionally by status, with what is being approved (capability, arguments with secrets redacted, step, rule), what is needed, and the decisions so far.',
      inputSchema: { status: z.enum(['pending', 'approved', 'denied', 'expired']).optional().describe('Only requests with this status') },
      annotations: READ_ONLY,
    },
    guarded(({ status }: { status?: 'pending' | 'approved' | 'denied' | 'expired' }) => {
      const list = ccos.governance.approvals.list(status ? { status } : {}).map(approvalOut);
      const text = list.length ? list.map((a) => `${a.id} ${a.status} run ${a.runId ?? '-'} rule ${a.rule}: ${JSON.stringify(a.summary)}`).join('\n') : `no ${status ?? ''} approval requests`.replace('  ', ' ');
      return ok(text, { approvals: list });
    }),
  );

  server.registerTool(
    'ccos_decide_approval',
    {
      title: 'Approve or deny a request',
      description:
        'Records an approver\'s decision on an approval request, signed with the approver\'s key from the data directory and verified before it counts. ' +
        'Over an authenticated connection (HTTP bearer token) the decision is made as the token\'s approver identity; any other `approver` is rejected. ' +
        'A denial needs a reason. After approval, continue the run with ccos_resume_run.',
      inputSchema: {
        id: z.string().describe('Approval request id (apr-...)'),
        approver: z.string().optional().describe('Approver name (required over stdio; over HTTP it defaults to, and must equal, the token\'s identity)'),
        decision: z.enum(['approve', 'deny']),
        reason: z.string().describe('Why (required for a denial)'),
      },
    },
    guarded(({ id, approver, decision, reason }: { id: string; approver?: string; decision: 'approve' | 'deny'; reason: string }, extra) => {
      const who = identityOf(extra, opts.identity);
      let name = approver;
      if (who.kind === 'token') {
        const rejectIdentity = (message: string, hint: string): never => {
          const req = ccos.governance.approvals.get(id);
          ccos.orchestrator.record({ type: 'ApprovalRejected', runId: req?.runId ?? null, data: { approval: id, approver: approver ?? null, identity: who.approver, decision, problem: message } });
          throw new CcosError('identity-mismatch', message, { hint });
        };
        if (who.approver === null) rejectIdentity('this connection\'s token has no approver identity, so it may not decide approvals', 'map a token to an approver: ccos serve --mcp --approver-token NAME=TOKEN');
        if (name !== undefined && name !== who.approver) rejectIdentity(`this connection is authenticated as ${who.approver}; it may not decide as ${name}`, `connect with ${name}'s own token`);
        name = who.approver!;
      }
      if (!name) throw new CcosError('invalid-input', 'approver is required: the name of the approver deciding', { hint: 'approvers are created with `ccos keys create NAME`' });
      const req = ccos.governance.approvals.decide(id, name, decision, reason, ccos.governance.roles(), (message) => approverSigner(ccos.store, name!)(message)); // the key is read only once the request and approver check out
      const out = approvalOut(req);
      const next = req.status === 'approved' && req.runId ? `continue with ccos_resume_run {"runId": "${req.runId}"}` : req.status === 'denied' && req.runId ? `resuming run ${req.runId} fails the call that waited for this approval` : undefined;
      return ok(`${req.id} ${req.status} (decided by ${name}: ${decision})${next ? `\nnext: ${next}` : ''}`, { approval: out, ...(next ? { next } : {}) });
    }),
  );

  server.registerTool(
    'ccos_query_chain',
    {
      title: 'Query the causal chain',
      description: 'Actions recorded on the causal chain (plans, steps, calls, policy decisions, approvals), oldest first: the last `limit` actions overall, or of one run.',
      inputSchema: {
        runId: z.string().optional().describe('Only the actions of this run'),
        limit: z.number().int().positive().max(1000).optional().describe('At most this many (the newest; default 100)'),
        type: z.string().optional().describe('Only actions of this type, e.g. CapabilityCall, PolicyDecision, ApprovalDecided'),
      },
      annotations: READ_ONLY,
    },
    guarded(({ runId, limit, type }: { runId?: string; limit?: number; type?: string }) => {
      const n = limit ?? 100;
      let actions = ccos.chain.list(runId ? { runId } : {});
      if (type) actions = actions.filter((a) => a.type === type);
      actions = actions.slice(-n);
      const rows = actions.map((a) => ({ seq: a.seq, id: a.id, type: a.type, time: a.time, runId: a.runId, stepPath: a.stepPath, data: a.data, hash: a.hash }));
      const text = rows.length ? rows.map((a) => `#${a.seq} ${a.time} ${a.type}${a.runId ? ` ${a.runId}` : ''}${a.stepPath.length ? ` [${a.stepPath.join(' > ')}]` : ''} ${JSON.stringify(a.data)}`).join('\n') : 'no actions';
      return ok(text, { actions: rows });
    }),
  );

  server.registerTool(
    'ccos_verify_chain',
    {
      title: 'Verify the causal chain',
      description: 'Re-checks the whole causal chain: hash links, signatures and seals. Reports ok, counts, and each problem with its sequence number.',
      inputSchema: {},
      annotations: READ_ONLY,
    },
    guarded(() => {
      const r = ccos.verifyChain();
      const text = r.ok ? `chain ok: ${r.actions} actions, ${r.seals} seals, ${r.unsealedTail} unsealed` : `chain BROKEN: ${r.problems.map((p) => `#${p.seq}: ${p.problem}`).join('; ')}`;
      return ok(text, r as unknown as Record<string, unknown>);
    }),
  );

  server.registerTool(
    'ccos_check_program',
    {
      title: 'Check an RTFS program',
      description: 'Compiles an RTFS program without running it: diagnostics (unbound symbols, wrong arities, malformed forms, parse errors) with line and column, and the capabilities it calls.',
      inputSchema: { source: z.string().describe('RTFS source') },
      annotations: READ_ONLY,
    },
    guarded(({ source }: { source: string }) => {
      const r = checkProgram(source, '<mcp>');
      const errors = r.diagnostics.filter((d) => d.severity === 'error').length;
      const lines = r.diagnostics.map((d) => `${d.line}:${d.col}: ${d.severity}[${d.code}]: ${d.message}${d.hint ? ` (hint: ${d.hint})` : ''}`);
      lines.push(`${errors} errors, ${r.diagnostics.length - errors} warnings`);
      lines.push(`capabilities: ${[...new Set(r.capabilities.map((c) => ':' + c.id))].join(', ') || 'none'}${r.dynamicCapabilities ? ' (and some computed at run time)' : ''}`);
      return ok(lines.join('\n'), { ok: errors === 0, diagnostics: r.diagnostics, capabilities: r.capabilities, dynamicCapabilities: r.dynamicCapabilities });
    }),
  );

  server.registerTool(
    'ccos_rtfs_cheatsheet',
    {
      title: 'RTFS cheatsheet',
      description: 'A short guide to writing RTFS plans for CCOS: forms, capability calls, steps, plan metadata, pauses. Also available as the resource ' + CHEATSHEET_URI + '.',
      inputSchema: {},
      annotations: READ_ONLY,
    },
    guarded(() => ok(RTFS_CHEATSHEET)),
  );

  server.registerTool(
    'ccos_sample_plans',
    {
      title: 'Sample plans',
      description: 'The sample RTFS plans shipped with CCOS (name and source).',
      inputSchema: {},
      annotations: READ_ONLY,
    },
    guarded(() => {
      const samples = readSamples(examplesDir);
      return ok(samples.map((s) => `;; ===== ${s.name} =====\n${s.source}`).join('\n'), { samples });
    }),
  );

  server.registerResource('rtfs-cheatsheet', CHEATSHEET_URI, { title: 'RTFS cheatsheet', description: 'How to write RTFS plans for CCOS', mimeType: 'text/markdown' }, (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/markdown', text: RTFS_CHEATSHEET }],
  }));
}
