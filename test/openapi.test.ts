// OpenAPI import against a real HTTP pet store on 127.0.0.1: one capability per operation,
// unsupported operations skipped with a reason naming them, schemas validated before any request,
// auth from secrets, http errors naming method and path, other processes calling via the factory;
// and the JSON Schema validator (formats, nesting, arrays, invalid schemas).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { CcosError, openCcos, valueToPlainJson, type CallContext, type Ccos, type RunResult } from '../src/ccos/index.js';
import { installOpenApi, openApiProvider } from '../src/ccos/providers/openapi.js';
import { checkSchemaIsValid, validateJsonSchema } from '../src/ccos/providers/json-schema.js';
import { installSecrets } from '../src/ccos/secrets.js';
import { openapiCommands } from '../src/cli/ccos-openapi-commands.js';
import { kw, IMap, type Value } from '../src/rtfs/index.js';

// -------------------------------------------------------------------------------------------------
// The pet store

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const BEARER = 'tok-123456';
const API_KEY = 'key-abcdef';
const seen: Seen[] = [];
const pets = new Map<number, { id: number; name: string; tag?: string | null }>([
  [1, { id: 1, name: 'Rex', tag: 'dog' }],
  [2, { id: 2, name: 'Tom', tag: 'cat' }],
]);
let nextId = 3;

const SPEC_YAML = `openapi: 3.0.3
info:
  title: Pet store
  version: 1.2.0
servers:
  - url: http://example.invalid/v1
components:
  securitySchemes:
    bearerAuth:
      type: http
      scheme: bearer
    apiKey:
      type: apiKey
      in: header
      name: X-Api-Key
    oauth:
      type: oauth2
      flows:
        clientCredentials:
          tokenUrl: https://example.invalid/token
          scopes: {}
  schemas:
    Pet:
      type: object
      required: [id, name]
      properties:
        id:
          type: integer
          format: int64
          readOnly: true
        name:
          type: string
          minLength: 1
        tag:
          type: string
          nullable: true
    Error:
      type: object
      properties:
        message:
          type: string
paths:
  /pets:
    get:
      operationId: listPets
      summary: List pets
      parameters:
        - name: limit
          in: query
          schema:
            type: integer
            minimum: 1
            maximum: 100
        - name: tag
          in: query
          schema:
            type: array
            items:
              type: string
      responses:
        '200':
          description: pets
          content:
            application/json:
              schema:
                type: array
                items:
                  $ref: '#/components/schemas/Pet'
    post:
      operationId: createPet
      summary: Add a pet
      security:
        - bearerAuth: []
        - apiKey: []
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/Pet'
      responses:
        '201':
          description: created
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Pet'
        '401':
          description: no credentials
  /pets/{id}:
    parameters:
      - name: id
        in: path
        required: true
        schema:
          type: integer
    get:
      operationId: getPet
      summary: One pet
      parameters:
        - name: X-Trace
          in: header
          schema:
            type: string
      responses:
        '200':
          description: the pet
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Pet'
        '404':
          description: not found
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Error'
    delete:
      operationId: deletePet
      responses:
        '204':
          description: deleted
  /pets/{id}/photo:
    post:
      operationId: uploadPhoto
      parameters:
        - name: id
          in: path
          required: true
          schema:
            type: integer
      requestBody:
        content:
          multipart/form-data:
            schema:
              type: object
              properties:
                file:
                  type: string
                  format: binary
      responses:
        '200':
          description: ok
  /session:
    get:
      operationId: getSession
      parameters:
        - name: sid
          in: cookie
          required: true
          schema:
            type: string
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                type: object
  /admin/stats:
    get:
      operationId: adminStats
      security:
        - oauth: []
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                type: object
  /health:
    get:
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                type: object
                required: [ok]
                properties:
                  ok:
                    type: boolean
`;

function send(res: http.ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => (body += c));
  req.on('end', () => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/openapi.yaml') {
      res.writeHead(200, { 'content-type': 'application/yaml' }).end(SPEC_YAML);
      return;
    }
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
    const p = url.pathname.replace(/^\/v1/, '');
    const m = /^\/pets\/(\d+)$/.exec(p);
    if (p === '/pets' && req.method === 'GET') {
      const tags = url.searchParams.getAll('tag');
      const limit = Number(url.searchParams.get('limit') ?? 100);
      return send(res, 200, [...pets.values()].filter((x) => tags.length === 0 || tags.includes(String(x.tag))).slice(0, limit));
    }
    if (p === '/pets' && req.method === 'POST') {
      const ok = req.headers.authorization === `Bearer ${BEARER}` || req.headers['x-api-key'] === API_KEY;
      if (!ok) return send(res, 401, { message: 'credentials required' });
      const input = JSON.parse(body) as { name: string; tag?: string };
      const pet = { id: nextId++, name: input.name, tag: input.tag ?? null };
      pets.set(pet.id, pet);
      return send(res, 201, pet);
    }
    if (m && req.method === 'GET') {
      const pet = pets.get(Number(m[1]));
      return pet ? send(res, 200, pet) : send(res, 404, { message: `pet ${m[1]} not found` });
    }
    if (m && req.method === 'DELETE') {
      pets.delete(Number(m[1]));
      return send(res, 204);
    }
    if (p === '/health') return send(res, 200, { ok: true });
    return send(res, 404, { message: 'no such route' });
  });
});

await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const BASE = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-openapi-'));
const SPEC = path.join(ROOT, 'petstore.yaml');
fs.writeFileSync(SPEC, SPEC_YAML);

after(() => {
  server.closeAllConnections();
  server.close();
  fs.rmSync(ROOT, { recursive: true, force: true });
});

const EXPECTED_IDS = ['petstore.createPet', 'petstore.deletePet', 'petstore.getPet', 'petstore.get_health', 'petstore.listPets'];

let dirN = 0;
function node(t: { after: (fn: () => void) => void }, dataDir = path.join(ROOT, `data-${++dirN}`)): Ccos {
  const ccos = openCcos({ dataDir, workspaceRoot: ROOT });
  t.after(() => ccos.close());
  return ccos;
}

async function imported(t: { after: (fn: () => void) => void }): Promise<{ ccos: Ccos; result: Awaited<ReturnType<ReturnType<typeof installOpenApi>['importSpec']>> }> {
  const ccos = node(t);
  const result = await installOpenApi(ccos).importSpec('petstore', SPEC, { baseUrl: BASE });
  return { ccos, result };
}

const plain = (r: RunResult): unknown => (r.value === undefined ? undefined : valueToPlainJson(r.value));

function completed(r: RunResult): unknown {
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  return plain(r);
}

// -------------------------------------------------------------------------------------------------
// Import

test('import: one capability per supported operation; unsupported ones skipped with a reason naming them', async (t) => {
  const { ccos, result } = await imported(t);
  assert.deepEqual([...result.registered].sort(), EXPECTED_IDS);
  const skipped = new Map(result.skipped.map((s) => [s.operation, s.reason]));
  assert.deepEqual([...skipped.keys()].sort(), ['adminStats (GET /admin/stats)', 'getSession (GET /session)', 'uploadPhoto (POST /pets/{id}/photo)']);
  assert.match(skipped.get('uploadPhoto (POST /pets/{id}/photo)')!, /multipart\/form-data.*not supported.*application\/json/);
  assert.match(skipped.get('getSession (GET /session)')!, /cookie parameter sid is not supported/);
  assert.match(skipped.get('adminStats (GET /admin/stats)')!, /oauth.*oauth2.*not supported/);
  for (const id of EXPECTED_IDS) assert.ok(ccos.registry.manifest(id), `${id} is registered`);
  assert.equal(ccos.registry.manifest('petstore.uploadPhoto'), undefined);
  // Registration is on the chain.
  const registered = ccos.chain.list({}).filter((a) => a.type === 'CapabilityRegistered' && (a.data as { provider?: string }).provider === 'openapi');
  assert.equal(registered.length, EXPECTED_IDS.length);
  assert.equal(ccos.verifyChain().ok, true);
});

test('import: manifests carry risk, idempotency, effects, secrets and schemas from the spec', async (t) => {
  const { ccos } = await imported(t);
  const get = ccos.registry.manifest('petstore.getPet')!;
  assert.equal(get.risk, 'low');
  assert.equal(get.idempotent, true);
  assert.deepEqual(get.effects, [{ kind: 'network', domains: ['127.0.0.1'] }]);
  assert.equal(get.version, '1.2.0');
  assert.match(get.description, /One pet \(GET \/pets\/\{id\}\)/);
  assert.deepEqual(get.input, { jsonSchema: { type: 'object', properties: { id: { type: 'integer' }, 'X-Trace': { type: 'string' } }, additionalProperties: false, required: ['id'] } });
  // nullable → a null type; readOnly id stays required in responses.
  assert.deepEqual(get.output, { jsonSchema: { type: 'object', required: ['id', 'name'], properties: { id: { type: 'integer', format: 'int64', readOnly: true }, name: { type: 'string', minLength: 1 }, tag: { type: ['string', 'null'] } } } });
  assert.equal(get.secrets, undefined);
  const p = get.provider as Record<string, unknown>;
  assert.equal(p.kind, 'openapi');
  assert.equal(p.method, 'GET');
  assert.equal(p.path, '/pets/{id}');
  assert.equal(p.baseUrl, BASE);

  const create = ccos.registry.manifest('petstore.createPet')!;
  assert.equal(create.risk, 'medium');
  assert.equal(create.idempotent, false);
  assert.deepEqual(create.secrets, ['petstore.bearerAuth', 'petstore.apiKey']);
  const body = (create.input as { jsonSchema: { properties: { body: { required?: string[] } }; required: string[] } }).jsonSchema;
  assert.deepEqual(body.required, ['body']);
  // In a request, the readOnly id is not required.
  assert.deepEqual(body.properties.body.required, ['name']);
  // No secret value is in any manifest.
  assert.ok(!JSON.stringify(ccos.registry.list()).includes(BEARER));

  const del = ccos.registry.manifest('petstore.deletePet')!;
  assert.equal(del.risk, 'medium');
  assert.equal(del.idempotent, true);
  assert.deepEqual(del.output, { jsonSchema: { type: 'null' } });
  // No parameters: no input schema, so the capability is called without an argument.
  assert.equal(ccos.registry.manifest('petstore.get_health')!.input, undefined);
});

test('import from an http URL (YAML) and the spec\'s server as default base URL', async (t) => {
  const ccos = node(t);
  const specUrl = `${BASE.replace(/\/v1$/, '')}/openapi.yaml`;
  const r = await installOpenApi(ccos).importSpec('store2', specUrl);
  assert.deepEqual([...r.registered].sort(), EXPECTED_IDS.map((id) => id.replace('petstore.', 'store2.')));
  const p = ccos.registry.manifest('store2.getPet')!.provider as Record<string, unknown>;
  assert.equal(p.baseUrl, 'http://example.invalid/v1');
  assert.deepEqual(ccos.registry.manifest('store2.getPet')!.effects, [{ kind: 'network', domains: ['example.invalid'] }]);
});

test('import: a spec that is not OpenAPI, or a missing file, is a clear error', async (t) => {
  const ccos = node(t);
  const oa = installOpenApi(ccos);
  const bad = path.join(ROOT, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ openapi: '3.0.3', info: { title: 'x' }, paths: { '/a': { get: { responses: 'nope' } } } }));
  await assert.rejects(oa.importSpec('bad', bad, { baseUrl: BASE }), (e: unknown) => e instanceof CcosError && e.code === 'openapi' && /is not a valid OpenAPI document/.test(e.message));
  await assert.rejects(oa.importSpec('bad', path.join(ROOT, 'missing.yaml'), { baseUrl: BASE }), (e: unknown) => e instanceof CcosError && e.code === 'openapi' && /no such file/.test(e.message));
  await assert.rejects(oa.importSpec('bad name', SPEC, { baseUrl: BASE }), (e: unknown) => e instanceof CcosError && e.code === 'invalid-input');
  await assert.rejects(oa.importSpec('petstore', SPEC, { baseUrl: 'ftp://x' }), (e: unknown) => e instanceof CcosError && /http or https/.test(e.message));
  assert.equal(ccos.registry.list().filter((m) => m.provider.kind === 'openapi').length, 0);
});

test('import never replaces a capability of another provider kind; re-import updates its own', async (t) => {
  const ccos = node(t);
  ccos.registerCapability({ id: 'petstore.getPet' }, () => 'local');
  const oa = installOpenApi(ccos);
  const r = await oa.importSpec('petstore', SPEC, { baseUrl: BASE });
  assert.ok(!r.registered.includes('petstore.getPet'));
  assert.deepEqual(r.skipped.find((s) => s.operation === 'getPet (GET /pets/{id})'), { operation: 'getPet (GET /pets/{id})', reason: 'its id petstore.getPet is already taken by a local capability' });
  assert.equal(ccos.registry.manifest('petstore.getPet')!.provider.kind, 'local');
  const again = await oa.importSpec('petstore', SPEC, { baseUrl: `${BASE}/` });
  assert.deepEqual([...again.registered].sort(), EXPECTED_IDS.filter((id) => id !== 'petstore.getPet'));
});

// -------------------------------------------------------------------------------------------------
// Calls

test('plans call imported operations through the gate: path, query, header params; results as RTFS maps', async (t) => {
  const { ccos } = await imported(t);
  const before = seen.length;
  const one = await ccos.run('(call :petstore.getPet {:id 1 :X-Trace "abc"})');
  assert.deepEqual(completed(one), { id: 1, name: 'Rex', tag: 'dog' });
  assert.equal(seen[before].method, 'GET');
  assert.equal(seen[before].url, '/v1/pets/1');
  assert.equal(seen[before].headers['x-trace'], 'abc');
  // The gate recorded the call and its result.
  const types = ccos.chain.list({ runId: one.runId }).map((a) => a.type);
  assert.ok(types.includes('CapabilityCall') && types.includes('CapabilityResult'), types.join(','));

  const list = await ccos.run('(call :petstore.listPets {:limit 1 :tag ["dog" "cat"]})');
  assert.deepEqual(completed(list), [{ id: 1, name: 'Rex', tag: 'dog' }]);
  assert.equal(seen.at(-1)!.url, '/v1/pets?limit=1&tag=dog&tag=cat');

  const health = await ccos.run('(get (call :petstore.get_health) :ok)');
  assert.equal(completed(health), true);
  // A map result is an RTFS map with keyword keys.
  const v = (await ccos.call('petstore.getPet', '{:id 2}')).value as Value;
  assert.ok(IMap.isMap(v));
  assert.equal((v as IMap<Value, Value>).get(kw('name')), 'Tom');
});

test('schema validation rejects a bad argument before any HTTP request', async (t) => {
  const { ccos } = await imported(t);
  const before = seen.length;
  const cases: [string, string, RegExp][] = [
    ['petstore.getPet', '{:id "seven"}', /id/],
    ['petstore.getPet', '{:id 1.5}', /id/],
    ['petstore.getPet', '{}', /id/],
    ['petstore.getPet', '"7"', /object/],
    ['petstore.createPet', '{:body {:tag "x"}}', /name/],
    ['petstore.createPet', '{}', /body/],
    // These need the full JSON Schema validator (json-schema.ts) in the registry.
    ['petstore.getPet', '{:id 1 :idd 2}', /unexpected property idd/],
    ['petstore.listPets', '{:limit 0}', /limit: must be >= 1/],
    ['petstore.listPets', '{:tag ["a" 2]}', /tag\[1\]: must be string/],
    ['petstore.createPet', '{:body {:name ""}}', /name: must NOT have fewer than 1 characters/],
  ];
  for (const [cap, args, message] of cases) {
    const r = await ccos.run(`(call :${cap} ${args})`);
    assert.equal(r.status, 'failed', `${cap} ${args}`);
    assert.equal(r.error?.code, 'invalid-input', `${cap} ${args}: ${JSON.stringify(r.error)}`);
    assert.match(r.error!.message, message, `${cap} ${args}`);
  }
  assert.equal(seen.length, before, 'no request reached the server');
});

test('imported input schemas are full JSON Schemas (additionalProperties, bounds, array items)', async (t) => {
  const { ccos } = await imported(t);
  const schema = (ccos.registry.manifest('petstore.listPets')!.input as { jsonSchema: unknown }).jsonSchema;
  assert.equal(validateJsonSchema(schema, { limit: 5, tag: ['a'] }), null);
  assert.match(validateJsonSchema(schema, { limit: 0 })!, /\.limit: must be >= 1/);
  assert.match(validateJsonSchema(schema, { limits: 5 })!, /unexpected property limits/);
  assert.match(validateJsonSchema(schema, { tag: ['a', 3] })!, /\.tag\[1\]: must be string/);
});

test('a 404 is an http-error naming method and path, with the server\'s message', async (t) => {
  const { ccos } = await imported(t);
  const r = await ccos.run('(call :petstore.getPet {:id 7})');
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'http-error');
  assert.match(r.error!.message, /GET \/v1\/pets\/7 → 404 Not Found: .*pet 7 not found/);
  // A plan can catch it and read the status.
  const caught = await ccos.run('(try (call :petstore.getPet {:id 7}) (catch :http-error e [(:status (ex-data e)) (:path (ex-data e))]))');
  assert.deepEqual(completed(caught), [404, '/v1/pets/7']);
});

test('DELETE returns nil on 204', async (t) => {
  const { ccos } = await imported(t);
  pets.set(50, { id: 50, name: 'Gone' });
  const r = await ccos.run('(call :petstore.deletePet {:id 50})');
  assert.equal(completed(r), null);
  assert.equal(seen.at(-1)!.method, 'DELETE');
  assert.equal(seen.at(-1)!.url, '/v1/pets/50');
  assert.equal(pets.has(50), false);
});

// -------------------------------------------------------------------------------------------------
// Auth

function context(ccos: Ccos, id: string, secrets: Record<string, string>): CallContext {
  const manifest = ccos.registry.manifest(id)!;
  return {
    runId: null,
    planId: null,
    intentId: null,
    requestId: 'r1',
    stepPath: [],
    capability: manifest,
    store: ccos.store,
    workspaceRoot: ROOT,
    allowedHosts: [],
    signal: new AbortController().signal,
    call: () => Promise.reject(new Error('no nested calls')),
    secret: (name) => {
      if (!(manifest.secrets ?? []).includes(name)) throw new CcosError('secret-denied', `undeclared ${name}`);
      if (!(name in secrets)) throw new CcosError('secret-missing', `the secret ${name} is not set`);
      return secrets[name];
    },
  };
}

test('auth: the provider sends the bearer token or the api key read from secrets at call time', async (t) => {
  const { ccos } = await imported(t);
  const m = ccos.registry.manifest('petstore.createPet')!;
  const provider = openApiProvider(m)!;
  const arg = IMap<Value, Value>().set(kw('body'), IMap<Value, Value>().set(kw('name'), 'Fido'));

  const r1 = valueToPlainJson((await provider.invoke([arg], context(ccos, m.id, { 'petstore.bearerAuth': BEARER }))) as Value) as { id: number; name: string };
  assert.equal(r1.name, 'Fido');
  assert.equal(seen.at(-1)!.headers.authorization, `Bearer ${BEARER}`);
  assert.equal(seen.at(-1)!.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(seen.at(-1)!.body), { name: 'Fido' });

  await provider.invoke([arg], context(ccos, m.id, { 'petstore.apiKey': API_KEY }));
  assert.equal(seen.at(-1)!.headers['x-api-key'], API_KEY);
  assert.equal(seen.at(-1)!.headers.authorization, undefined);

  // No credentials: refused before any request, naming the secrets (never values).
  const before = seen.length;
  await assert.rejects(Promise.resolve().then(() => provider.invoke([arg], context(ccos, m.id, {}))), (e: unknown) => e instanceof CcosError && e.code === 'secret-missing' && /petstore\.bearerAuth or petstore\.apiKey/.test(e.message));
  assert.equal(seen.length, before);

  // A wrong token: the server's 401 becomes an http-error that does not echo the token.
  await assert.rejects(Promise.resolve().then(() => provider.invoke([arg], context(ccos, m.id, { 'petstore.bearerAuth': 'wrong-token' }))), (e: unknown) => (e as { code?: string }).code === 'http-error' && /POST \/v1\/pets → 401 Unauthorized: .*credentials required/.test((e as Error).message) && !(e as Error).message.includes('wrong-token'));
});

test('auth end to end: a plan calls createPet with the token from the secret store', async (t) => {
  const { ccos } = await imported(t);
  // Without the secret: the call fails before any request.
  const before = seen.length;
  const missing = await ccos.run('(call :petstore.createPet {:body {:name "Nemo"}})');
  assert.equal(missing.status, 'failed');
  assert.equal(missing.error?.code, 'secret-missing', JSON.stringify(missing.error));
  assert.equal(seen.length, before);

  installSecrets(ccos).set('petstore.bearerAuth', BEARER);
  const r = await ccos.run('(call :petstore.createPet {:body {:name "Nemo" :tag "fish"}})');
  const pet = completed(r) as { id: number; name: string; tag: string };
  assert.equal(pet.name, 'Nemo');
  assert.equal(pet.tag, 'fish');
  assert.equal(seen.at(-1)!.headers.authorization, `Bearer ${BEARER}`);
  // The token is nowhere on the chain.
  assert.ok(!JSON.stringify(ccos.chain.list({})).includes(BEARER));
});

// -------------------------------------------------------------------------------------------------
// Other processes

test('a second node over the same data dir calls an imported operation through the provider factory', async (t) => {
  const { ccos } = await imported(t);
  // A node loads the OpenAPI provider on first use: nothing to install in the second process.
  const second = node(t, ccos.dataDir);
  const before = seen.length;
  const r = await second.run('(call :petstore.getPet {:id 2})');
  assert.deepEqual(completed(r), { id: 2, name: 'Tom', tag: 'cat' });
  assert.equal(seen.length, before + 1);
});

// -------------------------------------------------------------------------------------------------
// CLI command

const COMMANDS_JS = new URL('../src/cli/ccos-openapi-commands.js', import.meta.url).href;
const INDEX_JS = new URL('../src/ccos/index.js', import.meta.url).href;

/** Runs `caps add-openapi` in a child process (its output is the command's own stdout/stderr). */
async function cli(dataDir: string, args: string[], json: boolean): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `
    const { openapiCommands } = await import(${JSON.stringify(COMMANDS_JS)});
    const { openCcos } = await import(${JSON.stringify(INDEX_JS)});
    const ccos = openCcos({ dataDir: ${JSON.stringify(dataDir)} });
    const [args, json] = JSON.parse(process.argv[1]);
    let code;
    try { code = await openapiCommands['caps add-openapi'].run(ccos, args, json); }
    catch (e) { process.stderr.write('threw ' + e.code + ': ' + e.message + '\\n'); code = 99; }
    ccos.close();
    process.exitCode = code;`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify([args, json])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

test('ccos caps add-openapi: text and JSON output, usage errors, the imported capabilities persist', async (t) => {
  const dataDir = path.join(ROOT, 'cli-data');
  const cmd = openapiCommands['caps add-openapi'];
  assert.match(cmd.usage, /ccos caps add-openapi NAME SPEC/);
  assert.ok(cmd.summary.length > 0);
  const text = await cli(dataDir, ['petstore', SPEC, '--base-url', BASE], false);
  assert.equal(text.code, 0, text.stderr);
  for (const id of EXPECTED_IDS) assert.match(text.stdout, new RegExp(`^added ${id.replace('.', '\\.')}$`, 'm'));
  assert.match(text.stderr, /^skipped uploadPhoto \(POST \/pets\/\{id\}\/photo\): .*multipart/m);
  assert.match(text.stderr, /^skipped getSession \(GET \/session\): cookie parameter sid/m);
  assert.match(text.stderr, /5 operation\(s\) imported, 3 skipped/);

  const json = await cli(dataDir, ['petstore', SPEC, `--base-url=${BASE}`], true);
  assert.equal(json.code, 0, json.stderr);
  const o = JSON.parse(json.stdout) as { ok: boolean; registered: string[]; skipped: { operation: string; reason: string }[] };
  assert.equal(o.ok, true);
  assert.deepEqual([...o.registered].sort(), EXPECTED_IDS);
  assert.equal(o.skipped.length, 3);

  const usage = await cli(dataDir, ['petstore'], false);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /needs SPEC/);
  assert.equal((await cli(dataDir, ['petstore', SPEC, '--bogus'], false)).code, 2);
  const bad = await cli(dataDir, ['petstore', path.join(ROOT, 'nope.yaml')], false);
  assert.equal(bad.code, 99);
  assert.match(bad.stderr, /threw openapi: cannot read .*nope\.yaml: no such file/);

  // This process sees what the command imported and can call it.
  const ccos = node(t, dataDir);
  installOpenApi(ccos);
  assert.deepEqual(completed(await ccos.run('(:name (call :petstore.getPet {:id 1}))')), 'Rex');
});

// -------------------------------------------------------------------------------------------------
// JSON Schema validator

test('json-schema: types, nested objects and arrays report the path of each problem', () => {
  const schema = {
    type: 'object',
    required: ['user', 'items'],
    properties: {
      user: { type: 'object', required: ['name'], properties: { name: { type: 'string' }, age: { type: 'integer', minimum: 0 } } },
      items: { type: 'array', minItems: 1, items: { type: 'object', required: ['sku'], properties: { sku: { type: 'string', pattern: '^[A-Z]{3}-\\d+$' }, qty: { type: 'number' } } } },
    },
  };
  assert.equal(validateJsonSchema(schema, { user: { name: 'a', age: 3 }, items: [{ sku: 'ABC-1', qty: 2.5 }] }), null);
  assert.equal(validateJsonSchema(schema, { user: {}, items: [{ sku: 'ABC-1' }] }), '.user: missing required property name');
  assert.equal(validateJsonSchema(schema, { user: { name: 'a', age: -1 }, items: [{ sku: 'ABC-1' }] }), '.user.age: must be >= 0');
  assert.match(validateJsonSchema(schema, { user: { name: 'a' }, items: [{ sku: 'ABC-1' }, { sku: 'x' }] })!, /^\.items\[1\]\.sku: must match pattern/);
  assert.equal(validateJsonSchema(schema, { user: { name: 'a' }, items: [] }), '.items: must NOT have fewer than 1 items');
  assert.equal(validateJsonSchema(schema, { items: [{ qty: 'x' }] }), 'missing required property user; .items[0]: missing required property sku; .items[0].qty: must be number');
  assert.equal(validateJsonSchema(schema, 'text'), 'must be object');
  assert.equal(validateJsonSchema({ enum: ['a', 'b'] }, 'c'), 'must be one of ["a","b"]');
  assert.equal(validateJsonSchema({ type: ['string', 'null'] }, null), null);
  assert.equal(validateJsonSchema(true, 42), null);
  assert.equal(validateJsonSchema(false, 42), 'boolean schema is false');
});

test('json-schema: formats (standard and OpenAPI)', () => {
  const f = (format: string, type = 'string') => ({ type, format });
  assert.equal(validateJsonSchema(f('email'), 'a@b.io'), null);
  assert.equal(validateJsonSchema(f('email'), 'not an email'), 'must be a valid email');
  assert.equal(validateJsonSchema(f('date-time'), '2024-05-01T10:00:00Z'), null);
  assert.equal(validateJsonSchema(f('date-time'), '2024-13-01'), 'must be a valid date-time');
  assert.equal(validateJsonSchema(f('date'), '2024-02-29'), null);
  assert.equal(validateJsonSchema(f('uuid'), '123e4567-e89b-12d3-a456-426614174000'), null);
  assert.equal(validateJsonSchema(f('uuid'), '123'), 'must be a valid uuid');
  assert.equal(validateJsonSchema(f('uri'), 'https://example.com/x?y=1'), null);
  assert.equal(validateJsonSchema(f('ipv4'), '300.1.1.1'), 'must be a valid ipv4');
  assert.equal(validateJsonSchema(f('int32', 'integer'), 2 ** 31 + 1), 'must be a valid int32');
  assert.equal(validateJsonSchema(f('int32', 'integer'), -5), null);
  assert.equal(validateJsonSchema(f('int64', 'integer'), 2 ** 40), null);
  assert.equal(validateJsonSchema(f('byte'), 'aGVsbG8='), null);
  assert.equal(validateJsonSchema(f('byte'), 'not base64!'), 'must be a valid byte');
  assert.equal(validateJsonSchema(f('binary'), 'anything'), null);
  // Formats apply only to their type.
  assert.equal(validateJsonSchema(f('email', 'integer'), 5), null);
});

test('json-schema: invalid schemas give a message naming the problem; valid ones pass; results are cached consistently', () => {
  assert.equal(checkSchemaIsValid({ type: 'object', properties: { a: { type: 'string' } }, required: ['a'] }), null);
  assert.equal(checkSchemaIsValid({ type: 'strin' }), 'invalid JSON Schema at .type: must be one of ["array","boolean","integer","null","number","object","string"]');
  assert.equal(checkSchemaIsValid({ type: 'object', properties: { a: { minimum: 'x' } } }), 'invalid JSON Schema at .properties.a.minimum: must be number');
  assert.equal(checkSchemaIsValid({ required: 'a' }), 'invalid JSON Schema at .required: must be array');
  assert.match(checkSchemaIsValid({ properties: { a: { $ref: '#/definitions/missing' } } })!, /invalid JSON Schema: can't resolve reference #\/definitions\/missing/);
  assert.equal(checkSchemaIsValid(5), 'a JSON Schema must be an object or a boolean');
  assert.equal(checkSchemaIsValid({ type: 'string', format: 'int32' }), null);
  // An invalid schema is never a pass.
  assert.match(validateJsonSchema({ type: 'strin' }, 'x')!, /^invalid JSON Schema/);
  // Key order does not matter (canonical cache key), and a cached schema gives the same answers.
  const a = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
  const b = { required: ['n'], properties: { n: { type: 'integer' } }, type: 'object' };
  for (let i = 0; i < 3; i++) {
    assert.equal(validateJsonSchema(a, { n: 1 }), null);
    assert.equal(validateJsonSchema(b, { n: 'x' }), '.n: must be integer');
  }
  // Mutating a schema after use does not change what a fresh copy of the original validates.
  const c = { type: 'string' };
  assert.equal(validateJsonSchema(c, 'x'), null);
  (c as Record<string, unknown>).type = 'integer';
  assert.equal(validateJsonSchema(c, 'x'), 'must be integer');
});
