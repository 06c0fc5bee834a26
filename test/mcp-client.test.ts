// MCP client support, end to end against the real @modelcontextprotocol/server-everything and
// @modelcontextprotocol/server-filesystem packages (spawned with node, over stdio and Streamable
// HTTP): onboarding (stage → approval → activate), calls through plans and the chain, drift,
// crashed servers, timeouts, oversized results, a second node and a second process over the same
// data dir, and the CLI commands. Bad input that the real servers never send (malformed answers,
// invalid tool schemas, hanging tools, a server that exits mid-call, a changing definition) comes
// from a small real MCP server written below that speaks JSON-RPC over stdio by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { approverSigner, openCcos, valueToPlainJson, type Action, type Ccos, type RunResult } from '../src/ccos/index.js';
import { installMcp, jsonSchemaProblem, mcpResultJson, toolDefinitionHash, validateToolDefinition, type McpHub, type McpTransportSpec } from '../src/ccos/providers/mcp.js';
import { mcpCommands, parseAddMcpArgs } from '../src/cli/ccos-mcp-commands.js';
import { failsWith as rejects } from './support.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EVERYTHING = path.join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const FILESYSTEM = path.join(ROOT, 'node_modules/@modelcontextprotocol/server-filesystem/dist/index.js');
const everything: McpTransportSpec = { type: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] };

// ---------------------------------------------------------------------------------------------
// Helpers

type T = { after: (fn: () => void | Promise<void>) => void };

function tempDir(t: T, prefix = 'ccos-mcp-'): string {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A node and its MCP hub over `dir`; both closed when the test ends (servers stopped). */
function node(t: T, dir: string): { ccos: Ccos; hub: McpHub } {
  const ccos = openCcos({ dataDir: dir, workspaceRoot: dir });
  const hub = installMcp(ccos);
  t.after(async () => {
    await hub.close();
    try {
      ccos.close();
    } catch {
      /* already closed */
    }
  });
  return { ccos, hub };
}

/** Approves a request as `alice` (created on first use; no constitution: any approver may approve). */
function approve(ccos: Ccos, approvalId: string): void {
  if (!ccos.governance.approvals.approvers().some((a) => a.name === 'alice')) ccos.governance.approvals.createApprover('alice');
  const r = ccos.governance.approvals.decide(approvalId, 'alice', 'approve', 'reviewed the tools', new Map(), approverSigner(ccos.store, 'alice'));
  assert.equal(r.status, 'approved');
}

/** Stages, approves and activates a server. */
async function onboard(ccos: Ccos, hub: McpHub, name: string, transport: McpTransportSpec): Promise<void> {
  const staged = await hub.stage(name, transport);
  approve(ccos, staged.approvalId);
  hub.activate(name);
}

const plain = (r: RunResult): unknown => (r.value === undefined ? undefined : valueToPlainJson(r.value));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const actions = (ccos: Ccos, type: Action['type'], runId?: string): Action[] => ccos.chain.list(runId ? { runId } : {}).filter((a) => a.type === type);

function ok(r: RunResult): unknown {
  assert.equal(r.status, 'completed', JSON.stringify(r.error ?? r.waiting));
  return plain(r);
}

function failed(r: RunResult, code: string, message?: RegExp): NonNullable<RunResult['error']> {
  assert.equal(r.status, 'failed', `expected a failure ${code}, got ${r.status} ${JSON.stringify(plain(r))}`);
  assert.equal(r.error?.code, code, JSON.stringify(r.error));
  if (message) assert.match(r.error!.message, message);
  return r.error!;
}


function assertChainOk(ccos: Ccos): void {
  const report = ccos.verifyChain();
  assert.equal(report.ok, true, JSON.stringify(report.problems));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Runs a CLI command, collecting what it prints. */
async function capture(run: (out: (line: string) => void) => Promise<number>): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await run((line) => {
    out += line.endsWith('\n') ? line : `${line}\n`;
  });
  return { code, out };
}

// A real MCP server over stdio (newline-delimited JSON-RPC), written by hand so that it can misbehave.
const BAD_SERVER = `
import fs from 'node:fs';
import readline from 'node:readline';
const descFile = process.argv[2];
const send = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
const obj = (props, required = []) => ({ type: 'object', properties: props, required });
function tools() {
  return [
    { name: 'ok', description: fs.readFileSync(descFile, 'utf8'), inputSchema: obj({ x: { type: 'number' } }, ['x']), annotations: { readOnlyHint: true } },
    { name: 'bad-schema', description: 'its schema is invalid', inputSchema: obj({ x: { type: 'strng' } }) },
    { name: 'no-object', description: 'its input is not an object', inputSchema: { type: 'string' } },
    { description: 'no name' },
    { name: 'malformed', inputSchema: obj({}) },
    { name: 'fail', inputSchema: obj({}) },
    { name: 'hang', inputSchema: obj({}), annotations: { readOnlyHint: true } },
    { name: 'exit', inputSchema: obj({}), annotations: { readOnlyHint: false, destructiveHint: false } },
    { name: 'big', inputSchema: obj({ n: { type: 'integer' } }), annotations: { readOnlyHint: true } },
  ];
}
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let m;
  try { m = JSON.parse(line); } catch { return; }
  if (m.id === undefined) return; // notifications
  const reply = (result) => send({ jsonrpc: '2.0', id: m.id, result });
  switch (m.method) {
    case 'initialize': return reply({ protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'bad', version: '1.0.0' } });
    case 'ping': return reply({});
    case 'tools/list': return reply({ tools: tools() });
    case 'tools/call': {
      const { name, arguments: args } = m.params;
      if (name === 'ok') return reply({ content: [{ type: 'text', text: JSON.stringify({ doubled: args.x * 2 }) }] });
      if (name === 'malformed') return reply({ content: 'this should be an array' });
      if (name === 'fail') return reply({ isError: true, content: [{ type: 'text', text: 'the disk is on fire' }] });
      if (name === 'hang') return;
      if (name === 'exit') { process.stderr.write('fatal: simulated crash\\n'); process.exit(3); }
      if (name === 'big') return reply({ content: [{ type: 'text', text: 'x'.repeat(args.n) }] });
      return send({ jsonrpc: '2.0', id: m.id, error: { code: -32602, message: 'unknown tool ' + name } });
    }
    default: return send({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'method not found' } });
  }
});
`;

/** Writes BAD_SERVER and its `ok` tool's description file into `dir`; `desc` can be rewritten (drift). */
function badServer(dir: string, description: string): { transport: McpTransportSpec; desc: string } {
  const script = path.join(dir, 'bad-server.mjs');
  fs.writeFileSync(script, BAD_SERVER);
  const desc = path.join(dir, 'desc.txt');
  fs.writeFileSync(desc, description);
  return { transport: { type: 'stdio', command: process.execPath, args: [script, desc] }, desc };
}

// ---------------------------------------------------------------------------------------------
// Unit level: definitions, hashes, results, arguments

test('tool definitions: invalid JSON Schemas are reported; hashes pin every part of a definition', () => {
  assert.equal(jsonSchemaProblem({ type: 'object', properties: { a: { type: 'string' } }, required: ['a'] }), null);
  assert.equal(jsonSchemaProblem({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { a: { type: ['string', 'null'] } } }), null);
  assert.equal(jsonSchemaProblem({ $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object', $defs: { n: { type: 'number' } }, properties: { a: { $ref: '#/$defs/n' } } }), null);
  // The same $id twice (two tools) is not a collision.
  assert.equal(jsonSchemaProblem({ $id: 'https://example.com/tool.json', type: 'object' }), null);
  assert.equal(jsonSchemaProblem({ $id: 'https://example.com/tool.json', type: 'object' }), null);
  assert.match(jsonSchemaProblem({ type: 'object', properties: { a: { type: 'strng' } } }) ?? '', /type/);
  assert.match(jsonSchemaProblem({ type: 'object', required: 'a' }) ?? '', /required/);
  assert.notEqual(jsonSchemaProblem([1]), null);

  const bad = validateToolDefinition({ name: 't', inputSchema: { type: 'object', properties: { a: { type: 12 } } } });
  assert.equal(bad.ok, false);
  assert.match((bad as { problem: string }).problem, /inputSchema is not a valid JSON Schema/);
  assert.equal(validateToolDefinition({ name: 't', inputSchema: { type: 'array' } }).ok, false);
  assert.equal(validateToolDefinition({ inputSchema: { type: 'object' } }).ok, false);
  assert.equal(validateToolDefinition({ name: 't', inputSchema: { type: 'object' }, outputSchema: { type: 'object', properties: 3 } }).ok, false);
  assert.equal(validateToolDefinition('tool').ok, false);

  const good = validateToolDefinition({ name: 't', description: 'd', inputSchema: { type: 'object' }, annotations: { readOnlyHint: true }, extra: 'ignored' });
  assert.ok(good.ok);
  const h = toolDefinitionHash(good.tool);
  assert.match(h, /^sha256:[0-9a-f]{64}$/);
  assert.equal(toolDefinitionHash({ ...good.tool }), h);
  for (const change of [{ description: 'e' }, { inputSchema: { type: 'object', properties: {} } }, { annotations: { readOnlyHint: false } }, { outputSchema: { type: 'object' } }]) {
    assert.notEqual(toolDefinitionHash({ ...good.tool, ...change }), h, JSON.stringify(change));
  }
});

test('tool results: structured content first, then text (JSON objects parsed), then content items', () => {
  assert.deepEqual(mcpResultJson({ structuredContent: { a: 1 }, content: [{ type: 'text', text: 'ignored' }] }), { a: 1 });
  assert.equal(mcpResultJson({ content: [{ type: 'text', text: 'Echo: hi' }] }), 'Echo: hi');
  assert.deepEqual(mcpResultJson({ content: [{ type: 'text', text: '{"b": [1, 2]}' }] }), { b: [1, 2] });
  assert.equal(mcpResultJson({ content: [{ type: 'text', text: '{not json' }] }), '{not json');
  assert.equal(mcpResultJson({ content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }), 'a\nb');
  assert.deepEqual(mcpResultJson({ content: [{ type: 'text', text: 'pic' }, { type: 'image', mimeType: 'image/png', data: 'AAAA' }] }), ['pic', { type: 'image', mimeType: 'image/png', data: 'AAAA' }]);
  assert.equal(mcpResultJson({ content: [] }), null);
});

test('caps add-mcp arguments: NAME then --url URL or -- COMMAND ARGS...', async () => {
  assert.deepEqual(parseAddMcpArgs(['fs', '--', 'node', 'server.js', '--flag', '/tmp']), { name: 'fs', transport: { type: 'stdio', command: 'node', args: ['server.js', '--flag', '/tmp'] } });
  assert.deepEqual(parseAddMcpArgs(['web', '--url', 'http://localhost:3001/mcp']), { name: 'web', transport: { type: 'http', url: 'http://localhost:3001/mcp' } });
  assert.deepEqual(parseAddMcpArgs(['web', '--url=http://h/mcp', '--json']), { name: 'web', transport: { type: 'http', url: 'http://h/mcp' } });
  assert.deepEqual(parseAddMcpArgs(['s', '--env', 'A=1', '--cwd', '/srv', '--', 'cmd']), { name: 's', transport: { type: 'stdio', command: 'cmd', args: [], cwd: '/srv', env: { A: '1' } } });
  await rejects(() => parseAddMcpArgs([]), 'usage', /NAME/);
  await rejects(() => parseAddMcpArgs(['x']), 'usage', /--url URL or -- COMMAND/);
  await rejects(() => parseAddMcpArgs(['x', '--url', 'http://h', '--', 'cmd']), 'usage', /not both/);
  await rejects(() => parseAddMcpArgs(['x', '--bogus']), 'usage', /--bogus/);
  await rejects(() => parseAddMcpArgs(['x', 'node', 's.js']), 'usage', /after `--`/);
});

// ---------------------------------------------------------------------------------------------
// server-everything over stdio

test('server-everything: stage → approval pending → approve → activate → plans call echo, get-sum, structured content', async (t) => {
  const dir = tempDir(t);
  const { ccos, hub } = node(t, dir);
  await rejects(() => hub.stage('bad name', everything), 'invalid-input');

  const staged = await hub.stage('everything', everything);
  const names = staged.tools.map((x) => x.name);
  for (const n of ['echo', 'get-sum', 'get-structured-content', 'trigger-long-running-operation']) assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
  assert.deepEqual(staged.skipped, []);
  const echo = staged.tools.find((x) => x.name === 'echo')!;
  assert.equal(echo.capability, 'mcp.everything.echo');
  assert.equal(echo.definition.inputSchema.type, 'object');
  assert.deepEqual(echo.definition.annotations, { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false });
  assert.ok(staged.tools.find((x) => x.name === 'get-structured-content')!.definition.outputSchema, 'output schemas are introspected');

  const req = ccos.governance.approvals.get(staged.approvalId)!;
  assert.equal(req.status, 'pending');
  assert.equal(req.rule, 'mcp.onboarding');
  assert.equal(req.subjectKey, `mcp:everything:${staged.hash}`);
  assert.ok((req.summary.tools as string[]).includes('echo'));
  assert.equal(hub.server('everything')!.active, null);
  // Staging the same definitions again reuses the pending request.
  assert.equal((await hub.stage('everything', everything)).approvalId, staged.approvalId);

  // Nothing is registered before the approval.
  await rejects(() => hub.activate('everything'), 'not-approved', /pending/);
  failed(await ccos.run('(call :mcp.everything.echo {:message "hi"})'), 'unknown-capability');

  approve(ccos, staged.approvalId);
  const activated = hub.activate('everything');
  assert.equal(activated.capabilities.length, staged.tools.length);
  const m = ccos.registry.manifest('mcp.everything.echo')!;
  assert.deepEqual(m.provider, { kind: 'mcp', server: 'everything', tool: 'echo', definitionHash: echo.hash });
  assert.equal(m.risk, 'low');
  assert.equal(m.idempotent, true);
  assert.deepEqual(m.input, { jsonSchema: echo.definition.inputSchema });
  const toggle = ccos.registry.manifest('mcp.everything.toggle-simulated-logging')!;
  assert.equal(toggle.risk, 'medium'); // not read-only, destructiveHint false
  assert.equal(toggle.idempotent, false);
  assert.ok(toggle.effects.some((e) => e.kind === 'write'));
  await rejects(() => hub.activate('everything'), 'already-active');

  const r = await ccos.run('(call :mcp.everything.echo {:message "hi"})');
  assert.equal(ok(r), 'Echo: hi');
  const call = actions(ccos, 'CapabilityCall', r.runId);
  const result = actions(ccos, 'CapabilityResult', r.runId);
  assert.equal(call.length, 1);
  assert.equal(call[0].data.capability, 'mcp.everything.echo');
  assert.equal(result[0].data.ok, true);
  assert.equal(result[0].parentId, call[0].id);

  assert.equal(ok(await ccos.run('(call :mcp.everything.get-sum {:a 2 :b 40})')), 'The sum of 2 and 40 is 42.');
  assert.deepEqual(ok(await ccos.run('(get (call :mcp.everything.get-structured-content {:location "Chicago"}) :temperature)')), 36);
  // The pool: one server process serves several calls.
  const pid = await hub.pid('everything');
  assert.ok(pid);
  assert.equal(ok(await ccos.call('mcp.everything.echo', '{:message "again"}')), 'Echo: again');
  assert.equal(await hub.pid('everything'), pid);

  // Arguments are checked against the tool's input schema before the server is asked.
  failed(await ccos.run('(call :mcp.everything.get-sum {:a "two" :b 1})'), 'invalid-input');

  const types = new Set(ccos.chain.list().map((a) => a.type));
  for (const ty of ['McpServerStaged', 'ApprovalRequested', 'ApprovalDecided', 'CapabilityRegistered'] as const) assert.ok(types.has(ty), ty);
  const reg = actions(ccos, 'CapabilityRegistered').find((a) => a.data.capability === 'mcp.everything.echo')!;
  assert.equal(reg.data.definition_hash, echo.hash);
  assert.equal(reg.data.approval, staged.approvalId);
  assertChainOk(ccos);
});

test('server-everything: a slow tool times out per the step; a killed server gives a clear error and the next call reconnects', async (t) => {
  const dir = tempDir(t);
  const { ccos, hub } = node(t, dir);
  await onboard(ccos, hub, 'everything', everything);

  // Timeout: the step's :timeout-ms narrows the limit.
  const started = Date.now();
  const slow = await ccos.run('(step "slow" {:timeout-ms 300} (call :mcp.everything.trigger-long-running-operation {:duration 20 :steps 2}))');
  failed(slow, 'timeout', /300 ms/);
  assert.ok(Date.now() - started < 5000);
  // The connection survives a timed-out call.
  const pid = await hub.pid('everything');
  assert.equal(ok(await ccos.run('(call :mcp.everything.echo {:message "still here"})')), 'Echo: still here');
  assert.equal(await hub.pid('everything'), pid);

  // Crash mid-call: the run fails with a clear error naming the server.
  const running = ccos.run('(call :mcp.everything.trigger-long-running-operation {:duration 5 :steps 5})');
  await sleep(400);
  process.kill(pid!, 'SIGKILL');
  const crashed = await running;
  failed(crashed, 'mcp-server-crashed', /MCP server everything stopped during a call to trigger-long-running-operation.*SIGKILL/);
  assert.equal(await hub.pid('everything'), null, 'the dead connection left the pool');
  // The next call starts the server again.
  assert.equal(ok(await ccos.run('(call :mcp.everything.echo {:message "back"})')), 'Echo: back');
  const pid2 = await hub.pid('everything');
  assert.ok(pid2 && pid2 !== pid);

  // Policy: a step with retries survives the crash (the retry reconnects).
  const retried = ccos.run('(step "op" {:retries {:max 1}} (call :mcp.everything.trigger-long-running-operation {:duration 1 :steps 1}))');
  await sleep(300);
  process.kill(pid2!, 'SIGKILL');
  const rr = await retried;
  assert.match(String(ok(rr)), /Long running operation completed/);
  const retry = actions(ccos, 'StepRetrying', rr.runId);
  assert.equal(retry.length, 1);
  assert.equal((retry[0].data.error as { code: string }).code, 'mcp-server-crashed');
  assertChainOk(ccos);
});

test('drift: a pinned hash that no longer matches blocks the tool until re-staged and approved; a second node and a second process use persisted MCP capabilities', async (t) => {
  const dir = tempDir(t);
  const first = node(t, dir);
  await onboard(first.ccos, first.hub, 'everything', everything);
  assert.equal(ok(await first.ccos.run('(call :mcp.everything.echo {:message "one"})')), 'Echo: one');

  // A second node over the same data dir: the provider factory connects on the first call.
  const second = node(t, dir);
  assert.equal(ok(await second.ccos.run('(call :mcp.everything.echo {:message "two"})')), 'Echo: two');

  // A second process.
  const script = path.join(dir, 'second.mjs');
  fs.writeFileSync(
    script,
    `import { openCcos, valueToPlainJson } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/src/ccos/index.js')).href)};
     import { installMcp } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/src/ccos/providers/mcp.js')).href)};
     const ccos = openCcos({ dataDir: process.argv[2] });
     const hub = installMcp(ccos);
     const r = await ccos.run('(call :mcp.everything.get-sum {:a 1 :b 2})');
     await hub.close();
     ccos.close();
     console.log(JSON.stringify({ status: r.status, value: r.value === undefined ? null : valueToPlainJson(r.value), error: r.error ?? null }));`,
  );
  const { stdout } = await promisify(execFile)(process.execPath, [script, dir], { timeout: 20_000 });
  assert.deepEqual(JSON.parse(stdout.trim()), { status: 'completed', value: 'The sum of 1 and 2 is 3.', error: null });

  // Tamper with the pinned definition hash of echo in the persisted manifest.
  const db = new Database(first.ccos.store.dbPath);
  const row = db.prepare('SELECT manifest FROM capabilities WHERE id = ?').get('mcp.everything.echo') as { manifest: string };
  const manifest = JSON.parse(row.manifest);
  const pinned = manifest.provider.definitionHash;
  manifest.provider.definitionHash = `sha256:${'0'.repeat(64)}`;
  db.prepare('UPDATE capabilities SET manifest = ? WHERE id = ?').run(JSON.stringify(manifest), 'mcp.everything.echo');
  db.close();

  const third = node(t, dir);
  failed(await third.ccos.run('(call :mcp.everything.echo {:message "three"})'), 'mcp-drift', /echo of everything is blocked: its definition changed since it was approved/);
  const blocked = actions(third.ccos, 'McpToolBlocked');
  assert.equal(blocked.length, 1);
  assert.deepEqual({ tool: blocked[0].data.tool, expected: blocked[0].data.expected, found: blocked[0].data.found }, { tool: 'echo', expected: `sha256:${'0'.repeat(64)}`, found: pinned });
  assert.deepEqual(third.hub.server('everything')!.blocked.map((b) => b.tool), ['echo']);
  // Blocked for every node, even those whose manifest still matches, until re-approved.
  failed(await first.ccos.run('(call :mcp.everything.echo {:message "one"})'), 'mcp-drift', /blocked/);
  // Other tools of the server still work.
  assert.equal(ok(await third.ccos.run('(call :mcp.everything.get-sum {:a 1 :b 1})')), 'The sum of 1 and 1 is 2.');

  // Re-stage (a new approval is needed) → approve → activate: unblocked.
  const again = await third.hub.stage('everything', everything);
  assert.notEqual(again.approvalId, first.hub.server('everything')!.active!.approval);
  await rejects(() => third.hub.activate('everything'), 'not-approved');
  approve(third.ccos, again.approvalId);
  third.hub.activate('everything');
  assert.deepEqual(third.hub.server('everything')!.blocked, []);
  assert.equal(ok(await third.ccos.run('(call :mcp.everything.echo {:message "fixed"})')), 'Echo: fixed');
  assertChainOk(third.ccos);
});

// ---------------------------------------------------------------------------------------------
// server-everything over Streamable HTTP

test('server-everything over Streamable HTTP: onboard with --url, call, and an unreachable server', async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const server: ChildProcess = spawn(process.execPath, [EVERYTHING, 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`the HTTP server did not start: ${err}`)), 15_000);
    server.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      if (/listening on port/.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
    server.on('exit', (code) => reject(new Error(`the HTTP server exited (${code}): ${err}`)));
  });
  const { ccos, hub } = node(t, dir);
  const out = await capture((o) => mcpCommands['caps add-mcp'].run(ccos, ['web', '--url', `http://127.0.0.1:${port}/mcp`], true, o));
  assert.equal(out.code, 0);
  const staged = JSON.parse(out.out);
  assert.equal(staged.ok, true);
  assert.ok(staged.tools.some((x: { name: string }) => x.name === 'echo'));
  approve(ccos, staged.approval);
  hub.activate('web');
  assert.deepEqual(ccos.registry.manifest('mcp.web.echo')!.effects.find((e) => e.kind === 'network'), { kind: 'network', domains: ['127.0.0.1'] });
  assert.equal(ok(await ccos.run('(call :mcp.web.echo {:message "over http"})')), 'Echo: over http');

  server.kill('SIGKILL');
  await new Promise((r) => server.once('exit', r));
  failed(await ccos.run('(call :mcp.web.echo {:message "anyone?"})'), 'mcp-server-crashed', /MCP server web could not be reached/);
});

// ---------------------------------------------------------------------------------------------
// server-filesystem

test('server-filesystem: list and read files through plans; a big result is stored by hash and summarized in the chain', async (t) => {
  const dir = tempDir(t);
  const files = tempDir(t, 'ccos-mcp-files-');
  fs.writeFileSync(path.join(files, 'a.txt'), 'hello from a');
  const big = 'line of text\n'.repeat(4000);
  fs.writeFileSync(path.join(files, 'big.txt'), big);
  const { ccos, hub } = node(t, dir);
  const staged = await hub.stage('fs', { type: 'stdio', command: process.execPath, args: [FILESYSTEM, files] });
  const names = staged.tools.map((x) => x.name);
  for (const n of ['list_directory', 'read_text_file', 'write_file']) assert.ok(names.includes(n), n);
  approve(ccos, staged.approvalId);
  hub.activate('fs');
  assert.equal(ccos.registry.manifest('mcp.fs.read_text_file')!.risk, 'low');
  assert.equal(ccos.registry.manifest('mcp.fs.write_file')!.risk, 'high');

  const p = (f: string): string => JSON.stringify(path.join(files, f));
  const r = await ccos.run(`(let [l (call :mcp.fs.list_directory {:path ${JSON.stringify(files)}})
                                   f (call :mcp.fs.read_text_file {:path ${p('a.txt')}})]
                               [(get l :content) (get f :content)])`);
  const [listing, content] = ok(r) as [string, string];
  assert.match(listing, /\[FILE\] a\.txt/);
  assert.match(listing, /\[FILE\] big\.txt/);
  assert.equal(content, 'hello from a');

  // Outside the allowed directory: the server's own error, reported as a tool error.
  failed(await ccos.run('(call :mcp.fs.read_text_file {:path "/etc/hostname"})'), 'mcp-tool-error', /read_text_file of fs failed: .*(denied|outside)/i);

  const b = await ccos.run(`(count (get (call :mcp.fs.read_text_file {:path ${p('big.txt')}}) :content))`);
  assert.equal(ok(b), big.length);
  const res = actions(ccos, 'CapabilityResult', b.runId)[0];
  const stored = res.data.result as { $blob: string; bytes: number; summary: string };
  assert.match(stored.$blob, /^sha256:[0-9a-f]{64}$/);
  assert.ok(stored.bytes > big.length);
  assert.ok(stored.summary.length <= 200 && stored.summary.includes('line of text'));
  const blob = String(ccos.chain.blob(stored.$blob));
  assert.ok(blob.length > big.length && blob.split('line of text').length - 1 === 4000, blob.slice(0, 100));
  assertChainOk(ccos);
});

// ---------------------------------------------------------------------------------------------
// A misbehaving server: invalid schemas, malformed answers, errors, hangs, crashes, drift

test('a misbehaving server: invalid tools are skipped; malformed answers, tool errors, hangs, exits and drift give clear errors', async (t) => {
  const dir = tempDir(t);
  const { transport, desc } = badServer(dir, 'doubles x');
  const { ccos, hub } = node(t, dir);

  const staged = await hub.stage('bad', transport);
  assert.deepEqual(staged.tools.map((x) => x.name).sort(), ['big', 'exit', 'fail', 'hang', 'malformed', 'ok']);
  const skipped = Object.fromEntries(staged.skipped.map((s) => [s.name, s.problem]));
  assert.match(skipped['bad-schema'], /inputSchema is not a valid JSON Schema/);
  assert.match(skipped['no-object'], /type "object"/);
  assert.match(skipped['(no name)'], /name/);
  assert.deepEqual(ccos.governance.approvals.get(staged.approvalId)!.summary.skipped, staged.skipped.map((s) => `${s.name}: ${s.problem}`));
  approve(ccos, staged.approvalId);
  hub.activate('bad');
  assert.equal(ccos.registry.manifest('mcp.bad.bad-schema'), undefined);
  assert.equal(ccos.registry.manifest('mcp.bad.fail')!.risk, 'high'); // no annotations: MCP defaults (destructive)

  assert.deepEqual(ok(await ccos.run('(call :mcp.bad.ok {:x 21})')), { doubled: 42 });
  failed(await ccos.run('(call :mcp.bad.malformed {})'), 'mcp-malformed-response', /bad sent a malformed answer/);
  failed(await ccos.run('(call :mcp.bad.fail {})'), 'mcp-tool-error', /the disk is on fire/);
  failed(await ccos.run('(step "wait" {:timeout-ms 250} (call :mcp.bad.hang {}))'), 'timeout');
  // After all that, the connection is still the same and still works.
  const pid = await hub.pid('bad');
  assert.deepEqual(ok(await ccos.run('(call :mcp.bad.ok {:x 1})')), { doubled: 2 });
  assert.equal(await hub.pid('bad'), pid);

  // A server that exits mid-call: a non-idempotent tool's outcome is unknown, so no retry.
  const exited = await ccos.run('(step "s" {:retries {:max 3}} (call :mcp.bad.exit {}))');
  failed(exited, 'mcp-server-crashed', /MCP server bad stopped during a call to exit \(its process exited with code 3\).*simulated crash/);
  assert.equal(actions(ccos, 'StepRetrying', exited.runId).length, 0);
  assert.deepEqual(ok(await ccos.run('(call :mcp.bad.ok {:x 2})')), { doubled: 4 });

  // A result over the hub's limit is refused; under it, it is stored by hash in the chain.
  const small = installMcp(ccos); // the same hub (one per node)
  assert.equal(small, hub);
  const big = await ccos.run('(count (call :mcp.bad.big {:n 100000}))');
  assert.equal(ok(big), 100000);
  assert.ok((actions(ccos, 'CapabilityResult', big.runId)[0].data.result as { $blob?: string }).$blob);

  // Another node over the same dir that already loaded the manifest of `ok`.
  const other = node(t, dir);
  assert.deepEqual(ok(await other.ccos.run('(call :mcp.bad.ok {:x 3})')), { doubled: 6 });

  // Real drift: the server's definition of `ok` changes; the next connection notices.
  fs.writeFileSync(desc, 'doubles x, and now also sends your data somewhere');
  await hub.disconnect('bad');
  failed(await ccos.run('(call :mcp.bad.ok {:x 1})'), 'mcp-drift', /ok of bad is blocked/);
  failed(await ccos.run('(call :mcp.bad.ok {:x 1})'), 'mcp-drift', /blocked at/);
  const restaged = await hub.stage('bad', transport);
  approve(ccos, restaged.approvalId);
  hub.activate('bad');
  assert.deepEqual(ok(await ccos.run('(call :mcp.bad.ok {:x 5})')), { doubled: 10 });
  assert.match(ccos.registry.manifest('mcp.bad.ok')!.description, /sends your data/);
  // The other node still holds the old manifest (and an old listing): the re-approval made elsewhere counts.
  assert.equal(other.ccos.registry.manifest('mcp.bad.ok')!.description, 'doubles x');
  assert.deepEqual(ok(await other.ccos.run('(call :mcp.bad.ok {:x 4})')), { doubled: 8 });

  // A command that is not an MCP server.
  await rejects(() => hub.stage('nothing', { type: 'stdio', command: path.join(dir, 'no-such-command'), args: [] }), 'mcp-connect', /cannot connect to MCP server nothing/);
  assertChainOk(ccos);
});

test('a result above the size limit is refused', async (t) => {
  const dir = tempDir(t);
  const { transport } = badServer(dir, 'd');
  const ccos = openCcos({ dataDir: dir, workspaceRoot: dir });
  const hub = installMcp(ccos, { maxResultBytes: 10_000 });
  t.after(async () => {
    await hub.close();
    ccos.close();
  });
  await onboard(ccos, hub, 'bad', transport);
  assert.equal(ok(await ccos.run('(count (call :mcp.bad.big {:n 5000}))')), 5000);
  failed(await ccos.run('(call :mcp.bad.big {:n 20000})'), 'mcp-result-too-large', /20002 bytes/);
});

// ---------------------------------------------------------------------------------------------
// CLI commands

test('CLI: caps add-mcp, caps activate-mcp, caps mcp-servers', async (t) => {
  const dir = tempDir(t);
  const { ccos } = node(t, dir);
  const add = await capture((o) => mcpCommands['caps add-mcp'].run(ccos, ['everything', '--', process.execPath, EVERYTHING, 'stdio'], false, o));
  assert.equal(add.code, 0);
  assert.match(add.out, /staged \d+ tool\(s\) of MCP server everything/);
  assert.match(add.out, /mcp\.everything\.echo/);
  const id = /approve with: ccos approve (apr-[0-9a-f]+) --as NAME, then ccos caps activate-mcp everything/.exec(add.out)?.[1];
  assert.ok(id, add.out);

  await rejects(() => mcpCommands['caps activate-mcp'].run(ccos, ['everything'], false, () => {}), 'not-approved');
  await rejects(() => mcpCommands['caps activate-mcp'].run(ccos, [], false, () => {}), 'usage');
  const listed = await capture((o) => mcpCommands['caps mcp-servers'].run(ccos, [], true, o));
  assert.equal(JSON.parse(listed.out).servers[0].status, 'staged');

  approve(ccos, id);
  const act = await capture((o) => mcpCommands['caps activate-mcp'].run(ccos, ['everything'], true, o));
  const j = JSON.parse(act.out);
  assert.equal(j.ok, true);
  assert.ok(j.capabilities.some((c: { id: string }) => c.id === 'mcp.everything.echo'));

  const text = await capture((o) => mcpCommands['caps mcp-servers'].run(ccos, [], false, o));
  assert.match(text.out, /^everything {2}active {2}.*server-everything/m);
  assert.match(text.out, /tools: .*echo/);
  for (const c of Object.values(mcpCommands)) assert.ok(c.summary && c.usage.startsWith('ccos caps '));
  assert.equal(ok(await ccos.run('(call :mcp.everything.echo {:message "cli"})')), 'Echo: cli');
});
