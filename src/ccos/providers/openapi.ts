/**
 * OpenAPI 3 import: one capability per operation of a spec, with input and output JSON Schemas
 * taken from the spec and authentication read from secrets at call time.
 *
 * Owns: reading a spec (file or http(s) URL; JSON or YAML) with swagger-parser, turning each
 * operation into a manifest (or a clear reason why it is skipped), and the `openapi` provider
 * kind: building the HTTP request from a call's argument and turning the response into a value.
 * Manifests persist their provider spec, so any process that calls `installOpenApi` can call them.
 * Must never: record anything while a call runs (the gate records), put a secret value in a
 * manifest, a message or an error, or send a request for arguments the schema rejects (the gate
 * validates before the provider runs).
 */
import { STATUS_CODES } from 'node:http';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { Json } from '../../common/canonical.js';
import { IMap, RtfsError, kw, type RMap, type Value } from '../../rtfs/index.js';
import type { CallContext, CapabilityManifest, Provider, RiskTier } from '../capabilities/types.js';
import { CcosError } from '../errors.js';
import { plainJsonToValue, valueToPlainJson } from '../values-json.js';
import type { Ccos } from '../index.js';

// -------------------------------------------------------------------------------------------------
// The provider spec persisted in each manifest

/** How one parameter is sent. */
export interface OpenApiParam {
  name: string;
  in: 'path' | 'query' | 'header';
  /** Serialization style (`simple`, `form`, `spaceDelimited`, `pipeDelimited`). */
  style: string;
  explode: boolean;
}

/** One security scheme of an alternative, and the secret that holds its credential. */
export interface OpenApiAuth {
  scheme: string;
  /** `apiKey` (header or query), `bearer` (Authorization: Bearer), `basic` (secret is `user:password`). */
  type: 'apiKey' | 'bearer' | 'basic';
  in?: 'header' | 'query';
  /** Header or query parameter name of an apiKey. */
  name?: string;
  secret: string;
}

/** `manifest.provider` of an imported operation. */
export interface OpenApiProviderSpec {
  kind: 'openapi';
  api: string;
  operation: string;
  method: string;
  path: string;
  baseUrl: string;
  params: OpenApiParam[];
  /** Content type of the JSON request body, or null when the operation takes none. */
  body: string | null;
  /** Security alternatives: the first whose secrets are all available is used. */
  auth: OpenApiAuth[][];
  /** The spec allows calling without credentials (an empty security requirement). */
  authOptional: boolean;
}

export interface ImportResult {
  registered: string[];
  skipped: { operation: string; reason: string }[];
}

export interface OpenApiImporter {
  /**
   * Imports every operation of an OpenAPI 3 spec (file path or http(s) URL) as capabilities
   * `<name>.<operationId>`. Operations with unsupported features are skipped with a reason.
   */
  importSpec(name: string, specPathOrUrl: string, opts?: { baseUrl?: string }): Promise<ImportResult>;
}

// -------------------------------------------------------------------------------------------------
// Installing

/** Teaches `ccos` the `openapi` provider kind and returns the importer. */
export function installOpenApi(ccos: Ccos): OpenApiImporter {
  ccos.useProviderFactory('openapi', (m) => openApiProvider(m));
  return {
    importSpec: async (name, specPathOrUrl, opts = {}) => {
      const read = await readOpenApi(name, specPathOrUrl, opts);
      const skipped = [...read.skipped];
      // Never replace a capability that another kind of provider registered (e.g. a built-in).
      const manifests = read.manifests.filter((m) => {
        const existing = ccos.registry.manifest(m.id);
        if (!existing || existing.provider.kind === 'openapi') return true;
        const p = m.provider as unknown as OpenApiProviderSpec;
        skipped.push({ operation: `${p.operation} (${p.method} ${p.path})`, reason: `its id ${m.id} is already taken by a ${existing.provider.kind} capability` });
        return false;
      });
      const source = /^https?:\/\//i.test(specPathOrUrl) ? specPathOrUrl : path.resolve(specPathOrUrl);
      ccos.store.tx(() => {
        for (const m of manifests) {
          ccos.registry.register(m, openApiProvider(m)!, true);
          ccos.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: m.id, version: m.version, provider: 'openapi', api: name, spec: source, operation: (m.provider as unknown as OpenApiProviderSpec).operation } });
        }
      });
      return { registered: manifests.map((m) => m.id), skipped };
    },
  };
}

/** The provider of an imported operation (undefined for a manifest that is not one). */
export function openApiProvider(m: CapabilityManifest): Provider | undefined {
  if (m.provider.kind !== 'openapi') return undefined;
  const spec = m.provider as unknown as OpenApiProviderSpec;
  return { invoke: (args, ctx) => invokeOperation(spec, args, ctx) };
}

// -------------------------------------------------------------------------------------------------
// Reading a spec

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json(?:\s*;.*)?$/i;
const NAME_RE = /^[A-Za-z][A-Za-z0-9_-]*(?:\.[A-Za-z][A-Za-z0-9_-]*)*$/;
/** Header parameters OpenAPI says to ignore (they are set from other parts of the spec). */
const IGNORED_HEADERS = new Set(['accept', 'content-type', 'authorization']);

class Unsupported extends Error {}

/** Parses, validates and dereferences a spec; builds the manifests of its supported operations. */
export async function readOpenApi(name: string, specPathOrUrl: string, opts: { baseUrl?: string } = {}): Promise<{ manifests: CapabilityManifest[]; skipped: ImportResult['skipped'] }> {
  if (!NAME_RE.test(name)) throw new CcosError('invalid-input', `invalid API name ${JSON.stringify(name)}`, { hint: 'use letters, digits, _ and - (dots separate parts), starting with a letter' });
  let doc: Obj;
  try {
    // The http resolver refuses loopback and private addresses (SSRF protection); a spec the user
    // names on such a host is read anyway (and so are its own references).
    const privateSpec = /^https?:\/\//i.test(specPathOrUrl) && isPrivateHost(new URL(specPathOrUrl).hostname);
    const options = { dereference: { circular: 'ignore' as const }, resolve: { http: { safeUrlResolver: !privateSpec, timeout: 30_000 } } };
    doc = (await SwaggerParser.validate(specPathOrUrl, options as SwaggerParser.Options)) as unknown as Obj;
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    const code = (e as { code?: string }).code;
    const missing = code === 'ENOENT' || /ENOENT|no such file/i.test(msg);
    throw new CcosError('openapi', missing ? `cannot read ${specPathOrUrl}: no such file` : `${specPathOrUrl} is not a valid OpenAPI document: ${firstLines(msg, 6)}`, { hint: missing ? undefined : 'fix the spec (swagger-parser validates it against the OpenAPI schema)' });
  }
  if (typeof doc.openapi !== 'string' || !doc.openapi.startsWith('3.')) {
    throw new CcosError('openapi', `${specPathOrUrl}: only OpenAPI 3.x is supported${typeof doc.swagger === 'string' ? ` (this is Swagger ${doc.swagger})` : ''}`, { hint: 'convert the spec to OpenAPI 3 (e.g. with swagger2openapi)' });
  }
  const baseUrl = resolveBaseUrl(doc, specPathOrUrl, opts.baseUrl);
  const host = new URL(baseUrl).hostname;
  const version = isObj(doc.info) && typeof doc.info.version === 'string' ? doc.info.version : '0.1.0';
  const schemes = isObj(doc.components) && isObj(doc.components.securitySchemes) ? doc.components.securitySchemes : {};
  const manifests: CapabilityManifest[] = [];
  const skipped: ImportResult['skipped'] = [];
  const ids = new Map<string, string>();
  const paths = isObj(doc.paths) ? doc.paths : {};
  for (const [p, item] of Object.entries(paths)) {
    if (!isObj(item)) continue;
    for (const method of METHODS) {
      const op = item[method];
      if (!isObj(op)) continue;
      const opName = typeof op.operationId === 'string' && op.operationId ? op.operationId : `${method}_${p}`;
      const label = typeof op.operationId === 'string' && op.operationId ? `${op.operationId} (${method.toUpperCase()} ${p})` : `${method.toUpperCase()} ${p}`;
      try {
        const id = `${name}.${sanitize(opName)}`;
        const clash = ids.get(id);
        if (clash) throw new Unsupported(`its capability id ${id} is already used by ${clash}`);
        const m = operationManifest({ api: name, id, method, path: p, item, op, doc, schemes, baseUrl, host, version });
        ids.set(id, label);
        manifests.push(m);
      } catch (e) {
        if (!(e instanceof Unsupported)) throw e;
        skipped.push({ operation: label, reason: e.message });
      }
    }
  }
  return { manifests, skipped };
}

/** Loopback, link-local and private-network host names and addresses. */
function isPrivateHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost') || h === '::1' || h === '0.0.0.0') return true;
  const v4 = /^(\d+)\.(\d+)\.\d+\.\d+$/.exec(h);
  if (v4) {
    const [a, b] = [Number(v4[1]), Number(v4[2])];
    return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254);
  }
  return /^f[cd][0-9a-f]{2}:/.test(h) || h.startsWith('fe80:');
}

function firstLines(s: string, n: number): string {
  const lines = s.split('\n').filter((l) => l.trim());
  return lines.slice(0, n).join('\n') + (lines.length > n ? `\n(and ${lines.length - n} more lines)` : '');
}

function resolveBaseUrl(doc: Obj, specPathOrUrl: string, given: string | undefined): string {
  let raw = given;
  if (raw === undefined) {
    const server = Array.isArray(doc.servers) ? (doc.servers[0] as Obj | undefined) : undefined;
    if (!server || typeof server.url !== 'string') throw new CcosError('invalid-input', `${specPathOrUrl} declares no servers: give the API's address with --base-url URL`);
    raw = server.url.replace(/\{([^}]+)\}/g, (_, v: string) => {
      const d = isObj(server.variables) && isObj(server.variables[v]) ? server.variables[v].default : undefined;
      return typeof d === 'string' ? d : `{${v}}`;
    });
    // A relative server URL is relative to where the spec was read from.
    if (/^https?:\/\//i.test(specPathOrUrl)) raw = new URL(raw, specPathOrUrl).toString();
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CcosError('invalid-input', `invalid base URL ${JSON.stringify(raw)}`, { hint: 'give an absolute http(s) URL, e.g. --base-url https://api.example.com/v1' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CcosError('invalid-input', `the base URL must be http or https, got ${u.protocol}`);
  if (u.username || u.password) throw new CcosError('invalid-input', 'the base URL must not carry credentials (use the API\'s security schemes and secrets)');
  u.search = '';
  u.hash = '';
  return u.toString().replace(/\/+$/, '');
}

/** A capability id segment: letters, digits, `_` and `-`. */
function sanitize(s: string): string {
  const out = s.replace(/[{}]/g, '').replace(/[^A-Za-z0-9_-]+/g, '_').replace(/_+/g, '_').replace(/^_+|_+$/g, '');
  return out || 'op';
}

interface OpInput {
  api: string;
  id: string;
  method: (typeof METHODS)[number];
  path: string;
  item: Obj;
  op: Obj;
  doc: Obj;
  schemes: Obj;
  baseUrl: string;
  host: string;
  version: string;
}

function operationManifest(o: OpInput): CapabilityManifest {
  const { op, method } = o;
  const problems: string[] = [];
  const attempt = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      if (!(e instanceof Unsupported)) throw e;
      problems.push(e.message);
      return undefined;
    }
  };
  if (isObj(op.callbacks) && Object.keys(op.callbacks).length > 0) problems.push(`callbacks (${Object.keys(op.callbacks).join(', ')}) are not supported`);

  // Parameters: path-level ones, overridden by operation-level ones of the same name and place.
  const merged = new Map<string, Obj>();
  for (const list of [o.item.parameters, op.parameters]) {
    if (!Array.isArray(list)) continue;
    for (const prm of list) if (isObj(prm)) merged.set(`${String(prm.in)}:${String(prm.name)}`, prm);
  }
  const properties: Record<string, Json> = {};
  const required: string[] = [];
  const params: OpenApiParam[] = [];
  for (const prm of merged.values()) {
    const r = attempt(() => parameter(prm));
    if (!r) continue;
    if (r.param.in === 'header' && IGNORED_HEADERS.has(r.param.name.toLowerCase())) continue;
    if (r.param.name in properties) {
      problems.push(`parameter ${r.param.name} appears in more than one place (${params.find((x) => x.name === r.param.name)?.in ?? 'body'} and ${r.param.in})`);
      continue;
    }
    properties[r.param.name] = r.schema;
    if (r.required) required.push(r.param.name);
    params.push(r.param);
  }
  // Every `{name}` of the path must be a path parameter.
  for (const [, n] of o.path.matchAll(/\{([^}]+)\}/g)) if (!params.some((x) => x.in === 'path' && x.name === n)) problems.push(`path parameter {${n}} is not declared`);

  let body: string | null = null;
  if (op.requestBody !== undefined) {
    const r = attempt(() => requestBody(op.requestBody));
    if (r) {
      if ('body' in properties) problems.push('a parameter named body clashes with the request body');
      else {
        body = r.contentType;
        properties.body = r.schema;
        if (r.required) required.push('body');
      }
    }
  }
  const output = attempt(() => responseSchema(op.responses));
  const auth = attempt(() => security(o));
  if (problems.length) throw new Unsupported(problems.join('; '));

  const risk: RiskTier = method === 'get' || method === 'head' || method === 'options' || method === 'trace' ? 'low' : 'medium';
  const idempotent = method !== 'post' && method !== 'patch';
  const providerSpec: OpenApiProviderSpec = {
    kind: 'openapi',
    api: o.api,
    operation: typeof op.operationId === 'string' ? op.operationId : `${method}_${o.path}`,
    method: method.toUpperCase(),
    path: o.path,
    baseUrl: o.baseUrl,
    params,
    body,
    auth: auth!.alternatives,
    authOptional: auth!.optional,
  };
  const summary = typeof op.summary === 'string' && op.summary ? op.summary : typeof op.description === 'string' ? op.description.split('\n')[0] : '';
  const manifest: CapabilityManifest = {
    id: o.id,
    version: o.version,
    description: `${summary ? `${summary} ` : ''}(${method.toUpperCase()} ${o.path})`.trim(),
    effects: [{ kind: 'network', domains: [o.host] }],
    risk,
    idempotent,
    deterministic: false,
    provider: providerSpec as unknown as CapabilityManifest['provider'],
  };
  if (params.length || body) {
    const input: Record<string, Json> = { type: 'object', properties, additionalProperties: false };
    if (required.length) input.required = required;
    manifest.input = { jsonSchema: input };
  }
  if (output) manifest.output = { jsonSchema: output };
  const secrets = [...new Set(auth!.alternatives.flat().map((a) => a.secret))];
  if (secrets.length) manifest.secrets = secrets;
  return manifest;
}

function parameter(prm: Obj): { param: OpenApiParam; schema: Json; required: boolean } {
  const name = String(prm.name);
  const where = String(prm.in);
  if (where === 'cookie') throw new Unsupported(`cookie parameter ${name} is not supported`);
  if (where !== 'path' && where !== 'query' && where !== 'header') throw new Unsupported(`parameter ${name} is in ${where}, which is not supported`);
  if (prm.content !== undefined) throw new Unsupported(`parameter ${name} is described by content (a media type), which is not supported; only schema parameters are`);
  const raw = isObj(prm.schema) ? prm.schema : {};
  const schema = toJsonSchema(raw, 'request', `parameter ${name}`);
  const types = schemaTypes(raw);
  const style = typeof prm.style === 'string' ? prm.style : where === 'query' ? 'form' : 'simple';
  const supportedStyles = where === 'query' ? ['form', 'spaceDelimited', 'pipeDelimited'] : ['simple'];
  if (!supportedStyles.includes(style)) throw new Unsupported(`parameter ${name} uses style ${style}, which is not supported here (supported: ${supportedStyles.join(', ')})`);
  if (types.includes('object')) throw new Unsupported(`parameter ${name} is an object, which is not supported (only primitive and array parameters are)`);
  if (types.includes('array') && isObj(raw.items) && schemaTypes(raw.items).some((t) => t === 'object' || t === 'array')) throw new Unsupported(`parameter ${name} is an array of objects or arrays, which is not supported`);
  const explode = typeof prm.explode === 'boolean' ? prm.explode : style === 'form';
  return { param: { name, in: where, style, explode }, schema, required: where === 'path' || prm.required === true };
}

/** The types a schema allows (`[]` when it does not say). */
function schemaTypes(s: Obj): string[] {
  if (typeof s.type === 'string') return [s.type];
  if (Array.isArray(s.type)) return s.type.filter((t): t is string => typeof t === 'string');
  if (isObj(s.properties)) return ['object'];
  return [];
}

function requestBody(rb: unknown): { contentType: string; schema: Json; required: boolean } {
  if (!isObj(rb)) throw new Unsupported('the request body is not described');
  const content = isObj(rb.content) ? rb.content : {};
  const types = Object.keys(content);
  const json = types.find((t) => JSON_TYPE.test(t));
  if (!json) throw new Unsupported(`request body as ${types.join(', ') || 'no media type'} is not supported (supported: application/json)`);
  const media = content[json];
  const schema = isObj(media) && isObj(media.schema) ? toJsonSchema(media.schema, 'request', 'request body') : {};
  return { contentType: json.split(';')[0].trim(), schema, required: rb.required === true };
}

function responseSchema(responses: unknown): Record<string, Json> | undefined {
  if (!isObj(responses)) return undefined;
  const success = Object.keys(responses).filter((c) => /^2(?:\d\d|XX)$/i.test(c));
  if (success.length === 0) return undefined;
  const variants: Json[] = [];
  const nonJson: string[] = [];
  let any = false;
  // 200 and 201 first: they are the usual answers.
  success.sort((a, b) => rank(a) - rank(b));
  for (const code of success) {
    const r = responses[code];
    const content = isObj(r) && isObj(r.content) ? r.content : {};
    const types = Object.keys(content);
    if (types.length === 0) {
      variants.push({ type: 'null' }); // no content: the call returns nil
      continue;
    }
    const json = types.find((t) => JSON_TYPE.test(t));
    if (!json) {
      nonJson.push(`${code} ${types.join(', ')}`);
      continue;
    }
    const media = content[json];
    if (isObj(media) && isObj(media.schema)) variants.push(toJsonSchema(media.schema, 'response', `response ${code}`));
    else any = true;
  }
  if (variants.length === 0 && !any && nonJson.length) throw new Unsupported(`responses are not JSON (${nonJson.join('; ')}); only application/json responses are supported`);
  // A success response that is not JSON makes the call fail at run time rather than be skipped.
  if (any || variants.length === 0) return undefined;
  const distinct = [...new Map(variants.map((v) => [JSON.stringify(v), v])).values()];
  return distinct.length === 1 ? (distinct[0] as Record<string, Json>) : { anyOf: distinct };
}

function rank(code: string): number {
  return code === '200' ? 0 : code === '201' ? 1 : 2;
}

function security(o: OpInput): { alternatives: OpenApiAuth[][]; optional: boolean } {
  const reqs = Array.isArray(o.op.security) ? o.op.security : Array.isArray(o.doc.security) ? o.doc.security : [];
  if (reqs.length === 0) return { alternatives: [], optional: true };
  const alternatives: OpenApiAuth[][] = [];
  const problems: string[] = [];
  let optional = false;
  for (const req of reqs) {
    if (!isObj(req)) continue;
    const names = Object.keys(req);
    if (names.length === 0) {
      optional = true;
      continue;
    }
    const alt: OpenApiAuth[] = [];
    for (const n of names) {
      const s = o.schemes[n];
      const a = isObj(s) ? authOf(o.api, n, s) : `security scheme ${n} is not defined`;
      if (typeof a === 'string') problems.push(a);
      else alt.push(a);
    }
    if (alt.length === names.length) alternatives.push(alt);
  }
  if (alternatives.length === 0 && !optional) throw new Unsupported([...new Set(problems)].join('; '));
  return { alternatives, optional };
}

function authOf(api: string, name: string, s: Obj): OpenApiAuth | string {
  const secret = `${api}.${sanitize(name)}`;
  if (s.type === 'apiKey') {
    if (s.in === 'header' || s.in === 'query') return { scheme: name, type: 'apiKey', in: s.in, name: String(s.name), secret };
    return `security scheme ${name} (apiKey in ${String(s.in)}) is not supported (supported: apiKey in header or query)`;
  }
  if (s.type === 'http') {
    const scheme = String(s.scheme ?? '').toLowerCase();
    if (scheme === 'bearer') return { scheme: name, type: 'bearer', secret };
    if (scheme === 'basic') return { scheme: name, type: 'basic', secret };
    return `security scheme ${name} (http ${scheme}) is not supported (supported: http bearer and basic)`;
  }
  return `security scheme ${name} (${String(s.type)}${s.type === 'oauth2' && isObj(s.flows) ? ` ${Object.keys(s.flows).join('/')}` : ''}) is not supported (supported: apiKey, http bearer, http basic)`;
}

// -------------------------------------------------------------------------------------------------
// OpenAPI schema → JSON Schema (draft-07)

const DROP = new Set(['discriminator', 'xml', 'externalDocs', 'example', 'nullable', 'deprecated']);
/** Keywords whose value is one schema. */
const SUBSCHEMA = new Set(['items', 'not', 'additionalProperties', 'if', 'then', 'else', 'contains', 'propertyNames', 'unevaluatedProperties', 'unevaluatedItems', 'additionalItems']);

/** A plain copy of JSON data (enum, default, const, ...); a cycle is unsupported. */
function copyJson(v: unknown, where: string, stack: Set<unknown>): Json {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v !== 'object') return null;
  if (stack.has(v)) throw new Unsupported(`${where} has a recursive schema, which is not supported`);
  stack.add(v);
  try {
    if (Array.isArray(v)) return v.map((x) => copyJson(x, where, stack));
    const o: Record<string, Json> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = copyJson(x, where, stack);
    return o;
  } finally {
    stack.delete(v);
  }
}

/**
 * Converts an OpenAPI Schema Object to JSON Schema: `nullable` becomes a `null` type, boolean
 * `exclusiveMinimum/Maximum` become numbers, OpenAPI-only keywords go; in requests, `readOnly`
 * properties are not required, in responses, `writeOnly` ones are not.
 */
export function toJsonSchema(s: unknown, direction: 'request' | 'response', where: string, stack: Set<unknown> = new Set()): Record<string, Json> {
  if (!isObj(s)) return {};
  if (stack.has(s)) throw new Unsupported(`${where} has a recursive schema, which is not supported`);
  if (typeof s.$ref === 'string') throw new Unsupported(`${where} has a recursive or unresolved schema reference ${s.$ref}, which is not supported`);
  stack.add(s);
  try {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(s)) {
      if (DROP.has(k) || k.startsWith('x-')) continue;
      if (k === 'properties' && isObj(v)) {
        const props: Record<string, Json> = {};
        for (const [pn, ps] of Object.entries(v)) props[pn] = toJsonSchema(ps, direction, where, stack);
        out.properties = props;
      } else if ((k === 'patternProperties' || k === 'dependentSchemas' || k === '$defs' || k === 'definitions') && isObj(v)) {
        const m: Record<string, Json> = {};
        for (const [pn, ps] of Object.entries(v)) m[pn] = toJsonSchema(ps, direction, where, stack);
        out[k] = m;
      } else if (SUBSCHEMA.has(k) && isObj(v)) {
        out[k] = toJsonSchema(v, direction, where, stack);
      } else if ((k === 'allOf' || k === 'anyOf' || k === 'oneOf' || k === 'prefixItems' || k === 'items') && Array.isArray(v)) {
        out[k] = v.map((x) => toJsonSchema(x, direction, where, stack));
      } else if (k === 'exclusiveMinimum' || k === 'exclusiveMaximum') {
        if (typeof v === 'number') out[k] = v;
        else if (v === true) {
          const bound = s[k === 'exclusiveMinimum' ? 'minimum' : 'maximum'];
          if (typeof bound === 'number') out[k] = bound;
        }
      } else if (v !== undefined) {
        out[k] = copyJson(v, where, new Set());
      }
    }
    // OpenAPI 3.0: exclusiveMinimum: true replaces minimum.
    if (s.exclusiveMinimum === true && typeof s.minimum === 'number') delete out.minimum;
    if (s.exclusiveMaximum === true && typeof s.maximum === 'number') delete out.maximum;
    if (s.nullable === true) {
      if (typeof out.type === 'string') out.type = [out.type, 'null'];
      else if (Array.isArray(out.type) && !out.type.includes('null')) out.type = [...out.type, 'null'];
      if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    }
    if (Array.isArray(out.required) && isObj(s.properties)) {
      const hidden = direction === 'request' ? 'readOnly' : 'writeOnly';
      const props = s.properties;
      const kept = (out.required as Json[]).filter((r) => !(typeof r === 'string' && isObj(props[r]) && props[r][hidden] === true));
      if (kept.length) out.required = kept;
      else delete out.required;
    }
    return out;
  } finally {
    stack.delete(s);
  }
}

// -------------------------------------------------------------------------------------------------
// Calling

const MAX_BODY_IN_ERROR = 200;

async function invokeOperation(spec: OpenApiProviderSpec, args: Value[], ctx: CallContext): Promise<Value> {
  if (args.length > 1) throw new RtfsError('invalid-input', `${ctx.capability.id} takes one map argument, got ${args.length} arguments`);
  const rawInput = args.length ? valueToPlainJson(args[0]) : {};
  if (rawInput !== null && !isObj(rawInput)) throw new RtfsError('invalid-input', `${ctx.capability.id} takes a map of its parameters${spec.body ? ' and :body' : ''}`);
  const input = (rawInput ?? {}) as Record<string, Json>;

  // Path, with each parameter encoded.
  let missing: string | undefined;
  const concretePath = spec.path.replace(/\{([^}]+)\}/g, (_, n: string) => {
    const v = input[n];
    if (v === undefined || v === null) {
      missing ??= n;
      return '';
    }
    return encodeURIComponent(serialize(v, ','));
  });
  if (missing !== undefined) throw new RtfsError('invalid-input', `${ctx.capability.id}: missing path parameter ${missing}`);
  const url = new URL(spec.baseUrl + concretePath);
  const headers: Record<string, string> = { accept: 'application/json' };
  for (const p of spec.params) {
    const v = input[p.name];
    if (v === undefined || v === null || p.in === 'path') continue;
    if (p.in === 'header') headers[p.name.toLowerCase()] = serialize(v, ',');
    else if (Array.isArray(v) && p.explode && p.style === 'form') for (const x of v) url.searchParams.append(p.name, serialize(x, ','));
    else url.searchParams.append(p.name, serialize(v, p.style === 'spaceDelimited' ? ' ' : p.style === 'pipeDelimited' ? '|' : ','));
  }

  // Credentials: the first alternative whose secrets are all available.
  const secrets = applyAuth(spec, ctx, headers, url);

  let body: string | undefined;
  if (spec.body && input.body !== undefined) {
    body = JSON.stringify(input.body);
    headers['content-type'] = spec.body;
  }
  const what = `${spec.method} ${url.pathname}`;
  let res: Response;
  try {
    res = await fetch(url, { method: spec.method, headers, body, signal: ctx.signal, redirect: 'manual' });
  } catch (e) {
    if (ctx.signal.aborted) throw new RtfsError('cancelled', `${what} was aborted`);
    const cause = (e as { cause?: { message?: string; code?: string } }).cause;
    throw new RtfsError('http-error', redact(`${what} failed: ${cause?.message ?? (e as Error).message}`, secrets));
  }
  const text = await res.text();
  if (res.status < 200 || res.status > 299) {
    const statusText = res.statusText || STATUS_CODES[res.status] || '';
    const short = redact(text.replace(/\s+/g, ' ').trim(), secrets);
    const shown = short.length > MAX_BODY_IN_ERROR ? `${short.slice(0, MAX_BODY_IN_ERROR)}…` : short;
    const data: RMap = IMap<Value, Value>().set(kw('status'), res.status).set(kw('method'), spec.method).set(kw('path'), url.pathname).set(kw('body'), shown);
    throw new RtfsError('http-error', `${what} → ${res.status}${statusText ? ` ${statusText}` : ''}${shown ? `: ${shown}` : ''}`, undefined, data, res.status >= 300 && res.status < 400 ? 'redirects are not followed: point --base-url at the final address' : undefined);
  }
  if (spec.method === 'HEAD' || text.trim() === '') return null;
  const type = res.headers.get('content-type') ?? '';
  if (JSON_TYPE.test(type) || (!type && /^[[{"]/.test(text.trim()))) {
    try {
      return plainJsonToValue(JSON.parse(text));
    } catch {
      throw new RtfsError('http-error', `${what} → ${res.status}: the response is not valid JSON`);
    }
  }
  return text;
}

/** A parameter value as text (`simple`/`form` style): arrays joined by `sep`. */
function serialize(v: Json, sep: string): string {
  if (Array.isArray(v)) return v.map((x) => serialize(x, sep)).join(sep);
  if (isObj(v)) return JSON.stringify(v);
  return String(v);
}

function applyAuth(spec: OpenApiProviderSpec, ctx: CallContext, headers: Record<string, string>, url: URL): string[] {
  if (spec.auth.length === 0) return [];
  let firstError: unknown;
  for (const alt of spec.auth) {
    const values: string[] = [];
    try {
      for (const a of alt) values.push(ctx.secret(a.secret));
    } catch (e) {
      firstError ??= e;
      continue;
    }
    alt.forEach((a, i) => {
      const v = values[i];
      if (a.type === 'bearer') headers.authorization = `Bearer ${v}`;
      else if (a.type === 'basic') headers.authorization = `Basic ${Buffer.from(v, 'utf8').toString('base64')}`;
      else if (a.in === 'header') headers[a.name!.toLowerCase()] = v;
      else url.searchParams.set(a.name!, v);
    });
    return values.filter((v) => v.length > 0);
  }
  if (spec.authOptional) return [];
  const names = spec.auth.map((alt) => alt.map((a) => a.secret).join(' + ')).join(' or ');
  const detail = firstError instanceof Error ? firstError.message : String(firstError);
  throw new CcosError('secret-missing', `${ctx.capability.id} needs the secret ${names}: ${detail}`, { hint: `set it with \`ccos secrets set ${spec.auth[0][0].secret}\`` });
}

function redact(s: string, secrets: string[]): string {
  let out = s;
  for (const v of secrets) out = out.split(v).join('[secret]');
  return out;
}
