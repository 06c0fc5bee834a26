// CCOS as an MCP server, end to end with the official SDK client: over stdio (a child process
// serving a temporary data dir) and over Streamable HTTP (in-process, bearer tokens), including a
// plan that pauses for an approval, is approved by the token's approver and resumed over MCP;
// missing, wrong and mismatched credentials are rejected and recorded.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { openCcos, type Ccos } from '../src/ccos/index.js';
import { serveHttp, type CcosHttpServerHandle } from '../src/server/mcp-server.js';
import { checkProgram } from '../src/rtfs/check.js';
import { serveCommands } from '../src/cli/ccos-serve-commands.js';

// Written out here, not imported from mcp-tools.ts: the test must notice a tool added or lost.
const ALL_TOOLS = [
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
];

const dir = mkdtempSync(join(tmpdir(), 'ccos-mcp-'));
const examplesDir = new URL('../../examples/', import.meta.url);
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
});

type Result = CallToolResult & { structuredContent?: Record<string, unknown> };

async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<Result> {
  return (await client.callTool({ name, arguments: args })) as Result;
}

function text(r: Result): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

/** A successful tool result's structured content. */
function okOf(r: Result): Record<string, unknown> {
  assert.notEqual(r.isError, true, `unexpected tool error: ${text(r)}`);
  assert.ok(r.structuredContent, `no structured content in ${text(r)}`);
  return r.structuredContent;
}

/** A failed tool result: its error code; never a stack trace. */
function errorOf(r: Result): { code: string; message: string; hint?: string } {
  assert.equal(r.isError, true, `expected a tool error, got: ${text(r)}`);
  assert.doesNotMatch(text(r), /\n\s+at .*\.js:\d+/, 'no stack trace');
  return (r.structuredContent as { error: { code: string; message: string; hint?: string } }).error;
}

// -------------------------------------------------------------------------------------------------
// stdio: a child process serves a data dir

const LIB = new URL('../src/ccos/index.js', import.meta.url).href;
const COMMANDS = new URL('../src/cli/ccos-serve-commands.js', import.meta.url).href;

async function stdioClient(dataDir: string): Promise<Client> {
  // `ccos mcp` as the CLI will run it: the command over an open node
  const script = join(dir, 'serve-stdio.mjs');
  writeFileSync(
    script,
    `import { openCcos } from ${JSON.stringify(LIB)};
import { serveCommands } from ${JSON.stringify(COMMANDS)};
const ccos = openCcos({ dataDir: process.argv[2] });
process.exitCode = await serveCommands.mcp.run(ccos, [], false);
ccos.close();
`,
  );
  const client = new Client({ name: 'ccos-test', version: '1.0.0' });
  const transport = new StdioClientTransport({ command: process.execPath, args: [script, dataDir], stderr: 'pipe', cwd: dir });
  await client.connect(transport);
  cleanups.push(() => client.close());
  return client;
}

test('stdio: tools, plans, capabilities, checks, cheatsheet, samples and the chain', async () => {
  const client = await stdioClient(join(dir, 'stdio-data'));

  const tools = (await client.listTools()).tools;
  const names = tools.map((t) => t.name);
  for (const t of ALL_TOOLS) assert.ok(names.includes(t), `missing tool ${t} (have ${names.join(', ')})`);
  for (const t of tools) assert.ok(t.description && t.description.length > 20, `${t.name} has a description`);

  // a plan on built-in capabilities
  const r1 = okOf(await call(client, 'ccos_run_plan', { source: '(call :ccos.state.counter.inc "c")' }));
  assert.equal(r1.status, 'completed');
  assert.equal(r1.value, '1');
  assert.match(String(r1.runId), /^run-/);
  const r2 = okOf(await call(client, 'ccos_run_plan', { source: '(let [n (step "count" (call :ccos.state.counter.inc "c"))] {:n n :who (:who input)})', inputs: { who: 'ada' } }));
  assert.equal(r2.status, 'completed');
  assert.equal(r2.value, '{:n 2 :who "ada"}');
  assert.deepEqual(r2.valueJson, { n: 2, who: 'ada' });
  const r3 = okOf(await call(client, 'ccos_run_plan', { source: '(:x input)', inputs: '{:x [1 :two "three"]}' }));
  assert.equal(r3.value, '[1 :two "three"]');

  // a failing plan is reported as failed, with the error's place
  const bad = okOf(await call(client, 'ccos_run_plan', { source: '(do\n  (/ 1 0))' }));
  assert.equal(bad.status, 'failed');
  assert.equal((bad.error as { code: string }).code, 'arithmetic');

  // one capability through the gate
  const put = await call(client, 'ccos_call_capability', { capability: 'ccos.state.kv.put', args: '"greeting" {:text "hi"}' });
  assert.equal(okOf(put).status, 'completed');
  assert.match(text(put), /completed \(run run-[^)]+\): \{:text "hi"\}/);
  const get = okOf(await call(client, 'ccos_call_capability', { capability: ':ccos.state.kv.get', args: '"greeting"' }));
  assert.equal(get.value, '{:text "hi"}');
  assert.equal(errorOf(await call(client, 'ccos_call_capability', { capability: 'ccos.state.kv.get', args: '"unterminated' })).code, 'parse');
  const unknown = okOf(await call(client, 'ccos_call_capability', { capability: 'no.such.capability' }));
  assert.equal(unknown.status, 'failed');

  // search and show
  const found = okOf(await call(client, 'ccos_search_capabilities', { query: 'COUNTER' })).capabilities as { id: string }[];
  assert.deepEqual(found.map((c) => c.id), ['ccos.state.counter.get', 'ccos.state.counter.inc']);
  const byDescription = okOf(await call(client, 'ccos_search_capabilities', { query: 'event stream' })).capabilities as { id: string }[];
  assert.deepEqual(byDescription.map((c) => c.id), ['ccos.state.event.append']);
  assert.ok((okOf(await call(client, 'ccos_search_capabilities', { query: '' })).capabilities as unknown[]).length >= 10);
  const manifest = okOf(await call(client, 'ccos_get_capability', { id: 'ccos.state.kv.put' })).capability as { id: string; params: unknown[]; effects: { kind: string }[] };
  assert.equal(manifest.id, 'ccos.state.kv.put');
  assert.equal(manifest.params.length, 2);
  const missing = errorOf(await call(client, 'ccos_get_capability', { id: 'nope.nothing' }));
  assert.equal(missing.code, 'not-found');
  assert.match(missing.hint ?? '', /ccos_search_capabilities/);

  // check a program: diagnostics with their place, capabilities named
  const checked = okOf(await call(client, 'ccos_check_program', { source: '(let [x 1]\n  (call :ccos.echo (frobnicate x)))' }));
  assert.equal(checked.ok, false);
  const diags = checked.diagnostics as { severity: string; code: string; line: number; col: number; message: string }[];
  assert.equal(diags.length, 1);
  assert.equal(diags[0].code, 'unbound-symbol');
  assert.equal(diags[0].line, 2);
  assert.equal(diags[0].col, '  (call :ccos.echo (frobnicate x)))'.indexOf('frobnicate') + 1, 'the column of the unbound symbol');
  assert.match(diags[0].message, /frobnicate/);
  assert.deepEqual((checked.capabilities as { id: string }[]).map((c) => c.id), ['ccos.echo']);
  const parseError = okOf(await call(client, 'ccos_check_program', { source: '(+ 1\n' }));
  assert.equal(parseError.ok, false);
  assert.equal((parseError.diagnostics as { code: string }[])[0].code, 'parse');
  assert.equal(okOf(await call(client, 'ccos_check_program', { source: '(step "s" (call :ccos.time.now))' })).ok, true);

  // the cheatsheet: as a tool and as a resource; each of its code blocks checks clean
  const sheet = text(await call(client, 'ccos_rtfs_cheatsheet'));
  for (const word of ['(call ', '(step ', 'step.parallel', '(plan ', ':policy', 'ccos_resume_run']) assert.ok(sheet.includes(word), `cheatsheet mentions ${word}`);
  const blocks = [...sheet.matchAll(/```clojure\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 3);
  for (const b of blocks) {
    const c = okOf(await call(client, 'ccos_check_program', { source: b }));
    assert.equal(c.ok, true, `cheatsheet block does not check:\n${b}\n${JSON.stringify(c.diagnostics)}`);
  }
  const resources = (await client.listResources()).resources;
  assert.ok(resources.some((r) => r.uri === 'ccos://rtfs/cheatsheet'));
  const res = await client.readResource({ uri: 'ccos://rtfs/cheatsheet' });
  assert.equal((res.contents[0] as { text: string }).text, sheet);

  // sample plans: every examples/*.rtfs, verbatim
  const samples = okOf(await call(client, 'ccos_sample_plans')).samples as { name: string; source: string }[];
  const files = readdirSync(examplesDir).filter((f) => f.endsWith('.rtfs')).sort();
  assert.deepEqual(samples.map((s) => s.name), files);
  for (const s of samples) assert.equal(s.source, readFileSync(new URL(s.name, examplesDir), 'utf8'));

  // the chain: one run's actions, filters, limits, verification
  const actions = okOf(await call(client, 'ccos_query_chain', { runId: r2.runId })).actions as { type: string; runId: string; stepPath: string[] }[];
  const types = actions.map((a) => a.type);
  for (const t of ['PlanStarted', 'StepStarted', 'CapabilityCall', 'CapabilityResult', 'PlanCompleted']) assert.ok(types.includes(t), `chain of the run has ${t}: ${types.join(' ')}`);
  assert.ok(actions.every((a) => a.runId === r2.runId));
  assert.ok(actions.some((a) => a.type === 'CapabilityCall' && a.stepPath.join('/') === 'count'));
  const calls = okOf(await call(client, 'ccos_query_chain', { type: 'CapabilityCall', limit: 2 })).actions as { type: string; seq: number }[];
  assert.equal(calls.length, 2);
  assert.ok(calls.every((a) => a.type === 'CapabilityCall'));
  assert.ok(calls[0].seq < calls[1].seq);
  const verify = okOf(await call(client, 'ccos_verify_chain'));
  assert.equal(verify.ok, true);
  assert.ok((verify.actions as number) > 10);
  assert.match(text(await call(client, 'ccos_verify_chain')), /^chain ok: \d+ actions/);

  // a person's answer: pause, then resume over MCP with the answer
  const asked = okOf(await call(client, 'ccos_run_plan', { source: '(let [a (call :ccos.user.ask "Ship?")] (str "answer: " a))' }));
  assert.equal(asked.status, 'paused');
  assert.equal((asked.waiting as { kind: string }).kind, 'answer');
  assert.match(String(asked.next), /ccos_resume_run/);
  const answered = okOf(await call(client, 'ccos_resume_run', { runId: asked.runId, answer: '"yes"' }));
  assert.equal(answered.status, 'completed');
  assert.equal(answered.value, '"answer: yes"');
  assert.equal(errorOf(await call(client, 'ccos_resume_run', { runId: 'run-does-not-exist' })).code, 'not-found');

  // approvals over stdio: the local user decides as the approver they name
  assert.deepEqual(okOf(await call(client, 'ccos_list_approvals', {})).approvals, []);
  assert.equal(errorOf(await call(client, 'ccos_decide_approval', { id: 'apr-none', decision: 'approve', reason: 'ok' })).code, 'invalid-input');
  assert.equal(errorOf(await call(client, 'ccos_decide_approval', { id: 'apr-none', approver: 'alice', decision: 'approve', reason: 'ok' })).code, 'not-found');
});

// -------------------------------------------------------------------------------------------------
// HTTP: bearer tokens, identities, the approval flow

const ALICE_TOKEN = 'alice-token-0123456789abcdef';
const BOB_TOKEN = 'bob-token-0123456789abcdef';
const PLAIN_TOKEN = 'plain-token-0123456789abcdef';

async function httpClient(h: CcosHttpServerHandle, token: string): Promise<Client> {
  const client = new Client({ name: 'ccos-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(h.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  await client.connect(transport);
  cleanups.push(() => client.close());
  return client;
}

function rawRequest(h: CcosHttpServerHandle, headers: Record<string, string>): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
  return new Promise((resolve, reject) => {
    const req = http.request(h.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function accessLog(ccos: Ccos): Record<string, unknown>[] {
  const file = join(ccos.dataDir, 'access.log');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

let httpCcos: Ccos;
let server: CcosHttpServerHandle;

test('HTTP: setup on 127.0.0.1 with bearer tokens mapped to approvers', async () => {
  httpCcos = openCcos({ dataDir: join(dir, 'http-data') });
  cleanups.push(() => httpCcos.close());
  const constitution = join(dir, 'constitution.rtfs');
  writeFileSync(constitution, '{:default :allow :roles {:ops ["alice"]} :rules [{:id :needs-ok :match {:capability "ccos.state.kv.put"} :action :require-approval :approvals 1 :roles [:ops]}]}');
  assert.equal(httpCcos.governance.load(constitution).status, 'active');
  httpCcos.governance.approvals.createApprover('alice');
  httpCcos.governance.approvals.createApprover('bob');

  await assert.rejects(serveHttp(httpCcos, { host: '0.0.0.0', tokens: { [ALICE_TOKEN]: 'alice' } }), /127\.0\.0\.1 only/);
  await assert.rejects(serveHttp(httpCcos, { tokens: {} }), /at least one bearer token/);
  await assert.rejects(serveHttp(httpCcos, { token: 'short' }), /at least 16 characters/);

  server = await serveHttp(httpCcos, { port: 0, tokens: { [ALICE_TOKEN]: 'alice', [BOB_TOKEN]: 'bob' }, token: PLAIN_TOKEN });
  cleanups.push(() => server.close());
  assert.equal(server.host, '127.0.0.1');
  assert.ok(server.port > 0);
  assert.equal(server.url, `http://127.0.0.1:${server.port}/mcp`);
});

test('HTTP: a plan pauses for approval, is approved by the token\'s approver and resumed over MCP', async () => {
  const alice = await httpClient(server, ALICE_TOKEN);
  const bob = await httpClient(server, BOB_TOKEN);
  const plain = await httpClient(server, PLAIN_TOKEN);

  const names = (await alice.listTools()).tools.map((t) => t.name);
  for (const t of ALL_TOOLS) assert.ok(names.includes(t), `missing tool ${t}`);
  assert.equal(okOf(await call(plain, 'ccos_run_plan', { source: '(call :ccos.state.counter.inc "c")' })).value, '1');

  const source = '(let [n (step "prepare" (call :ccos.state.counter.inc "prepared"))]\n  (step "release" (call :ccos.state.kv.put "release" "v2"))\n  {:n n :release (call :ccos.state.kv.get "release")})';
  const paused = okOf(await call(plain, 'ccos_run_plan', { source }));
  assert.equal(paused.status, 'paused', JSON.stringify(paused));
  const waiting = paused.waiting as { kind: string; approval: string; capability: string };
  assert.equal(waiting.kind, 'approval');
  assert.equal(waiting.capability, 'ccos.state.kv.put');
  assert.match(String(paused.next), /ccos_decide_approval/);
  const runId = String(paused.runId);

  // the pending request, over MCP
  const pending = okOf(await call(bob, 'ccos_list_approvals', { status: 'pending' })).approvals as { id: string; runId: string; rule: string; status: string }[];
  assert.equal(pending.length, 1);
  assert.equal(pending[0].id, waiting.approval);
  assert.equal(pending[0].runId, runId);
  assert.equal(pending[0].rule, 'needs-ok');

  // identities: a token decides only as its own approver
  const asAlice = errorOf(await call(bob, 'ccos_decide_approval', { id: waiting.approval, approver: 'alice', decision: 'approve', reason: 'lgtm' }));
  assert.equal(asAlice.code, 'identity-mismatch');
  assert.match(asAlice.message, /authenticated as bob; it may not decide as alice/);
  assert.equal(errorOf(await call(alice, 'ccos_decide_approval', { id: waiting.approval, approver: 'bob', decision: 'deny', reason: 'no' })).code, 'identity-mismatch');
  const anonymous = errorOf(await call(plain, 'ccos_decide_approval', { id: waiting.approval, approver: 'alice', decision: 'approve', reason: 'lgtm' }));
  assert.equal(anonymous.code, 'identity-mismatch');
  assert.match(anonymous.message, /no approver identity/);
  // bob as bob: authenticated, but not in a role the rule needs
  assert.equal(errorOf(await call(bob, 'ccos_decide_approval', { id: waiting.approval, decision: 'approve', reason: 'lgtm' })).code, 'unauthorized-approver');
  const rejected = httpCcos.chain.list({ runId }).filter((a) => a.type === 'ApprovalRejected');
  assert.ok(rejected.some((a) => a.data.identity === 'bob' && a.data.approver === 'alice'), 'the impersonation attempt is on the chain');
  assert.equal(okOf(await call(alice, 'ccos_list_approvals', { status: 'pending' })).approvals instanceof Array, true);
  assert.equal((okOf(await call(alice, 'ccos_list_approvals', { status: 'pending' })).approvals as unknown[]).length, 1, 'still pending');

  // resuming before the decision: still paused
  assert.equal(okOf(await call(plain, 'ccos_resume_run', { runId })).status, 'paused');

  // alice approves (signed with her key from the data dir)
  const decided = await call(alice, 'ccos_decide_approval', { id: waiting.approval, approver: 'alice', decision: 'approve', reason: 'release window open' });
  const approval = okOf(decided).approval as { status: string; decisions: { approver: string; decision: string; keyId: string }[] };
  assert.equal(approval.status, 'approved');
  assert.equal(approval.decisions.length, 1);
  assert.equal(approval.decisions[0].approver, 'alice');
  assert.match(approval.decisions[0].keyId, /^key-/);
  assert.match(text(decided), new RegExp(`ccos_resume_run \\{"runId": "${runId}"\\}`));
  assert.equal(errorOf(await call(alice, 'ccos_decide_approval', { id: waiting.approval, decision: 'approve', reason: 'again' })).code, 'already-decided');

  // resume over MCP: completed; the step before the pause was not run again
  const done = okOf(await call(alice, 'ccos_resume_run', { runId }));
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.equal(done.value, '{:n 1 :release "v2"}');
  assert.equal(okOf(await call(plain, 'ccos_call_capability', { capability: 'ccos.state.counter.get', args: '"prepared"' })).value, '1');

  // the decision is signed and on the chain; the chain verifies
  const chain = okOf(await call(bob, 'ccos_query_chain', { runId })).actions as { type: string; data: Record<string, unknown> }[];
  const decidedAction = chain.find((a) => a.type === 'ApprovalDecided' && a.data.approver === 'alice');
  assert.ok(decidedAction, 'ApprovalDecided by alice on the chain');
  assert.equal(typeof decidedAction.data.signature, 'string');
  assert.ok(chain.some((a) => a.type === 'PlanCompleted'));
  assert.equal(okOf(await call(bob, 'ccos_verify_chain')).ok, true);
  assert.ok(httpCcos.governance.approvals.verifyDecisions().every((d) => d.ok));

  // a call through the gate is governed too (no bypass): it pauses for approval
  const direct = okOf(await call(alice, 'ccos_call_capability', { capability: 'ccos.state.kv.put', args: '"release" "v3"' }));
  assert.equal(direct.status, 'paused');
  assert.equal((direct.waiting as { kind: string }).kind, 'approval');
  const denied = okOf(await call(alice, 'ccos_decide_approval', { id: (direct.waiting as { approval: string }).approval, decision: 'deny', reason: 'not now' })).approval as { status: string };
  assert.equal(denied.status, 'denied');
  assert.equal(okOf(await call(alice, 'ccos_resume_run', { runId: direct.runId })).status, 'failed');
  assert.equal(okOf(await call(alice, 'ccos_call_capability', { capability: 'ccos.state.kv.get', args: '"release"' })).value, '"v2"');
});

test('HTTP: missing, malformed and wrong bearer tokens are rejected with 401 and recorded', async () => {
  const before = accessLog(httpCcos).length;
  const deniedBefore = httpCcos.chain.list().filter((a) => a.type === 'AccessDenied').length;

  const none = await rawRequest(server, {});
  assert.equal(none.status, 401);
  assert.match(String(none.headers['www-authenticate']), /^Bearer /);
  assert.match(none.body, /missing bearer token/);
  const wrong = await rawRequest(server, { authorization: 'Bearer not-the-right-token-at-all' });
  assert.equal(wrong.status, 401);
  const basic = await rawRequest(server, { authorization: `Basic ${Buffer.from('alice:x').toString('base64')}` });
  assert.equal(basic.status, 401);
  const prefix = await rawRequest(server, { authorization: `Bearer ${ALICE_TOKEN.slice(0, -1)}` });
  assert.equal(prefix.status, 401);
  const ok = await rawRequest(server, { authorization: `Bearer ${ALICE_TOKEN}` });
  assert.equal(ok.status, 200, ok.body);
  assert.match(ok.body, /ccos_run_plan/);

  // stateless endpoint: POST only (no hanging GET stream)
  const get = await fetch(server.url, { headers: { authorization: `Bearer ${ALICE_TOKEN}`, accept: 'text/event-stream' } });
  assert.equal(get.status, 405);
  await get.body?.cancel();

  // the SDK client with a wrong token cannot connect
  const intruder = new Client({ name: 'intruder', version: '1.0.0' });
  await assert.rejects(intruder.connect(new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: { Authorization: 'Bearer wrong-token-0123456789abcdef' } } })));
  await intruder.close().catch(() => undefined);

  // a foreign Host header (DNS rebinding) is refused even with a valid token
  const rebound = await rawRequest(server, { authorization: `Bearer ${ALICE_TOKEN}`, host: `evil.example:${server.port}` });
  assert.equal(rebound.status, 403);

  const lines = accessLog(httpCcos).slice(before);
  assert.deepEqual(lines.map((l) => l.reason), ['missing-token', 'wrong-token', 'malformed-authorization', 'wrong-token', 'wrong-token', 'bad-host']);
  for (const l of lines) {
    assert.equal(l.type, 'AccessDenied');
    assert.equal(l.path, '/mcp');
    assert.equal(l.method, 'POST');
    assert.equal(l.remote === '127.0.0.1' || l.remote === '::ffff:127.0.0.1', true, String(l.remote));
    assert.ok(!Number.isNaN(Date.parse(String(l.time))));
  }
  const log = readFileSync(join(httpCcos.dataDir, 'access.log'), 'utf8');
  for (const secret of ['not-the-right-token', 'wrong-token-0123456789abcdef', ALICE_TOKEN, ALICE_TOKEN.slice(0, -1)]) assert.ok(!log.includes(secret), 'tokens are never logged');
  const denied = httpCcos.chain.list().filter((a) => a.type === 'AccessDenied');
  assert.equal(denied.length - deniedBefore, 6);
  assert.equal(denied.at(-1)!.data.reason, 'bad-host');
  assert.equal(httpCcos.verifyChain().ok, true);
});

test('ccos serve: usage errors (no --mcp, no token, bad port, other hosts)', async () => {
  const ccos = openCcos({ dataDir: join(dir, 'cli-data') });
  cleanups.push(() => ccos.close());
  const stderr = process.stderr.write.bind(process.stderr);
  const errors: string[] = [];
  process.stderr.write = ((s: string) => (errors.push(String(s)), true)) as typeof process.stderr.write;
  try {
    assert.equal(await serveCommands.serve.run(ccos, ['--token', PLAIN_TOKEN], false), 2);
    assert.match(errors.join(''), /needs --mcp/);
    assert.equal(await serveCommands.serve.run(ccos, ['--mcp'], false), 2);
    assert.match(errors.join(''), /needs a bearer token/);
    assert.equal(await serveCommands.serve.run(ccos, ['--mcp', '--port', 'x', '--token', PLAIN_TOKEN], false), 2);
    assert.equal(await serveCommands.serve.run(ccos, ['--mcp', '--host', '0.0.0.0', '--token', PLAIN_TOKEN], false), 2);
    assert.equal(await serveCommands.serve.run(ccos, ['--mcp', '--approver-token', 'alice'], false), 2);
    assert.equal(await serveCommands.serve.run(ccos, ['--mcp', '--bogus'], false), 2);
    assert.equal(await serveCommands.mcp.run(ccos, ['extra'], false), 2);
    await assert.rejects(serveCommands.serve.run(ccos, ['--mcp', '--token-file', join(dir, 'no-such-file')], false), /cannot read the token file/);
  } finally {
    process.stderr.write = stderr;
  }
  assert.ok(!errors.join('').includes(PLAIN_TOKEN), 'tokens are never printed');
  assert.ok(serveCommands.serve.usage.includes('--approver-token NAME=TOKEN'));
  // the cheatsheet's own examples are valid RTFS (checked without a server too)
  assert.equal(checkProgram('(call :ccos.echo 1)', 'x').diagnostics.length, 0);
});

test('ccos serve --mcp in a child process: prints the URL, serves with the token, stops on SIGTERM', async () => {
  const dataDir = join(dir, 'serve-data');
  const script = join(dir, 'serve-http.mjs');
  writeFileSync(
    script,
    `import { openCcos } from ${JSON.stringify(LIB)};
import { serveCommands } from ${JSON.stringify(COMMANDS)};
const ccos = openCcos({ dataDir: process.argv[2] });
process.exitCode = await serveCommands.serve.run(ccos, process.argv.slice(3), true);
ccos.close();
`,
  );
  const tokenFile = join(dir, 'token.txt');
  writeFileSync(tokenFile, `${PLAIN_TOKEN}\n`);
  const child = spawn(process.execPath, [script, dataDir, '--mcp', '--port', '0', '--token-file', tokenFile, '--approver-token', `alice=${ALICE_TOKEN}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(() => void child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c;
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.once('exit', () => reject(new Error(`serve exited early: ${out} ${err}`)));
  });
  const started = JSON.parse(line) as { ok: boolean; url: string; port: number; approvers: string[]; durability: string };
  assert.equal(started.ok, true);
  assert.equal(started.durability, 'normal');
  assert.match(started.url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  assert.deepEqual(started.approvers, ['alice']);
  assert.ok(!out.includes(PLAIN_TOKEN) && !out.includes(ALICE_TOKEN) && !err.includes(PLAIN_TOKEN) && !err.includes(ALICE_TOKEN), 'tokens are never printed');
  const client = new Client({ name: 'ccos-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(started.url), { requestInit: { headers: { Authorization: `Bearer ${PLAIN_TOKEN}` } } }));
  assert.equal(okOf(await call(client, 'ccos_run_plan', { source: '(call :ccos.state.counter.inc "served")' })).value, '1');
  await client.close();
  child.kill('SIGTERM');
  assert.equal(await exited, 0, err);
  assert.match(err, /alice is not a registered approver/, 'warns about tokens of unknown approvers');
  assert.ok(!err.includes(PLAIN_TOKEN) && !err.includes(ALICE_TOKEN), 'tokens are never printed');
});

test('ccos mcp --durability fenced, through the CLI: the node says its durability, and plans run', async () => {
  const cli = fileURLToPath(new URL('../src/cli/ccos.js', import.meta.url));
  const transport = new StdioClientTransport({ command: process.execPath, args: [cli, '--data-dir', join(dir, 'fenced-data'), 'mcp', '--durability', 'fenced'], stderr: 'pipe', cwd: dir });
  let err = '';
  transport.stderr!.on('data', (c: Buffer) => (err += c));
  const client = new Client({ name: 'ccos-test', version: '1.0.0' });
  await client.connect(transport);
  cleanups.push(() => client.close());
  const r = okOf(await call(client, 'ccos_run_plan', { source: '(do (call :ccos.state.counter.inc "c") (call :ccos.state.counter.inc "c"))' }));
  assert.equal(r.status, 'completed');
  assert.equal(r.value, '2');
  assert.match(err, /MCP server on stdio \(data dir .*fenced-data, durability fenced\)/);
});
