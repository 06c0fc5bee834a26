/**
 * `ccos caps add-mcp`, `ccos caps activate-mcp` and `ccos caps mcp-servers`: onboarding MCP
 * servers from the command line. Independent of the dispatcher in `ccos.ts`, which wires them in.
 *
 * Owns: parsing these commands' arguments and printing their results (text or `--json`).
 * Must never: register a tool without its approval (the hub enforces it).
 */
import type { Ccos } from '../ccos/index.js';
import { CcosError } from '../ccos/errors.js';
import { installMcp, type McpServerInfo, type McpTransportSpec } from '../ccos/providers/mcp.js';

export interface McpCommand {
  summary: string;
  usage: string;
  /**
   * Runs the command; `args` are the words after the command name. Returns the exit code.
   * Output goes to standard output unless `out` is given.
   */
  run(ccos: Ccos, args: string[], json: boolean, out?: (line: string) => void): Promise<number>;
}

const stdout = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);

function usage(message: string, command: string): CcosError {
  return new CcosError('usage', message, { hint: `run \`ccos ${command} --help\` for usage` });
}

/** Parses `NAME --url URL` or `NAME -- COMMAND ARGS...` (with optional `--cwd DIR` and `--env K=V` before `--`). */
export function parseAddMcpArgs(args: string[]): { name: string; transport: McpTransportSpec } {
  const dash = args.indexOf('--');
  const head = (dash >= 0 ? args.slice(0, dash) : args).filter((a) => a !== '--json');
  const tail = dash >= 0 ? args.slice(dash + 1) : [];
  let name: string | undefined;
  let url: string | undefined;
  let cwd: string | undefined;
  const env: Record<string, string> = {};
  for (let i = 0; i < head.length; i++) {
    const a = head[i];
    const value = (opt: string): string => {
      const eq = a.indexOf('=');
      if (eq > 0) return a.slice(eq + 1);
      const v = head[++i];
      if (v === undefined) throw usage(`${opt} needs a value`, 'caps add-mcp');
      return v;
    };
    if (a === '--url' || a.startsWith('--url=')) url = value('--url');
    else if (a === '--cwd' || a.startsWith('--cwd=')) cwd = value('--cwd');
    else if (a === '--env' || a.startsWith('--env=')) {
      const kv = value('--env');
      const eq = kv.indexOf('=');
      if (eq <= 0) throw usage(`--env takes NAME=VALUE, got ${JSON.stringify(kv)}`, 'caps add-mcp');
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a.startsWith('-')) throw usage(`unknown option \`${a}\``, 'caps add-mcp');
    else if (name === undefined) name = a;
    else throw usage(`unexpected argument \`${a}\` (the server command goes after \`--\`)`, 'caps add-mcp');
  }
  if (!name) throw usage('missing the server NAME', 'caps add-mcp');
  if (url !== undefined && tail.length > 0) throw usage('give either --url URL or -- COMMAND ARGS..., not both', 'caps add-mcp');
  if (url !== undefined) return { name, transport: { type: 'http', url } };
  if (tail.length === 0) throw usage('missing the server: --url URL or -- COMMAND ARGS...', 'caps add-mcp');
  const transport: McpTransportSpec = { type: 'stdio', command: tail[0], args: tail.slice(1) };
  if (cwd) transport.cwd = cwd;
  if (Object.keys(env).length) transport.env = env;
  return { name, transport };
}

function transportText(t: McpTransportSpec | null): string {
  if (!t) return '-';
  return t.type === 'http' ? t.url : [t.command, ...t.args].join(' ');
}

function serverJson(s: McpServerInfo): Record<string, unknown> {
  return {
    name: s.name,
    transport: s.transport,
    status: s.active ? (s.blocked.length ? 'active (some tools blocked)' : 'active') : 'staged',
    tools: s.active ? Object.keys(s.active.tools) : [],
    capabilities: s.active ? Object.values(s.active.capabilities) : [],
    approval: s.active?.approval ?? null,
    staged: s.staged ? { approval: s.staged.approval, tools: s.staged.tools.map((t) => t.name), skipped: s.staged.skipped, transport: s.staged.transport } : null,
    blocked: s.blocked,
    created: s.created,
    updated: s.updated,
  };
}

export const mcpCommands: Record<string, McpCommand> = {
  'caps add-mcp': {
    summary: 'stage the tools of an MCP server for approval',
    usage: `ccos caps add-mcp — stage the tools of an MCP server for approval

Usage:
  ccos caps add-mcp NAME [--cwd DIR] [--env K=V]... -- COMMAND ARGS...   a server over stdio
  ccos caps add-mcp NAME --url URL                                       a Streamable HTTP server

Connects, lists the server's tools (input and output schemas, annotations), pins each tool's
definition by hash and opens an approval request. Tools with invalid definitions are reported and
skipped. After approval, \`ccos caps activate-mcp NAME\` registers them as mcp.NAME.TOOL.
A tool whose definition later changes (drift) is blocked until staged and approved again.`,
    async run(ccos, args, json, out = stdout) {
      const write = out;
      const emit = (o: unknown): void => out(JSON.stringify(o));
      const { name, transport } = parseAddMcpArgs(args);
      const hub = installMcp(ccos);
      try {
        const r = await hub.stage(name, transport);
        if (json) {
          emit({ ok: true, server: r.server, approval: r.approvalId, approvalStatus: r.approvalStatus, hash: r.hash, tools: r.tools.map((t) => ({ name: t.name, capability: t.capability, hash: t.hash, description: t.definition.description ?? null })), skipped: r.skipped });
          return 0;
        }
        write(`staged ${r.tools.length} tool(s) of MCP server ${name} (${transportText(transport)}):`);
        for (const t of r.tools) write(`  ${t.capability}  ${t.hash.slice(0, 19)}  ${(t.definition.description ?? '').split('\n')[0].slice(0, 70)}`);
        if (r.skipped.length) {
          write(`skipped ${r.skipped.length} tool(s) with invalid definitions:`);
          for (const s of r.skipped) write(`  ${s.name}: ${s.problem}`);
        }
        write(`approval ${r.approvalId} is ${r.approvalStatus}`);
        write(`approve with: ccos approve ${r.approvalId} --as NAME, then ccos caps activate-mcp ${name}`);
        return 0;
      } finally {
        await hub.close();
      }
    },
  },
  'caps activate-mcp': {
    summary: 'register the approved tools of a staged MCP server',
    usage: `ccos caps activate-mcp — register the approved tools of a staged MCP server

Usage:
  ccos caps activate-mcp NAME

Needs the approval that \`ccos caps add-mcp NAME ...\` opened to be approved.`,
    async run(ccos, args, json, out = stdout) {
      const write = out;
      const emit = (o: unknown): void => out(JSON.stringify(o));
      const words = args.filter((a) => a !== '--json');
      if (words.length !== 1 || words[0].startsWith('-')) throw usage(words.length === 0 ? 'missing the server NAME' : `unexpected argument \`${words[1] ?? words[0]}\``, 'caps activate-mcp');
      const hub = installMcp(ccos);
      try {
        const r = hub.activate(words[0]);
        if (json) {
          emit({ ok: true, server: r.server, approval: r.approval, capabilities: r.capabilities.map((m) => ({ id: m.id, risk: m.risk, idempotent: m.idempotent, definitionHash: (m.provider as { definitionHash?: string }).definitionHash })) });
          return 0;
        }
        write(`registered ${r.capabilities.length} capability(ies) of MCP server ${r.server} (approval ${r.approval}):`);
        for (const m of r.capabilities) write(`  ${m.id}  risk ${m.risk}${m.idempotent ? ', idempotent' : ''}`);
        return 0;
      } finally {
        await hub.close();
      }
    },
  },
  'caps mcp-servers': {
    summary: 'list MCP servers: transport, status, tools, blocked tools',
    usage: `ccos caps mcp-servers — list MCP servers

Usage:
  ccos caps mcp-servers`,
    async run(ccos, args, json, out = stdout) {
      const write = out;
      const emit = (o: unknown): void => out(JSON.stringify(o));
      const extra = args.filter((a) => a !== '--json');
      if (extra.length) throw usage(`unexpected argument \`${extra[0]}\``, 'caps mcp-servers');
      const hub = installMcp(ccos);
      const servers = hub.servers();
      if (json) {
        emit({ ok: true, servers: servers.map(serverJson) });
        return 0;
      }
      if (servers.length === 0) {
        write('no MCP servers (add one with `ccos caps add-mcp NAME -- COMMAND ARGS...` or `--url URL`)');
        return 0;
      }
      for (const s of servers) {
        const j = serverJson(s);
        write(`${s.name}  ${j.status}  ${transportText(s.transport ?? s.staged?.transport ?? null)}`);
        if (s.active) write(`  tools: ${Object.keys(s.active.tools).join(', ')}`);
        if (s.staged) write(`  staged: ${s.staged.tools.length} tool(s), approval ${s.staged.approval}`);
        for (const b of s.blocked) write(`  blocked: ${b.tool} (definition changed ${b.time})`);
      }
      return 0;
    },
  },
};
