/**
 * CCOS as an MCP server: the tools of `mcp-tools.ts` over stdio (`ccos mcp`) or over Streamable
 * HTTP on 127.0.0.1 behind a bearer token (`ccos serve --mcp`).
 *
 * Owns: the transports, bearer-token authentication (a token may map to an approver identity),
 * and recording rejected requests (a JSON Lines line in `<data dir>/access.log` and an
 * `AccessDenied` action on the causal chain).
 * Must never: listen on anything but the loopback address; serve a request without a valid token;
 * log a presented token; give a client a path to a capability that skips the gate.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CcosError, type Ccos } from '../ccos/index.js';
import { registerCcosTools, type McpIdentity } from './mcp-tools.js';

export { CCOS_TOOL_NAMES, CHEATSHEET_URI, RTFS_CHEATSHEET, errorResult, runResultOut, type McpIdentity } from './mcp-tools.js';

export interface CcosMcpServerOptions {
  /**
   * The identity of the connection. Absent: taken from the transport's auth info when there is
   * one (HTTP), else the local user (stdio), who decides approvals as the `approver` they name.
   */
  identity?: McpIdentity;
  /** Directory of the sample plans (default: this package's `examples/`). */
  examplesDir?: string;
  /** Server name announced to clients (default `ccos`). */
  name?: string;
  version?: string;
}

function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** An MCP server exposing one CCOS node (connect it to a transport of your choice). */
export function createCcosMcpServer(ccos: Ccos, opts: CcosMcpServerOptions = {}): McpServer {
  const server = new McpServer(
    { name: opts.name ?? 'ccos', version: opts.version ?? packageVersion() },
    {
      capabilities: { tools: {}, resources: {} },
      instructions:
        'CCOS runs RTFS plans through one governed gate: every capability call is decided by policy, journaled and recorded on a causal chain. ' +
        'Read ccos_rtfs_cheatsheet, find capabilities with ccos_search_capabilities, check plans with ccos_check_program, run them with ccos_run_plan. ' +
        'A paused run waits for an approval (ccos_list_approvals, ccos_decide_approval) or an answer; continue it with ccos_resume_run.',
    },
  );
  registerCcosTools(server, ccos, { identity: opts.identity, examplesDir: opts.examplesDir });
  return server;
}

/** A running server. */
export interface CcosServerHandle {
  /** Resolves when the server has stopped (the client went away, or `close`). */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/**
 * Serves MCP over stdio (default: this process's stdin and stdout) until stdin ends. Nothing else
 * may write to stdout meanwhile: it carries the protocol.
 */
export async function serveStdio(ccos: Ccos, opts: CcosMcpServerOptions & { stdin?: Readable; stdout?: Writable } = {}): Promise<CcosServerHandle> {
  const stdin = opts.stdin ?? process.stdin;
  const server = createCcosMcpServer(ccos, { ...opts, identity: opts.identity ?? { kind: 'local' } });
  const transport = new StdioServerTransport(stdin, opts.stdout ?? process.stdout);
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= server.close().catch(() => undefined).then(() => resolveClosed());
    return closing;
  };
  transport.onclose = () => resolveClosed();
  stdin.once('end', () => void close());
  stdin.once('close', () => void close());
  await server.connect(transport);
  return { closed, close };
}

export interface HttpServeOptions extends Omit<CcosMcpServerOptions, 'identity'> {
  /** TCP port (0: any free port; see `port` of the handle). */
  port?: number;
  /** Only `127.0.0.1` (or `localhost`, which means it) is accepted. */
  host?: string;
  /** A bearer token with no approver identity (it may do everything except decide approvals). */
  token?: string;
  /** Bearer tokens → the approver name each one authenticates (null: no approver identity). */
  tokens?: Record<string, string | null>;
  /** URL path of the MCP endpoint (default `/mcp`). */
  path?: string;
}

export interface CcosHttpServerHandle extends CcosServerHandle {
  readonly url: string;
  readonly port: number;
  readonly host: string;
}

/** A rejected HTTP request, as written to `access.log` and recorded on the chain. */
export interface AccessDenial {
  time: string;
  reason: 'missing-token' | 'malformed-authorization' | 'wrong-token' | 'bad-host';
  method: string;
  path: string;
  remote: string | null;
  userAgent: string | null;
  status: number;
}

const MIN_TOKEN_LENGTH = 16;
const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Records a denied request: a JSON line in `<data dir>/access.log`, and `AccessDenied` on the chain. */
function recordDenial(ccos: Ccos, d: AccessDenial): void {
  try {
    fs.appendFileSync(path.join(ccos.dataDir, 'access.log'), JSON.stringify({ type: 'AccessDenied', ...d }) + '\n', { mode: 0o600 });
  } catch {
    // the chain record below still happens; a full disk must not crash the server
  }
  try {
    ccos.orchestrator.record({ type: 'AccessDenied', data: { transport: 'mcp-http', reason: d.reason, method: d.method, path: d.path, remote: d.remote, user_agent: d.userAgent, status: d.status } });
  } catch {
    // the store may be closing
  }
}

function sendJsonError(res: http.ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message }, id: null });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/**
 * Serves MCP over Streamable HTTP (stateless: each POST is handled on its own) on 127.0.0.1.
 * Every request needs `Authorization: Bearer <token>`; a missing or wrong token gets 401 and is
 * recorded. A token mapped to an approver name lets that connection decide approvals as that
 * approver, and only as that approver.
 */
export async function serveHttp(ccos: Ccos, opts: HttpServeOptions): Promise<CcosHttpServerHandle> {
  const host = opts.host === undefined || opts.host === 'localhost' ? '127.0.0.1' : opts.host;
  if (host !== '127.0.0.1') throw new CcosError('invalid-input', `the MCP server listens on 127.0.0.1 only, not ${opts.host}`, { hint: 'put a reverse proxy with TLS in front of it to reach it from elsewhere' });
  const tokens = new Map<string, string | null>();
  if (opts.token !== undefined) tokens.set(opts.token, null);
  for (const [t, who] of Object.entries(opts.tokens ?? {})) tokens.set(t, who || null);
  if (tokens.size === 0) throw new CcosError('invalid-input', 'the HTTP MCP server needs at least one bearer token', { hint: 'ccos serve --mcp --token-file FILE (or --token T, or --approver-token NAME=TOKEN)' });
  for (const t of tokens.keys()) {
    if (t.length < MIN_TOKEN_LENGTH || /\s/.test(t)) throw new CcosError('invalid-input', `a bearer token must be at least ${MIN_TOKEN_LENGTH} characters with no spaces`, { hint: 'generate one, e.g. `openssl rand -hex 32`' });
  }
  const known = [...tokens].map(([t, who]) => ({ digest: digest(t), approver: who }));
  const endpoint = opts.path ?? '/mcp';
  let port = opts.port ?? 0;

  const authenticate = (header: string | undefined): { ok: true; approver: string | null } | { ok: false; reason: AccessDenial['reason'] } => {
    if (!header) return { ok: false, reason: 'missing-token' };
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return { ok: false, reason: 'malformed-authorization' };
    const d = digest(m[1]);
    let found: { approver: string | null } | undefined;
    for (const k of known) if (timingSafeEqual(k.digest, d)) found = k; // every token compared: constant time
    return found ? { ok: true, approver: found.approver } : { ok: false, reason: 'wrong-token' };
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const deny = (reason: AccessDenial['reason'], status: number, message: string, headers?: Record<string, string>): void => {
      recordDenial(ccos, { time: new Date().toISOString(), reason, method: req.method ?? '?', path: url.pathname, remote: req.socket.remoteAddress ?? null, userAgent: req.headers['user-agent'] ?? null, status });
      sendJsonError(res, status, message, headers);
    };
    // DNS rebinding: only our own loopback names may appear in Host.
    const hostHeader = req.headers.host ?? '';
    if (![`127.0.0.1:${port}`, `localhost:${port}`].includes(hostHeader)) return deny('bad-host', 403, `invalid Host header ${JSON.stringify(hostHeader)}`);
    const auth = authenticate(req.headers.authorization);
    if (!auth.ok) return deny(auth.reason, 401, auth.reason === 'missing-token' ? 'missing bearer token' : 'invalid bearer token', { 'www-authenticate': 'Bearer realm="ccos", error="invalid_token"' });
    if (url.pathname !== endpoint) return sendJsonError(res, 404, `not found; the MCP endpoint is ${endpoint}`);
    // Stateless: no server-initiated stream (GET) and no session to end (DELETE).
    if (req.method !== 'POST') return sendJsonError(res, 405, 'method not allowed: this stateless MCP endpoint takes POST only', { allow: 'POST' });
    const identity: McpIdentity = { kind: 'token', approver: auth.approver };
    const server = createCcosMcpServer(ccos, { ...opts, identity });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close().catch(() => undefined);
      void server.close().catch(() => undefined);
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  };

  const httpServer = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) sendJsonError(res, 500, `internal error: ${e instanceof Error ? e.message : String(e)}`);
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => reject(new CcosError('listen', `cannot listen on ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.message}`, { hint: e.code === 'EADDRINUSE' ? 'choose another --port' : undefined }));
    httpServer.once('error', onError);
    httpServer.listen(port, host, () => {
      httpServer.off('error', onError);
      resolve();
    });
  });
  port = (httpServer.address() as { port: number }).port;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  httpServer.once('close', () => resolveClosed());
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      httpServer.close(() => resolve());
      httpServer.closeAllConnections();
    });
    return closing;
  };
  return { url: `http://${host}:${port}${endpoint}`, port, host, closed, close };
}
