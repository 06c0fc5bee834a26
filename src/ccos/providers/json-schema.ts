/**
 * JSON Schema validation for capability manifests (input and output schemas), backed by ajv
 * (draft-07 keywords) with the standard formats (ajv-formats) and the OpenAPI numeric and
 * string formats (`int32`, `int64`, `float`, `double`, `byte`, `binary`, `password`).
 *
 * Owns: compiling schemas (cached by their canonical JSON) and turning validation errors into
 * short messages that name the path of each problem (`.body.tags[1]: must be string`).
 * Must never: throw on a value or a schema: problems come back as messages.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { canonicalJson } from '../../common/canonical.js';

// ajv-formats is CommonJS: under NodeNext its default import is the module object.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as typeof addFormatsModule.default;

const MAX_PROBLEMS = 5;
const CACHE_LIMIT = 1000;

let ajvInstance: Ajv | undefined;
const cache = new Map<string, ValidateFunction | { invalid: string }>();

function ajv(): Ajv {
  if (ajvInstance) return ajvInstance;
  // strict: false — manifests may carry annotations ajv does not know (e.g. OpenAPI's `example`);
  // the schema itself is still checked against the draft-07 meta-schema.
  const a = new Ajv({ strict: false, allErrors: true, allowUnionTypes: true, logger: false, validateFormats: true });
  addFormats(a);
  const int = (bits: number) => (x: number): boolean => Number.isInteger(x) && Math.abs(x) <= 2 ** (bits - 1);
  a.addFormat('int32', { type: 'number', validate: int(32) });
  a.addFormat('int64', { type: 'number', validate: (x: number) => Number.isInteger(x) });
  a.addFormat('float', { type: 'number', validate: (x: number) => Number.isFinite(x) });
  a.addFormat('double', { type: 'number', validate: (x: number) => Number.isFinite(x) });
  a.addFormat('byte', { type: 'string', validate: (s: string) => /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s) });
  a.addFormat('binary', true);
  a.addFormat('password', true);
  ajvInstance = a;
  return a;
}

/** JSON-pointer instance path → `.a.b[2]` (empty for the root). */
function displayPath(pointer: string): string {
  if (!pointer) return '';
  return pointer
    .split('/')
    .slice(1)
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((seg) => (/^\d+$/.test(seg) ? `[${seg}]` : /^[A-Za-z_$][\w$-]*$/.test(seg) ? `.${seg}` : `[${JSON.stringify(seg)}]`))
    .join('');
}

function describe(e: ErrorObject): string {
  const where = displayPath(e.instancePath);
  const p = e.params as Record<string, unknown>;
  let msg = e.message ?? `fails ${e.keyword}`;
  if (e.keyword === 'additionalProperties') msg = `unexpected property ${String(p.additionalProperty)}`;
  else if (e.keyword === 'required') msg = `missing required property ${String(p.missingProperty)}`;
  else if (e.keyword === 'enum') msg = `must be one of ${JSON.stringify(p.allowedValues)}`;
  else if (e.keyword === 'const') msg = `must be ${JSON.stringify(p.allowedValue)}`;
  else if (e.keyword === 'format') msg = `must be a valid ${String(p.format)}`;
  return where ? `${where}: ${msg}` : msg;
}

function summarize(errors: readonly ErrorObject[] | null | undefined): string {
  const list = errors ?? [];
  // `anyOf`/`oneOf` report each branch's failure and then their own; keep them, but drop duplicates.
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const e of list) {
    const line = describe(e);
    if (seen.has(line)) continue;
    seen.add(line);
    lines.push(line);
  }
  if (lines.length === 0) return 'does not match its schema';
  const shown = lines.slice(0, MAX_PROBLEMS).join('; ');
  return lines.length > MAX_PROBLEMS ? `${shown}; and ${lines.length - MAX_PROBLEMS} more` : shown;
}

function metaError(errors: readonly ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return '';
  const where = displayPath(e.instancePath);
  const line = describe({ ...e, instancePath: '' });
  return where ? ` at ${where}: ${line}` : `: ${line}`;
}

function compile(schema: unknown): ValidateFunction | { invalid: string } {
  let key: string;
  try {
    key = canonicalJson(schema);
  } catch (e) {
    return { invalid: `the schema is not JSON: ${(e as Error).message}` };
  }
  const hit = cache.get(key);
  if (hit) return hit;
  let entry: ValidateFunction | { invalid: string };
  if (typeof schema !== 'boolean' && (typeof schema !== 'object' || schema === null || Array.isArray(schema))) {
    entry = { invalid: 'a JSON Schema must be an object or a boolean' };
  } else {
    const a = ajv();
    try {
      // Compile a copy: ajv keeps a reference to the schema it compiles.
      const copy = JSON.parse(key) as object | boolean;
      // The first meta-schema error is the useful one (the rest explain alternatives of it).
      if (!a.validateSchema(copy)) entry = { invalid: `invalid JSON Schema${metaError(a.errors)}` };
      else entry = a.compile(copy);
    } catch (e) {
      entry = { invalid: `invalid JSON Schema: ${(e as Error).message}` };
    }
  }
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(key, entry);
  return entry;
}

/**
 * Why `schema` is not a usable JSON Schema (it fails the meta-schema, has an unresolvable
 * `$ref`, ...), or null when it is.
 */
export function checkSchemaIsValid(schema: unknown): string | null {
  const c = compile(schema);
  return 'invalid' in c ? c.invalid : null;
}

/**
 * Validates a plain JSON value. Returns null when it matches, else a message naming the path of
 * each problem (`.id: must be integer; missing required property name`). An invalid schema is
 * reported as such (never as a pass).
 */
export function validateJsonSchema(schema: unknown, value: unknown): string | null {
  const c = compile(schema);
  if ('invalid' in c) return c.invalid;
  return c(value) ? null : summarize(c.errors);
}
