// Sandboxed capabilities: JS modules in a child process under Node's permission model. Allowed
// access works; reads and writes outside the allow-lists, child processes, workers and (without
// a network effect) sockets are denied, fail the call with sandbox-denied and are recorded;
// infinite loops are killed at the time limit; memory and CPU hogs are stopped with clear errors.
// Step profiles derive the security level, isolation and allow-lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { ACTION_TYPES, openCcos, valueToPlainJson, type Action, type Ccos, type CapabilityManifest, type RunResult } from '../src/ccos/index.js';
import { deriveStepProfile, installSandbox, type SandboxHandle } from '../src/ccos/providers/sandbox.js';

const tmp = (prefix: string): string => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));

interface Fixture {
  ccos: Ccos;
  sandbox: SandboxHandle;
  dataDir: string;
  ws: string;
  mods: string;
  mod(name: string, source: string): string;
}

function fixture(t: { after: (fn: () => void) => void }, opts: { dataDirInWorkspace?: boolean } = {}): Fixture {
  const ws = tmp('ccos-sbx-ws-');
  const dataDir = opts.dataDirInWorkspace ? path.join(ws, '.ccos') : tmp('ccos-sbx-data-');
  const mods = tmp('ccos-sbx-mods-');
  const ccos = openCcos({ dataDir, workspaceRoot: ws, defaultTimeoutMs: 15_000 });
  const sandbox = installSandbox(ccos);
  t.after(() => {
    ccos.close();
    for (const d of [ws, dataDir, mods]) fs.rmSync(d, { recursive: true, force: true });
  });
  return {
    ccos,
    sandbox,
    dataDir,
    ws,
    mods,
    mod(name, source) {
      const file = path.join(mods, `${name}.mjs`);
      fs.writeFileSync(file, source);
      return file;
    },
  };
}

const plain = (r: RunResult): unknown => (r.value === undefined ? undefined : valueToPlainJson(r.value));
const ofType = (ccos: Ccos, runId: string, type: string): Action[] => ccos.chain.list({ runId }).filter((a) => a.type === type);

function assertDenied(f: Fixture, r: RunResult, what: RegExp): void {
  assert.equal(r.status, 'failed', `expected a denial, got ${r.status} ${JSON.stringify(plain(r))}`);
  assert.equal(r.error!.code, 'sandbox-denied', r.error!.message);
  assert.match(r.error!.message, what);
  // Recorded: the call's failed result names the code, and (when the chain knows the type) an
  // AccessDenied action names the permission.
  const results = ofType(f.ccos, r.runId, 'CapabilityResult');
  assert.equal(results.length, 1);
  assert.equal(results[0]!.data.ok, false);
  assert.equal((results[0]!.data.error as { code: string }).code, 'sandbox-denied');
  if ((ACTION_TYPES as readonly string[]).includes('AccessDenied')) assert.ok(ofType(f.ccos, r.runId, 'AccessDenied').length >= 1, 'an AccessDenied action was recorded');
}

test('a module reads a declared file and writes its declared directory and its temp dir', async (t) => {
  const f = fixture(t);
  fs.writeFileSync(path.join(f.ws, 'data.txt'), 'hello sandbox');
  fs.mkdirSync(path.join(f.ws, 'out'));
  const file = f.mod('ok', `
    import fs from 'node:fs';
    import { readFile } from 'node:fs/promises';
    import path from 'node:path';
    export default async function (input, ctx) {
      const text = await readFile(input.file, 'utf8');
      fs.writeFileSync(path.join(ctx.tmpDir, 'scratch.txt'), text);
      fs.writeFileSync(input.out, text.toUpperCase());
      return { text, n: input.n * 2, args: ctx.args.length, scratch: fs.readFileSync(path.join(ctx.tmpDir, 'scratch.txt'), 'utf8') };
    }`);
  f.sandbox.register('sbx.ok', file, { effects: [{ kind: 'fs', access: 'read', paths: ['data.txt'] }, { kind: 'fs', access: 'write', paths: ['out'] }] });
  const r = await f.ccos.call('sbx.ok', `{:file ${JSON.stringify(path.join(f.ws, 'data.txt'))} :out ${JSON.stringify(path.join(f.ws, 'out', 'x.txt'))} :n 21}`);
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  assert.deepEqual(plain(r), { text: 'hello sandbox', n: 42, args: 1, scratch: 'hello sandbox' });
  assert.equal(fs.readFileSync(path.join(f.ws, 'out', 'x.txt'), 'utf8'), 'HELLO SANDBOX');
  assert.deepEqual(f.sandbox.active(), []);
});

test('reading /etc/passwd is denied and recorded', async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.passwd', f.mod('passwd', `import fs from 'node:fs'; export default async function () { return fs.readFileSync('/etc/passwd', 'utf8').length; }`));
  const r = await f.ccos.call('sbx.passwd');
  assertDenied(f, r, /tried to read \/etc\/passwd, which its sandbox does not allow/);
  const denied = ofType(f.ccos, r.runId, 'AccessDenied');
  if (denied.length) assert.deepEqual({ permission: denied[0]!.data.permission, resource: denied[0]!.data.resource }, { permission: 'FileSystemRead', resource: '/etc/passwd' });
});

test('a denial the module catches still fails the call', async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.sneaky', f.mod('sneaky', `
    import fs from 'node:fs';
    export default async function () {
      try { fs.readFileSync('/etc/hostname'); } catch { /* swallowed */ }
      return 'looks fine';
    }`));
  assertDenied(f, await f.ccos.call('sbx.sneaky'), /tried to read \/etc\/hostname/);
});

test('writing outside the allowed directory is denied; nothing is written', async (t) => {
  const f = fixture(t);
  fs.mkdirSync(path.join(f.ws, 'out'));
  const outside = path.join(tmp('ccos-sbx-outside-'), 'escape.txt');
  t.after(() => fs.rmSync(path.dirname(outside), { recursive: true, force: true }));
  f.sandbox.register('sbx.write', f.mod('write', `import fs from 'node:fs'; export default async function (input) { fs.writeFileSync(input, 'escaped'); return 'written'; }`), { effects: [{ kind: 'fs', access: 'write', paths: ['out'] }] });
  const inside = await f.ccos.call('sbx.write', JSON.stringify(path.join(f.ws, 'out', 'fine.txt')));
  assert.equal(inside.status, 'completed', JSON.stringify(inside.error));
  const r = await f.ccos.call('sbx.write', JSON.stringify(outside));
  assertDenied(f, r, new RegExp(`tried to write ${outside.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.equal(fs.existsSync(outside), false);
  const dotdot = await f.ccos.call('sbx.write', JSON.stringify(path.join(f.ws, 'out', '..', 'sibling.txt')));
  assertDenied(f, dotdot, /tried to write/);
  assert.equal(fs.existsSync(path.join(f.ws, 'sibling.txt')), false);
});

test('a symlink out of the writable temp dir cannot be made', async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.symlink', f.mod('symlink', `
    import fs from 'node:fs';
    export default async function (input, ctx) {
      fs.symlinkSync('/etc/passwd', ctx.tmpDir + '/link');
      return fs.readFileSync(ctx.tmpDir + '/link', 'utf8');
    }`));
  assertDenied(f, await f.ccos.call('sbx.symlink'), /tried to use an API it may not use \(fs\.symlink API requires full fs\.read and fs\.write permissions\)/);
});

test('child processes and worker threads are denied', async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.spawn', f.mod('spawn', `import { execSync } from 'node:child_process'; export default async function () { return String(execSync('id')); }`));
  f.sandbox.register('sbx.worker', f.mod('worker', `import { Worker } from 'node:worker_threads'; export default async function () { new Worker('1', { eval: true }); return 'started'; }`));
  assertDenied(f, await f.ccos.call('sbx.spawn'), /tried to start a child process/);
  assertDenied(f, await f.ccos.call('sbx.worker'), /tried to start a worker thread/);
});

test('network: denied without a network effect, allowed with one', async (t) => {
  const f = fixture(t);
  const server = http.createServer((_req, res) => res.end('pong'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  const src = `export default async function (url) { const r = await fetch(url); return await r.text(); }`;
  f.sandbox.register('sbx.offline', f.mod('offline', src));
  f.sandbox.register('sbx.online', f.mod('online', src), { effects: [{ kind: 'network', domains: ['127.0.0.1'] }] });
  f.sandbox.register('sbx.socket', f.mod('socket', `import net from 'node:net'; export default async function (port) { return await new Promise((ok, no) => { const s = net.connect(port, '127.0.0.1', () => { s.end(); ok('connected'); }); s.on('error', no); }); }`));
  assertDenied(f, await f.ccos.call('sbx.offline', JSON.stringify(url)), /open a network connection/);
  assertDenied(f, await f.ccos.call('sbx.socket', String((server.address() as { port: number }).port)), /open a network connection \(127\.0\.0\.1:\d+\)/);
  const ok = await f.ccos.call('sbx.online', JSON.stringify(url));
  assert.equal(ok.status, 'completed', JSON.stringify(ok.error));
  assert.equal(plain(ok), 'pong');
});

test('an infinite loop is killed at the time limit (code timeout); the process is gone', async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.loop', f.mod('loop', 'export default async function () { for (;;) {} }'), { timeoutMs: 800 });
  let pid: number | undefined;
  const spy = setInterval(() => {
    pid ??= f.sandbox.active()[0];
  }, 10);
  const started = Date.now();
  const r = await f.ccos.call('sbx.loop');
  clearInterval(spy);
  assert.equal(r.status, 'failed');
  assert.equal(r.error!.code, 'timeout');
  assert.ok(Date.now() - started < 5000);
  assert.ok(pid !== undefined, 'the child was seen running');
  for (let i = 0; i < 100 && f.sandbox.active().length; i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(f.sandbox.active(), []);
  assert.throws(() => process.kill(pid!, 0), (e: NodeJS.ErrnoException) => e.code === 'ESRCH', 'the sandboxed process was killed');
});

test('a heap hog is stopped by the heap limit (sandbox-memory)', async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.hog', f.mod('hog', 'export default async function () { const a = []; for (;;) a.push({ x: Math.random(), y: [1, 2, 3] }); }'), { sandbox: { memoryMb: 32 } });
  const r = await f.ccos.call('sbx.hog');
  assert.equal(r.status, 'failed');
  assert.equal(r.error!.code, 'sandbox-memory', r.error!.message);
  assert.match(r.error!.message, /ran out of memory: .*32 MB limit/);
});

test('an off-heap (Buffer) hog is stopped by the resident-memory watch', { skip: process.platform !== 'linux' && 'needs /proc' }, async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.buffers', f.mod('buffers', `
    export default async function () {
      const keep = [];
      for (let i = 0; i < 200; i++) { keep.push(Buffer.alloc(16 * 1024 * 1024, 1)); await new Promise((r) => setTimeout(r, 5)); }
      return 'survived ' + keep.length * 16 + ' MB';
    }`), { sandbox: { memoryMb: 32 } });
  const r = await f.ccos.call('sbx.buffers');
  assert.equal(r.status, 'failed', `expected to be stopped, got ${JSON.stringify(plain(r))}`);
  assert.equal(r.error!.code, 'sandbox-memory');
});

test('a CPU-time cap stops a busy module before its (longer) time limit', { skip: (process.platform === 'win32' || !fs.existsSync('/bin/sh')) && 'needs /bin/sh ulimit' }, async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.busy', f.mod('busy', 'export default async function () { for (;;) {} }'), { timeoutMs: 20_000, sandbox: { cpuMs: 1000 } });
  const started = Date.now();
  const r = await f.ccos.call('sbx.busy');
  assert.equal(r.status, 'failed');
  assert.equal(r.error!.code, 'sandbox-cpu', r.error!.message);
  assert.ok(Date.now() - started < 10_000);
});

test('the child gets no environment, and module errors come back clearly', async (t) => {
  const f = fixture(t);
  process.env.CCOS_SANDBOX_TEST_LEAK = 'parent-only';
  t.after(() => delete process.env.CCOS_SANDBOX_TEST_LEAK);
  f.sandbox.register('sbx.env', f.mod('env', 'export default async function () { return process.env.CCOS_SANDBOX_TEST_LEAK ?? "absent"; }'));
  f.sandbox.register('sbx.throws', f.mod('throws', 'export default async function (x) { throw new RangeError("bad input " + x); }'));
  f.sandbox.register('sbx.nodefault', f.mod('nodefault', 'export const x = 1;'));
  const env = await f.ccos.call('sbx.env');
  assert.equal(plain(env), 'absent');
  const thrown = await f.ccos.call('sbx.throws', '7');
  assert.equal(thrown.status, 'failed');
  assert.equal(thrown.error!.code, 'provider-failed');
  assert.match(thrown.error!.message, /sbx\.throws failed: RangeError: bad input 7/);
  const nodefault = await f.ccos.call('sbx.nodefault');
  assert.equal(nodefault.error!.code, 'provider-failed');
  assert.match(nodefault.error!.message, /no default export function/);
});

test('the data directory is never exposed, even when the workspace contains it', async (t) => {
  const f = fixture(t, { dataDirInWorkspace: true });
  fs.writeFileSync(path.join(f.ws, 'notes.txt'), 'workspace file');
  const file = f.mod('reader', `import fs from 'node:fs'; export default async function (p) { return fs.readFileSync(p, 'utf8'); }`);
  f.sandbox.register('sbx.reader', file, { effects: [{ kind: 'fs', access: 'read' }] });
  const ok = await f.ccos.call('sbx.reader', JSON.stringify(path.join(f.ws, 'notes.txt')));
  assert.equal(plain(ok), 'workspace file');
  const db = await f.ccos.call('sbx.reader', JSON.stringify(path.join(f.dataDir, 'ccos.db')));
  assertDenied(f, db, /tried to read .*ccos\.db/);
  // A path inside the data dir is refused outright.
  f.sandbox.register('sbx.keys', file, { effects: [{ kind: 'fs', access: 'read', paths: [path.join(f.dataDir, 'keys')] }] });
  const keys = await f.ccos.call('sbx.keys', JSON.stringify(path.join(f.dataDir, 'keys', 'node.pem')));
  assert.equal(keys.status, 'failed');
  assert.equal(keys.error!.code, 'sandbox-config');
});

test('critical steps (intent :security-level :critical) also forbid code generation from strings', async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.eval', f.mod('eval', 'export default async function () { return new Function("return 6 * 7")(); }'));
  const low = await f.ccos.call('sbx.eval');
  assert.equal(plain(low), 42);
  const intent = f.ccos.intents.create('handle production credentials', { constraints: { 'security-level': 'critical' } });
  const critical = await f.ccos.call('sbx.eval', '', { intentId: intent.id });
  assert.equal(critical.status, 'failed');
  assert.match(critical.error!.message, /Code generation from strings disallowed/);
});

test('sandboxed capabilities are persisted and recreated by another node over the same data dir', async (t) => {
  const f = fixture(t);
  f.sandbox.register('sbx.add', f.mod('add', 'export default async function (x) { return x + 1; }'), { input: { rtfs: ':int' } });
  const other = openCcos({ dataDir: f.dataDir, workspaceRoot: f.ws });
  try {
    // The sandbox provider is loaded on first use by any node over the data dir.
    const r = await other.call('sbx.add', '41');
    assert.equal(plain(r), 42);
  } finally {
    other.close();
  }
});

// -------------------------------------------------------------------------------------------------
// Step profiles

const manifest = (extra: Partial<CapabilityManifest>): CapabilityManifest => ({ id: 'x.y', version: '1', description: '', effects: [], risk: 'low', idempotent: false, deterministic: false, provider: { kind: 'local' }, ...extra });

test('deriveStepProfile: levels, isolation and allow-lists', () => {
  const root = '/ws';
  const pure = deriveStepProfile(manifest({}), {}, { workspaceRoot: root });
  assert.deepEqual({ l: pure.securityLevel, i: pure.isolation, r: pure.fsRead, w: pure.fsWrite, n: pure.network }, { l: 'low', i: 'inherit', r: [], w: [], n: false });

  const reader = deriveStepProfile(manifest({ effects: [{ kind: 'fs', access: 'read' }] }), {}, { workspaceRoot: root });
  assert.deepEqual({ l: reader.securityLevel, i: reader.isolation, r: reader.fsRead, w: reader.fsWrite }, { l: 'medium', i: 'isolated', r: ['/ws'], w: [] });

  const writer = deriveStepProfile(manifest({ effects: [{ kind: 'fs', access: 'write', paths: ['out', '/abs/dir'] }] }), {}, { workspaceRoot: root });
  assert.deepEqual({ r: writer.fsRead, w: writer.fsWrite }, { r: ['/ws/out', '/abs/dir'], w: ['/ws/out', '/abs/dir'] });

  const net = deriveStepProfile(manifest({ effects: [{ kind: 'network', domains: ['api.example.com'] }] }), {}, { workspaceRoot: root });
  assert.deepEqual({ l: net.securityLevel, n: net.network, h: net.networkHosts }, { l: 'medium', n: true, h: ['api.example.com'] });

  const critical = deriveStepProfile(manifest({ risk: 'critical' }), {}, { workspaceRoot: root });
  assert.deepEqual({ l: critical.securityLevel, i: critical.isolation }, { l: 'critical', i: 'sandboxed' });
  assert.equal(deriveStepProfile(manifest({ risk: 'high' })).securityLevel, 'medium');

  // The intent's constraints raise the level (any spelling of the key, keyword or string value),
  // never lower it.
  for (const c of [{ 'security-level': 'critical' }, { ':security-level': ':critical' }, { securityLevel: 'critical' }]) {
    const p = deriveStepProfile(manifest({ effects: [{ kind: 'fs', access: 'read' }] }), c, { workspaceRoot: root });
    assert.equal(p.securityLevel, 'critical', JSON.stringify(c));
    assert.equal(p.isolation, 'sandboxed');
    assert.ok(p.reasons.some((r) => /intent constraint/.test(r)));
  }
  assert.equal(deriveStepProfile(manifest({ risk: 'critical' }), { 'security-level': 'low' }).securityLevel, 'critical');

  // A sandbox provider is always sandboxed; its own allow-lists are added.
  const sbx = deriveStepProfile(manifest({ provider: { kind: 'sandbox', module: '/m.mjs', fsRead: ['in'], fsWrite: ['/tmp/o'] } }), {}, { workspaceRoot: root });
  assert.deepEqual({ l: sbx.securityLevel, i: sbx.isolation, r: sbx.fsRead, w: sbx.fsWrite }, { l: 'low', i: 'sandboxed', r: ['/ws/in', '/tmp/o'], w: ['/tmp/o'] });
});
