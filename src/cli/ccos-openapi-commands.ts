/**
 * `ccos caps add-openapi`: import the operations of an OpenAPI 3 spec as capabilities.
 *
 * Owns: the arguments, text and `--json` output of the OpenAPI commands (the main CLI wires them
 * in and handles errors thrown from here: a `CcosError` is a user error).
 * Must never: print secret values (it never reads any: credentials are read at call time).
 */
import { parseArgs } from 'node:util';
import type { Ccos } from '../ccos/index.js';

export interface OpenApiCommand {
  summary: string;
  usage: string;
  run(ccos: Ccos, args: string[], json: boolean): Promise<number>;
}

const EXIT_OK = 0;
const EXIT_FAIL = 1;
const EXIT_USAGE = 2;

const ADD_OPENAPI_USAGE = `ccos caps add-openapi — import an OpenAPI 3 spec: one capability per operation

Usage:
  ccos caps add-openapi NAME SPEC [--base-url URL]

Arguments:
  NAME              prefix of the capability ids: NAME.<operationId> (or NAME.<method>_<path>)
  SPEC              the spec: a file (JSON or YAML) or an http(s) URL

Options:
  --base-url URL    where the API answers (default: the spec's first server)

Each operation becomes a capability whose input is a map of its path, query and header
parameters plus :body (the application/json request body), validated against the spec's
schemas before any request is sent; its output is the JSON response. Credentials come from
secrets named NAME.<securityScheme> (apiKey in a header or query, http bearer, http basic as
user:password), read only when a call runs. GET/HEAD are low risk; PUT/DELETE medium and
idempotent; POST/PATCH medium and not idempotent.
Operations the importer does not support (multipart or form bodies, cookie parameters,
callbacks, oauth2/openIdConnect security, responses that are not JSON, ...) are skipped with a
reason naming the operation; the rest are imported.

Output: one line per registered capability, then one per skipped operation (on stderr).
Exit codes: 0 imported (even partly), 1 nothing could be imported or the spec is invalid, 2 usage.
With --json: {"ok","registered":[ids],"skipped":[{"operation","reason"}]}.

Examples:
  ccos caps add-openapi petstore ./petstore.yaml --base-url http://127.0.0.1:8080
  ccos secrets set petstore.bearerAuth
  ccos call petstore.getPet '{:id 1}'`;

class Usage extends Error {}

async function addOpenApi(ccos: Ccos, args: string[], json: boolean): Promise<number> {
  let name: string;
  let spec: string;
  let baseUrl: string | undefined;
  try {
    const parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: { 'base-url': { type: 'string' }, json: { type: 'boolean' }, 'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
    if (parsed.values.help) {
      process.stdout.write(`${ADD_OPENAPI_USAGE}\n`);
      return EXIT_OK;
    }
    json ||= parsed.values.json === true;
    const pos = parsed.positionals;
    if (pos.length < 2) throw new Usage(`\`ccos caps add-openapi\` needs ${['NAME', 'SPEC'].slice(pos.length).join(' ')}`);
    if (pos.length > 2) throw new Usage(`unexpected argument \`${pos[2]}\` for \`ccos caps add-openapi\``);
    [name, spec] = pos;
    baseUrl = parsed.values['base-url'];
    if (baseUrl !== undefined && baseUrl.trim() === '') throw new Usage('--base-url needs a URL');
  } catch (e) {
    const message = e instanceof Usage ? e.message : (e as Error).message;
    if (json) process.stdout.write(`${JSON.stringify({ ok: false, error: { code: 'usage', message, hint: 'run `ccos caps add-openapi --help` for usage', file: null, line: null, col: null } })}\n`);
    process.stderr.write(`ccos: ${message}\nhint: run \`ccos caps add-openapi --help\` for usage\n`);
    return EXIT_USAGE;
  }
  const { installOpenApi } = await import('../ccos/providers/openapi.js');
  const result = await installOpenApi(ccos).importSpec(name, spec, { baseUrl });
  // Nothing importable is a failure (exit 1); a partial import is not.
  const ok = result.registered.length > 0;
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok, registered: result.registered, skipped: result.skipped })}\n`);
    return ok ? EXIT_OK : EXIT_FAIL;
  }
  for (const id of result.registered) process.stdout.write(`added ${id}\n`);
  for (const s of result.skipped) process.stderr.write(`skipped ${s.operation}: ${s.reason}\n`);
  process.stderr.write(ok ? `${result.registered.length} operation(s) imported, ${result.skipped.length} skipped\n` : `ccos: no operation of ${spec} could be imported\n`);
  return ok ? EXIT_OK : EXIT_FAIL;
}

/** The OpenAPI commands, by their words (`caps add-openapi`). */
export const openapiCommands: Record<string, OpenApiCommand> = {
  'caps add-openapi': {
    summary: 'import an OpenAPI 3 spec: one capability per operation',
    usage: ADD_OPENAPI_USAGE,
    run: addOpenApi,
  },
};
