// Secrets: encrypted at rest, declared by capabilities, read only at the provider boundary, and
// never written anywhere in clear — not in the data dir (database, WAL, keys), the chain, run
// records, errors, results or command output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CcosError, openCcos, plainJsonToValue, valueToPlainJson, type Ccos, type RunResult } from '../src/ccos/index.js';
import { installSecrets, redactSecrets, redactValues, SecretStore } from '../src/ccos/secrets.js';
import { installSandbox } from '../src/ccos/providers/sandbox.js';
import { secretsCommands, type SecretsIo } from '../src/cli/ccos-secrets-commands.js';

const SECRET = 'sk-live-9f8e7d6c5b4a';

function tmp(prefix: string): string {
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
}

function node(t: { after: (fn: () => void) => void }, dataDir = tmp('ccos-secrets-')): Ccos {
  const ccos = openCcos({ dataDir, workspaceRoot: tmp('ccos-secrets-ws-'), defaultTimeoutMs: 10_000 });
  t.after(() => {
    try {
      ccos.close();
    } catch {
      // already closed
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return ccos;
}

/** Captures what a command prints. */
function capture(): SecretsIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s) };
}

/** Every file under `dir` (recursively) whose bytes contain `needle` (UTF-8). */
function filesContaining(dir: string, needle: string): string[] {
  const bytes = Buffer.from(needle, 'utf8');
  const hits: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && fs.readFileSync(p).includes(bytes)) hits.push(p);
    }
  };
  walk(dir);
  return hits;
}

const plain = (r: RunResult): unknown => (r.value === undefined ? undefined : valueToPlainJson(r.value));

test('the scanner finds a value written in clear (so the leak checks below can fail)', () => {
  const dir = tmp('ccos-scan-');
  try {
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'sub', 'blob.bin'), Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.from(`x${SECRET}y`), Buffer.from([0])]));
    fs.writeFileSync(path.join(dir, 'clean.txt'), 'nothing here');
    assert.deepEqual(filesContaining(dir, SECRET), [path.join(dir, 'sub', 'blob.bin')]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('secrets: set from stdin, read by declaring capabilities only, never written in clear anywhere', async (t) => {
  const dataDir = tmp('ccos-secrets-');
  const ccos = node(t, dataDir);
  const outputs: string[] = [];

  // `ccos secrets set api.token` with the value on stdin (a trailing newline is not part of it).
  const io = capture();
  assert.equal(await secretsCommands['secrets set']!.run(ccos, ['api.token'], true, async () => `${SECRET}\n`, io), 0);
  assert.equal(JSON.parse(io.out[0]!).ok, true);
  assert.equal(JSON.parse(io.out[0]!).name, 'api.token');
  const io2 = capture();
  assert.equal(await secretsCommands['secrets set']!.run(ccos, ['api.token'], false, async () => SECRET, io2), 0);
  outputs.push(...io.out, ...io.err, ...io2.out, ...io2.err);

  // The CLI never takes the value as an argument.
  const io3 = capture();
  assert.equal(await secretsCommands['secrets set']!.run(ccos, ['api.token', SECRET], true, async () => '', io3), 2);
  assert.equal(JSON.parse(io3.out[0]!).error.code, 'usage');
  assert.ok(!io3.out.concat(io3.err).join('\n').includes(SECRET), 'the usage error must not echo the value given on the command line');

  const store = installSecrets(ccos);
  assert.equal(store.get('api.token'), SECRET);

  // Local capabilities: one reads the secret, one leaks it in an error, one returns it.
  ccos.registerCapability({ id: 'test.token-length', secrets: ['api.token'] }, (_args, ctx) => ctx.secret('api.token').length);
  ccos.registerCapability({ id: 'test.leaky-error', secrets: ['api.token'] }, (_args, ctx) => {
    throw new Error(`upstream rejected the token ${ctx.secret('api.token')} (401)`);
  });
  ccos.registerCapability({ id: 'test.leaky-async', secrets: ['api.token'] }, async (_args, ctx) => {
    await new Promise((r) => setTimeout(r, 1));
    throw new CcosError('upstream', `bad credentials: ${ctx.secret('api.token')}`, { hint: `check ${ctx.secret('api.token')}` });
  });
  ccos.registerCapability({ id: 'test.leaky-result', secrets: ['api.token'] }, (_args, ctx) => plainJsonToValue({ header: `Bearer ${ctx.secret('api.token')}` }));
  ccos.registerCapability({ id: 'test.undeclared' }, (_args, ctx) => ctx.secret('api.token'));
  ccos.registerCapability({ id: 'test.missing', secrets: ['db.password'] }, (_args, ctx) => ctx.secret('db.password'));

  // A sandboxed capability gets its declared secrets too (over IPC, never argv or env).
  const mods = tmp('ccos-secrets-mods-');
  t.after(() => fs.rmSync(mods, { recursive: true, force: true }));
  fs.writeFileSync(path.join(mods, 'len.mjs'), 'export default async function (input, ctx) { return { len: ctx.secrets["api.token"].length, env: Object.keys(process.env).filter((k) => !k.startsWith("NODE_CHANNEL")) }; }\n');
  fs.writeFileSync(path.join(mods, 'leak.mjs'), 'export default async function (input, ctx) { throw new Error("sandbox saw " + ctx.secrets["api.token"]); }\n');
  const sandbox = installSandbox(ccos);
  sandbox.register('test.sandboxed-length', path.join(mods, 'len.mjs'), { secrets: ['api.token'] });
  sandbox.register('test.sandboxed-leak', path.join(mods, 'leak.mjs'), { secrets: ['api.token'] });

  const results: RunResult[] = [];
  const run = async (src: string): Promise<RunResult> => {
    const r = await ccos.run(src);
    results.push(r);
    return r;
  };

  const ok = await run('(call :test.token-length)');
  assert.equal(ok.status, 'completed', JSON.stringify(ok.error));
  assert.equal(plain(ok), SECRET.length);

  const leaky = await run('(call :test.leaky-error)');
  assert.equal(leaky.status, 'failed');
  assert.match(leaky.error!.message, /upstream rejected the token \[secret\] \(401\)/);

  const leakyAsync = await run('(call :test.leaky-async)');
  assert.equal(leakyAsync.status, 'failed');
  assert.equal(leakyAsync.error!.code, 'upstream');
  assert.match(leakyAsync.error!.message, /bad credentials: \[secret\]/);
  assert.equal(leakyAsync.error!.hint, 'check [secret]');

  const leakyResult = await run('(call :test.leaky-result)');
  assert.equal(leakyResult.status, 'completed');
  assert.deepEqual(plain(leakyResult), { header: 'Bearer [secret]' });

  // A capability that does not declare the secret cannot read it.
  const undeclared = await run('(call :test.undeclared)');
  assert.equal(undeclared.status, 'failed');
  assert.equal(undeclared.error!.code, 'secret-denied');
  assert.match(undeclared.error!.message, /did not declare the secret api\.token/);

  // A missing secret: a clear error naming it.
  const missing = await run('(call :test.missing)');
  assert.equal(missing.status, 'failed');
  assert.equal(missing.error!.code, 'secret-missing');
  assert.match(missing.error!.message, /db\.password/);
  assert.match(missing.error!.hint ?? '', /ccos secrets set db\.password/);

  const sboxOk = await run('(call :test.sandboxed-length)');
  assert.equal(sboxOk.status, 'completed', JSON.stringify(sboxOk.error));
  assert.deepEqual(plain(sboxOk), { len: SECRET.length, env: [] });
  const sboxLeak = await run('(call :test.sandboxed-leak)');
  assert.equal(sboxLeak.status, 'failed');
  assert.match(sboxLeak.error!.message, /sandbox saw \[secret\]/);

  // Plans cannot name the value: plans only ever see what providers return (redacted).
  const io4 = capture();
  assert.equal(await secretsCommands['secrets list']!.run(ccos, [], true, async () => '', io4), 0);
  const listed = JSON.parse(io4.out[0]!) as { secrets: { name: string; updated: string }[] };
  assert.deepEqual(listed.secrets.map((s) => s.name), ['api.token']);
  const io5 = capture();
  await secretsCommands['secrets list']!.run(ccos, [], false, async () => '', io5);
  assert.match(io5.out.join('\n'), /^api\.token {2}\d{4}-/);
  outputs.push(...io4.out, ...io4.err, ...io5.out, ...io5.err);

  // Secret changes are on the chain by name only (when the chain knows the action type).
  const secretActions = [...ccos.chain.iterate()].filter((a) => (a.type as string) === 'SecretSet');
  if (secretActions.length) assert.deepEqual(secretActions[0]!.data, { name: 'api.token' });

  // Everything a user or script can see: results, --json-ish renderings, the chain, run records.
  for (const r of results) outputs.push(JSON.stringify({ ...r, value: r.value === undefined ? undefined : valueToPlainJson(r.value) }));
  for (const a of ccos.chain.iterate()) outputs.push(JSON.stringify(a));
  for (const r of ccos.runs()) {
    outputs.push(JSON.stringify(r));
    const d = ccos.runDetails(r.id)!;
    outputs.push(JSON.stringify({ ...d, result: d.result === null ? null : valueToPlainJson(d.result) }));
  }
  outputs.push(JSON.stringify(ccos.verifyChain()));
  const all = outputs.join('\n');
  assert.ok(all.length > 1000, 'the outputs were collected');
  assert.ok(all.includes('[secret]'), 'redaction happened where the value would have been');
  assert.ok(!all.includes(SECRET), 'the value appears in an output');

  // The encrypted table holds no clear text; the key file is private.
  const rows = ccos.store.db.prepare('SELECT name, nonce, ciphertext, tag FROM secrets').all() as { name: string; nonce: Buffer; ciphertext: Buffer; tag: Buffer }[];
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.nonce.length, 12);
  assert.equal(rows[0]!.tag.length, 16);
  assert.ok(!rows[0]!.ciphertext.includes(Buffer.from(SECRET)));
  const keyFile = path.join(dataDir, 'keys', 'secrets.key');
  assert.equal(fs.statSync(keyFile).size, 32);
  if (process.platform !== 'win32') assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);

  // The whole data dir, with the WAL still open and after closing.
  assert.deepEqual(filesContaining(dataDir, SECRET), []);
  ccos.close();
  assert.deepEqual(filesContaining(dataDir, SECRET), []);

  // Another process (a new node over the same dir) reads it with the key file.
  const again = openCcos({ dataDir });
  try {
    assert.equal(installSecrets(again).get('api.token'), SECRET);
  } finally {
    again.close();
  }
});

test('secret store: ciphertext is bound to its name and key; delete; names are checked', async (t) => {
  const ccos = node(t);
  const store = new SecretStore(ccos.store);
  store.set('a.one', 'value-one-123456');
  store.set('a.two', 'value-two-654321');
  assert.deepEqual(store.list().map((s) => s.name), ['a.one', 'a.two']);

  // Swapping rows (ciphertext under another name) is detected, without echoing anything.
  const db = ccos.store.db;
  const one = db.prepare('SELECT nonce, ciphertext, tag FROM secrets WHERE name = ?').get('a.one') as Record<string, Buffer>;
  db.prepare('UPDATE secrets SET nonce = ?, ciphertext = ?, tag = ? WHERE name = ?').run(one.nonce, one.ciphertext, one.tag, 'a.two');
  assert.throws(() => store.get('a.two'), (e: unknown) => e instanceof CcosError && e.code === 'secret-corrupt' && /a\.two/.test(e.message) && !e.message.includes('value-'));
  // A flipped ciphertext bit is detected.
  const flipped = Buffer.from(one.ciphertext);
  flipped[0] ^= 1;
  db.prepare('UPDATE secrets SET ciphertext = ? WHERE name = ?').run(flipped, 'a.one');
  assert.throws(() => store.get('a.one'), (e: unknown) => e instanceof CcosError && e.code === 'secret-corrupt');

  store.set('a.one', 'value-one-123456');
  assert.equal(store.get('a.one'), 'value-one-123456');
  assert.equal(redactSecrets('x value-one-123456 y', store), 'x [secret] y');
  assert.equal(redactValues('abcabc', ['abc', 'abcabc']), '[secret]');

  const io = capture();
  assert.equal(await secretsCommands['secrets delete']!.run(ccos, ['a.one'], true, async () => '', io), 0);
  assert.deepEqual(JSON.parse(io.out[0]!), { ok: true, name: 'a.one' });
  assert.throws(() => store.get('a.one'), (e: unknown) => e instanceof CcosError && e.code === 'secret-missing' && /a\.one/.test(e.message));
  await assert.rejects(secretsCommands['secrets delete']!.run(ccos, ['a.one'], true, async () => '', capture()), (e: unknown) => e instanceof CcosError && e.code === 'secret-missing');

  assert.throws(() => store.set('bad name', 'v'), (e: unknown) => e instanceof CcosError && e.code === 'invalid-input');
  await assert.rejects(secretsCommands['secrets set']!.run(ccos, ['x.empty'], true, async () => '\n', capture()), (e: unknown) => e instanceof CcosError && e.code === 'invalid-input' && /x\.empty/.test(e.message));

  // A different key file cannot read the rows.
  const keyFile = path.join(ccos.dataDir, 'keys', 'secrets.key');
  fs.writeFileSync(keyFile, Buffer.alloc(32, 7));
  const fresh = new SecretStore(ccos.store);
  assert.throws(() => fresh.get('a.two'), (e: unknown) => e instanceof CcosError && e.code === 'secret-corrupt');
});

test('without installSecrets the gate has no secret store: a clear error, no value', async (t) => {
  const ccos = node(t);
  ccos.registerCapability({ id: 'test.needs', secrets: ['api.token'] }, (_args, ctx) => ctx.secret('api.token'));
  const r = await ccos.run('(call :test.needs)');
  assert.equal(r.status, 'failed');
  assert.equal(r.error!.code, 'secret-missing');
});
