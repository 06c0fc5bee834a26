/**
 * `ccos mcp` and `ccos serve --mcp`: CCOS as an MCP server, over stdio or over Streamable HTTP on
 * 127.0.0.1 behind bearer tokens. The main CLI wires these into its command table.
 *
 * Owns: the options of the two commands and their output (stdout stays clean for `ccos mcp`: it
 * carries the protocol).
 * Must never: print a token; listen on anything but 127.0.0.1.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CcosError, type Ccos } from '../ccos/index.js';
import { serveHttp, serveStdio } from '../server/mcp-server.js';

export interface ServeCommand {
  summary: string;
  usage: string;
  /** Runs the command on an open node; returns the exit code. Operational failures throw `CcosError`. */
  run(ccos: Ccos, args: string[], json: boolean): Promise<number>;
}

/** The node's durability, which the main CLI reads before it opens the node for these commands. */
const DURABILITY_OPTION = `  --durability LEVEL            what the plans it runs write survives: normal (default: the
                                process dying), strict (also a power loss, synced before a call's
                                result is used) or fenced (strict, and a non-idempotent call's
                                start synced before its effect); --strict = --durability strict`;

const MCP_USAGE = `usage: ccos mcp [--data-dir DIR] [--durability LEVEL]

Serves this CCOS node as an MCP server over stdio (for MCP clients that start the server as a
child process). Tools: run and resume plans, call capabilities (through the gate), search and show
capabilities, list and decide approvals, query and verify the chain, check RTFS programs, the RTFS
cheatsheet and sample plans. Stdout carries the protocol; messages go to stderr.

Approvals are decided as the approver the client names (the local user runs the server and owns the
approver keys in the data directory).

Options:
${DURABILITY_OPTION}

Example client configuration:
  {"command": "npx", "args": ["ccos", "--data-dir", "/path/to/.ccos", "mcp"]}`;

const SERVE_USAGE = `usage: ccos serve --mcp [--port N] (--token-file FILE | --token T | --approver-token NAME=TOKEN ...)

Serves this CCOS node as an MCP server over Streamable HTTP at http://127.0.0.1:PORT/mcp (loopback
only). Every request needs "Authorization: Bearer TOKEN"; a missing or wrong token is answered 401
and recorded (<data dir>/access.log and an AccessDenied action on the chain).

Options:
  --mcp                         serve MCP (required)
  --port N                      TCP port (default 8765; 0 picks a free port)
  --token-file FILE             read a bearer token from FILE (first line); it may do everything
                                except decide approvals
  --token T                     a bearer token given directly (visible in the process list:
                                prefer --token-file)
  --approver-token NAME=TOKEN   a token that authenticates approver NAME: its connections decide
                                approvals as NAME, and only as NAME (repeatable)
  --approver-token-file NAME=FILE   the same, reading the token from FILE (repeatable)
${DURABILITY_OPTION}
Tokens are at least 16 characters (e.g. \`openssl rand -hex 32\`). Stop with Ctrl-C.`;

class Usage extends Error {}

function fail(command: string, e: Usage, json: boolean): number {
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: { code: 'usage', message: e.message, hint: `run \`ccos ${command} --help\` for usage`, file: null, line: null, col: null } }) + '\n');
  process.stderr.write(`ccos: ${e.message}\nhint: run \`ccos ${command} --help\` for usage\n`);
  return 2;
}

function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CcosError('file', `cannot read the token file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  const token = text.split(/\r?\n/)[0].trim();
  if (!token) throw new CcosError('invalid-input', `the token file ${file} is empty`);
  return token;
}

function splitNamed(s: string, flag: string): [string, string] {
  const i = s.indexOf('=');
  if (i <= 0 || i === s.length - 1) throw new Usage(`${flag} needs NAME=VALUE, got \`${s.includes('=') ? s.slice(0, i + 1) + '…' : s}\``);
  return [s.slice(0, i), s.slice(i + 1)];
}

/** Waits for Ctrl-C / SIGTERM or for the server to stop by itself. */
function untilStopped(h: { closed: Promise<void>; close(): Promise<void> }): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => void h.close().then(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    void h.closed.then(() => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    });
  });
}

export const serveCommands: Record<string, ServeCommand> = {
  mcp: {
    summary: 'serve this node as an MCP server over stdio',
    usage: MCP_USAGE,
    async run(ccos, args, json) {
      const rest = args.filter((a) => a !== '--json');
      if (rest.includes('-h') || rest.includes('--help')) {
        process.stdout.write(MCP_USAGE + '\n');
        return 0;
      }
      if (rest.length) return fail('mcp', new Usage(`unexpected argument \`${rest[0]}\``), json);
      const h = await serveStdio(ccos);
      process.stderr.write(`ccos: MCP server on stdio (data dir ${ccos.dataDir}, durability ${ccos.durability})\n`);
      await untilStopped(h);
      return 0;
    },
  },
  serve: {
    summary: 'serve this node as an MCP server over HTTP on 127.0.0.1 (bearer tokens)',
    usage: SERVE_USAGE,
    async run(ccos, args, json) {
      let values: { mcp?: boolean; port?: string; token?: string; 'token-file'?: string; 'approver-token'?: string[]; 'approver-token-file'?: string[]; host?: string; help?: boolean };
      try {
        ({ values } = parseArgs({
          args: args.filter((a) => a !== '--json'),
          options: {
            mcp: { type: 'boolean' },
            port: { type: 'string' },
            host: { type: 'string' },
            token: { type: 'string' },
            'token-file': { type: 'string' },
            'approver-token': { type: 'string', multiple: true },
            'approver-token-file': { type: 'string', multiple: true },
            help: { type: 'boolean', short: 'h' },
          },
          strict: true,
          allowPositionals: false,
        }));
      } catch (e) {
        return fail('serve', new Usage((e as Error).message.replace(/\. To specify a positional.*$/s, '')), json);
      }
      if (values.help) {
        process.stdout.write(SERVE_USAGE + '\n');
        return 0;
      }
      try {
        if (!values.mcp) throw new Usage('ccos serve needs --mcp (MCP over HTTP is the only protocol served)');
        let port = 8765;
        if (values.port !== undefined) {
          if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) throw new Usage(`--port needs a port number (0-65535), got \`${values.port}\``);
          port = Number(values.port);
        }
        if (values.host !== undefined && values.host !== '127.0.0.1' && values.host !== 'localhost') throw new Usage(`--host may only be 127.0.0.1: the MCP server listens on the loopback address only`);
        if (values.token !== undefined && values['token-file'] !== undefined) throw new Usage('give either --token or --token-file, not both');
        const tokens: Record<string, string | null> = {};
        if (values['token-file'] !== undefined) tokens[readToken(values['token-file'])] = null;
        if (values.token !== undefined) tokens[values.token] = null;
        const named: [string, string][] = [
          ...(values['approver-token'] ?? []).map((s) => splitNamed(s, '--approver-token')),
          ...(values['approver-token-file'] ?? []).map((s) => splitNamed(s, '--approver-token-file')).map(([n, f]): [string, string] => [n, readToken(f)]),
        ];
        for (const [name, token] of named) {
          if (token in tokens) throw new Usage(`the token of ${name} is also used for ${tokens[token] ?? 'the plain --token'}: each identity needs its own token`);
          tokens[token] = name;
        }
        if (Object.keys(tokens).length === 0) throw new Usage('ccos serve --mcp needs a bearer token: --token-file FILE, --token T or --approver-token NAME=TOKEN');
        const known = new Set(ccos.governance.approvals.approvers().map((a) => a.name));
        const unknown = named.map(([n]) => n).filter((n) => !known.has(n));
        if (unknown.length) process.stderr.write(`ccos: warning: ${unknown.join(', ')} ${unknown.length === 1 ? 'is not a registered approver' : 'are not registered approvers'} (ccos keys create NAME); their decisions will be rejected\n`);
        const h = await serveHttp(ccos, { port, host: '127.0.0.1', tokens });
        const approvers = named.map(([n]) => n);
        if (json) process.stdout.write(JSON.stringify({ ok: true, url: h.url, port: h.port, approvers, durability: ccos.durability }) + '\n');
        else process.stdout.write(`ccos: MCP server on ${h.url} (data dir ${ccos.dataDir}, durability ${ccos.durability}${approvers.length ? `; approver tokens: ${approvers.join(', ')}` : ''}); Ctrl-C stops it\n`);
        await untilStopped(h);
        return 0;
      } catch (e) {
        if (e instanceof Usage) return fail('serve', e, json);
        throw e;
      }
    },
  },
};
