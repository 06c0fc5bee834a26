/**
 * MCP servers as capability providers: a client over stdio or Streamable HTTP (the official SDK),
 * onboarding (introspect → stage → approve → activate, each tool pinned by the hash of its
 * definition), drift detection, and a pool of connections that recovers from crashed servers.
 *
 * Owns: the `mcp_servers` table, the pool of connected clients, the `mcp` provider kind (so a
 * persisted MCP capability works in any process: it connects lazily on its first call), turning
 * MCP tool results into RTFS values and MCP failures into errors with stable codes.
 * Must never: call a tool whose definition differs from the one approved (drift blocks it until a
 * new approval); register tools before their approval; let a dead connection be reused.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { CallToolResultSchema, ErrorCode, McpError, ResultSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Ajv } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { canonicalJson, type Json } from '../../common/canonical.js';
import { EMPTY_MAP, RtfsError, kw, type Value } from '../../rtfs/index.js';
import type { CapabilityManifest, CallContext, Effect, Provider, RiskTier } from '../capabilities/types.js';
import { CcosError } from '../errors.js';
import type { Ccos } from '../index.js';
import { plainJsonToValue, valueToPlainJson } from '../values-json.js';

// ---------------------------------------------------------------------------------------------
// Types

/** How to reach an MCP server. */
export type McpTransportSpec =
  | { type: 'stdio'; command: string; args: string[]; cwd?: string; env?: Record<string, string> }
  | { type: 'http'; url: string };

/** A tool definition as the server describes it (the parts that are pinned). */
export interface McpToolDefinition {
  name: string;
  title?: string;
  description?: string;
  inputSchema: Record<string, Json>;
  outputSchema?: Record<string, Json>;
  annotations?: Record<string, Json>;
}

/** A tool ready for approval. */
export interface StagedTool {
  name: string;
  /** The capability id it gets (`mcp.<server>.<tool>`). */
  capability: string;
  /** `sha256:` of the canonical JSON of its definition. */
  hash: string;
  definition: McpToolDefinition;
}

/** A tool the server offers that was not staged, and why. */
export interface SkippedTool {
  name: string;
  problem: string;
}

/** What `stage` produced. */
export interface StageResult {
  server: string;
  approvalId: string;
  approvalStatus: string;
  /** Hash over the transport and every staged tool's hash (the approval's subject). */
  hash: string;
  tools: StagedTool[];
  skipped: SkippedTool[];
}

interface StagedRecord {
  transport: McpTransportSpec;
  tools: StagedTool[];
  skipped: SkippedTool[];
  approval: string;
  hash: string;
  time: string;
}

interface ActiveRecord {
  approval: string;
  hash: string;
  /** Tool name → pinned definition hash. */
  tools: Record<string, string>;
  capabilities: Record<string, string>;
  time: string;
}

/** A row of `mcp_servers`, decoded. */
export interface McpServerInfo {
  name: string;
  /** The approved transport (null until the first activation). */
  transport: McpTransportSpec | null;
  staged: StagedRecord | null;
  active: ActiveRecord | null;
  /** Tools blocked by drift, until re-staged and approved. */
  blocked: { tool: string; expected: string; found: string | null; time: string }[];
  created: string;
  updated: string;
  /** Whether this process holds an open connection to it. */
  connected: boolean;
}

/** The provider spec of an MCP capability. */
interface McpProviderSpec {
  kind: 'mcp';
  server: string;
  tool: string;
  definitionHash: string;
}

export interface McpHubOptions {
  /** Time limit of connecting and listing tools (ms; default 20 s). */
  connectTimeoutMs?: number;
  /** Results larger than this (JSON bytes) are refused (default 16 MB). */
  maxResultBytes?: number;
}

interface Conn {
  server: string;
  spec: McpTransportSpec;
  client: Client;
  transport: Transport;
  /** Live tool hashes, listed once per connection (again after `tools/list_changed`). */
  tools: Map<string, string> | null;
  closed: boolean;
  stderr: string;
  lastError?: string;
  /** How the server process ended (stdio). */
  exit?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS mcp_servers (
  name TEXT PRIMARY KEY, transport TEXT, staged TEXT, active TEXT, blocked TEXT NOT NULL DEFAULT '[]',
  created TEXT NOT NULL, updated TEXT NOT NULL);
`;

const SERVER_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const STDERR_TAIL = 2000;
/** Upper bound the SDK applies to one request; the gate's own time limit is normally shorter. */
const SDK_REQUEST_TIMEOUT = 2_147_483_647;
const APPROVAL_EXPIRES_MS = 7 * 24 * 3600e3;

// ---------------------------------------------------------------------------------------------
// Tool definitions: validation and hashing

type AjvLike = { compile(s: object): unknown; removeSchema(): unknown };
const validators: Partial<Record<'07' | '2019' | '2020', AjvLike>> = {};

function ajvFor(dialect: '07' | '2019' | '2020'): AjvLike {
  const opts = { strict: false, validateSchema: true, logger: false as const, validateFormats: false };
  return (validators[dialect] ??= dialect === '07' ? new Ajv(opts) : dialect === '2019' ? new Ajv2019(opts) : new Ajv2020(opts));
}

/**
 * Whether `schema` is a valid JSON Schema (by its `$schema` dialect: draft-04 to draft-07,
 * 2019-09, else 2020-12, the MCP default). Returns the problem, or null.
 */
export function jsonSchemaProblem(schema: unknown): string | null {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return 'is not a JSON object';
  const { $schema, ...rest } = schema as Record<string, unknown>;
  const d = typeof $schema === 'string' ? $schema : '';
  const dialect = /draft-0[4-7]/.test(d) ? '07' : /2019-09/.test(d) ? '2019' : '2020';
  const ajv = ajvFor(dialect);
  try {
    ajv.compile(rest);
    return null;
  } catch (e) {
    return (e as Error).message.replace(/^schema is invalid: /, '');
  } finally {
    ajv.removeSchema(); // schemas with an $id must not collide with the next tool's
  }
}

const isObject = (x: unknown): x is Record<string, Json> => typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * Checks one entry of a `tools/list` answer. A tool needs a name, an object `inputSchema` of
 * type `object` that is a valid JSON Schema, and (if present) a valid object `outputSchema`.
 */
export function validateToolDefinition(raw: unknown): { ok: true; tool: McpToolDefinition } | { ok: false; name: string; problem: string } {
  if (!isObject(raw)) return { ok: false, name: '(not an object)', problem: 'the tool entry is not a JSON object' };
  const name = raw.name;
  if (typeof name !== 'string' || name.length === 0 || name.length > 128) return { ok: false, name: typeof name === 'string' ? name || '(empty)' : '(no name)', problem: 'a tool needs a name of 1 to 128 characters' };
  const bad = (problem: string) => ({ ok: false as const, name, problem });
  if (raw.description !== undefined && typeof raw.description !== 'string') return bad('description must be a string');
  if (raw.title !== undefined && typeof raw.title !== 'string') return bad('title must be a string');
  if (!isObject(raw.inputSchema)) return bad('inputSchema is missing or not an object');
  if (raw.inputSchema.type !== 'object') return bad(`inputSchema must have type "object" (it has ${JSON.stringify(raw.inputSchema.type ?? null)})`);
  const inProblem = jsonSchemaProblem(raw.inputSchema);
  if (inProblem) return bad(`inputSchema is not a valid JSON Schema: ${inProblem}`);
  if (raw.outputSchema !== undefined) {
    if (!isObject(raw.outputSchema)) return bad('outputSchema is not an object');
    const outProblem = jsonSchemaProblem(raw.outputSchema);
    if (outProblem) return bad(`outputSchema is not a valid JSON Schema: ${outProblem}`);
  }
  if (raw.annotations !== undefined && !isObject(raw.annotations)) return bad('annotations is not an object');
  const tool: McpToolDefinition = { name, inputSchema: raw.inputSchema };
  if (raw.title !== undefined) tool.title = raw.title as string;
  if (raw.description !== undefined) tool.description = raw.description as string;
  if (raw.outputSchema !== undefined) tool.outputSchema = raw.outputSchema as Record<string, Json>;
  if (raw.annotations !== undefined) tool.annotations = raw.annotations as Record<string, Json>;
  return { ok: true, tool };
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** `sha256:` of the canonical JSON of what a tool does: name, description, schemas, annotations. */
export function toolDefinitionHash(t: McpToolDefinition): string {
  return `sha256:${sha256(canonicalJson({ name: t.name, description: t.description, inputSchema: t.inputSchema, outputSchema: t.outputSchema, annotations: t.annotations }))}`;
}

/** The capability id of a server's tool: `mcp.<server>.<tool>` (other characters become `-`). */
export function mcpCapabilityId(server: string, tool: string): string {
  return `mcp.${server}.${tool.replace(/[^A-Za-z0-9_.-]/g, '-')}`;
}

function describeTransport(t: McpTransportSpec): string {
  return t.type === 'http' ? t.url : [t.command, ...t.args].join(' ');
}

function addMcpCommand(server: string, t: McpTransportSpec | null): string {
  if (!t) return `ccos caps add-mcp ${server} ...`;
  return t.type === 'http' ? `ccos caps add-mcp ${server} --url ${t.url}` : `ccos caps add-mcp ${server} -- ${describeTransport(t)}`;
}

/** The manifest of an approved tool. MCP annotations are hints from the server; they are pinned with the definition. */
function manifestFor(server: string, transport: McpTransportSpec, t: StagedTool): CapabilityManifest {
  const a = t.definition.annotations ?? {};
  const readOnly = a.readOnlyHint === true;
  const effects: Effect[] = [{ kind: 'mcp', server, transport: transport.type }];
  if (transport.type === 'http') effects.push({ kind: 'network', domains: [new URL(transport.url).hostname] });
  else if (a.openWorldHint !== false) effects.push({ kind: 'network' });
  if (!readOnly) effects.push({ kind: 'write', destructive: a.destructiveHint !== false });
  // MCP defaults: not read-only, destructive, not idempotent, open world.
  const risk: RiskTier = readOnly ? 'low' : a.destructiveHint === false ? 'medium' : 'high';
  const m: CapabilityManifest = {
    id: t.capability,
    version: t.hash.slice('sha256:'.length, 'sha256:'.length + 12),
    description: [t.definition.title, t.definition.description].filter(Boolean).join(': ') || `MCP tool ${t.name} of ${server}`,
    input: { jsonSchema: t.definition.inputSchema },
    effects,
    risk,
    idempotent: readOnly || a.idempotentHint === true,
    deterministic: false,
    provider: { kind: 'mcp', server, tool: t.name, definitionHash: t.hash },
  };
  if (t.definition.outputSchema && typeof t.definition.outputSchema.type === 'string') m.output = { jsonSchema: t.definition.outputSchema };
  return m;
}

// ---------------------------------------------------------------------------------------------
// Results

type ContentItem = { type: string; text?: string; [k: string]: unknown };

function contentText(items: ContentItem[]): string {
  return items
    .map((i) => (i.type === 'text' ? String(i.text ?? '') : `[${i.type}${typeof i.mimeType === 'string' ? ` ${i.mimeType}` : ''}]`))
    .join('\n');
}

/** An MCP tool result as plain JSON: structured content if any, else the text (parsed if it is a JSON object or array), else the content items. */
export function mcpResultJson(r: { structuredContent?: unknown; content?: ContentItem[] }): Json {
  if (r.structuredContent !== undefined && r.structuredContent !== null) return r.structuredContent as Json;
  const items = r.content ?? [];
  if (items.length === 0) return null;
  if (items.every((i) => i.type === 'text')) {
    const text = items.map((i) => String(i.text ?? '')).join('\n');
    if (/^\s*[[{]/.test(text)) {
      try {
        return JSON.parse(text) as Json;
      } catch {
        /* plain text after all */
      }
    }
    return text;
  }
  return items.map((i) => (i.type === 'text' ? String(i.text ?? '') : (JSON.parse(JSON.stringify(i)) as Json)));
}

function isZodError(e: unknown): boolean {
  return e instanceof Error && (e.name === 'ZodError' || Array.isArray((e as { issues?: unknown }).issues));
}

function raceAbort<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}

// ---------------------------------------------------------------------------------------------
// The hub

const hubs = new WeakMap<Ccos, McpHub>();

/**
 * Adds MCP support to a node: the `mcp_servers` table and the `mcp` provider kind. Idempotent per
 * node. Call `close()` on the hub (or on exit) to stop the servers it started.
 */
export function installMcp(ccos: Ccos, opts: McpHubOptions = {}): McpHub {
  let hub = hubs.get(ccos);
  if (!hub) {
    hub = new McpHub(ccos, opts);
    hubs.set(ccos, hub);
  }
  return hub;
}

export class McpHub {
  private readonly pool = new Map<string, Promise<Conn>>();
  private readonly connectTimeoutMs: number;
  private readonly maxResultBytes: number;

  constructor(
    private readonly ccos: Ccos,
    opts: McpHubOptions = {},
  ) {
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 20_000;
    this.maxResultBytes = opts.maxResultBytes ?? 16 * 1024 * 1024;
    ccos.store.db.exec(SCHEMA);
    ccos.useProviderFactory('mcp', (m) => (m.provider.kind === 'mcp' ? this.provider() : undefined));
  }

  // -------------------------------------------------------------------------------------------
  // Onboarding

  /**
   * Connects to a server, lists its tools, validates and hashes each definition, stores them as
   * staged and opens an approval request (`mcp.onboarding`). Tools with invalid definitions are
   * reported in `skipped`; the rest are staged.
   */
  async stage(name: string, transport: McpTransportSpec): Promise<StageResult> {
    if (!SERVER_NAME.test(name)) throw new CcosError('invalid-input', `MCP server name ${JSON.stringify(name)} may use letters, digits, _ and - only (at most 64)`);
    const spec = normalizeTransport(transport);
    const conn = await this.connect(name, spec);
    let raw: unknown[];
    try {
      raw = await this.listRaw(conn, { timeout: this.connectTimeoutMs });
    } catch (e) {
      throw this.translate(e, conn, 'tools/list');
    } finally {
      await closeQuietly(conn);
    }
    const tools: StagedTool[] = [];
    const skipped: SkippedTool[] = [];
    const ids = new Set<string>();
    for (const entry of raw) {
      const r = validateToolDefinition(entry);
      if (!r.ok) {
        skipped.push({ name: r.name, problem: r.problem });
        continue;
      }
      const capability = mcpCapabilityId(name, r.tool.name);
      if (ids.has(capability)) {
        skipped.push({ name: r.tool.name, problem: `its capability id ${capability} collides with another tool's` });
        continue;
      }
      ids.add(capability);
      tools.push({ name: r.tool.name, capability, hash: toolDefinitionHash(r.tool), definition: r.tool });
    }
    if (tools.length === 0) {
      throw new CcosError('mcp-no-tools', `MCP server ${name} offers no usable tools${skipped.length ? ` (${skipped.length} skipped: ${skipped.map((s) => `${s.name}: ${s.problem}`).join('; ')})` : ''}`);
    }
    const hash = `sha256:${sha256(canonicalJson({ transport: spec as unknown as Json, tools: tools.map((t) => [t.name, t.hash]) }))}`;
    const subject = `mcp:${name}:${hash}`;
    const store = this.ccos.store;
    const approvals = this.ccos.governance.approvals;
    return store.tx(() => {
      // A pending request for exactly this staging is reused; a decided one is not (a new approval is needed).
      const existing = approvals.find(null, subject);
      const approval =
        existing && existing.status === 'pending'
          ? existing
          : approvals.open(
              null,
              subject,
              'amendment',
              {
                action: 'onboard MCP server',
                server: name,
                transport: describeTransport(spec),
                tools: tools.map((t) => t.name),
                capabilities: tools.map((t) => t.capability),
                risks: Object.fromEntries(tools.map((t) => [t.name, manifestFor(name, spec, t).risk])),
                skipped: skipped.map((s) => `${s.name}: ${s.problem}`),
                hash,
              },
              'mcp.onboarding',
              { count: 1, roles: [], quorum: [], expiresMs: APPROVAL_EXPIRES_MS },
            );
      const staged: StagedRecord = { transport: spec, tools, skipped, approval: approval.id, hash, time: new Date().toISOString() };
      const now = new Date().toISOString();
      store
        .stmt(`INSERT INTO mcp_servers (name, transport, staged, active, blocked, created, updated) VALUES (?, NULL, ?, NULL, '[]', ?, ?)
               ON CONFLICT(name) DO UPDATE SET staged = excluded.staged, updated = excluded.updated`)
        .run(name, JSON.stringify(staged), now, now);
      this.ccos.orchestrator.record({ type: 'McpServerStaged', data: { server: name, transport: describeTransport(spec), tools: tools.map((t) => ({ name: t.name, hash: t.hash })), skipped: skipped as unknown as Json, approval: approval.id, hash } });
      return { server: name, approvalId: approval.id, approvalStatus: approval.status, hash, tools, skipped };
    });
  }

  /**
   * Registers the staged tools of `name` once their approval is granted: one capability per tool,
   * pinned to its definition hash. Unblocks re-approved tools.
   */
  activate(name: string): { server: string; approval: string; capabilities: CapabilityManifest[] } {
    const info = this.server(name);
    if (!info) throw new CcosError('not-found', `no MCP server ${name}`, { hint: `stage it with \`ccos caps add-mcp ${name} -- COMMAND ARGS...\` or \`--url URL\`` });
    const staged = info.staged;
    if (!staged) {
      if (info.active) throw new CcosError('already-active', `MCP server ${name} is active and nothing new is staged`, { hint: `re-stage with \`${addMcpCommand(name, info.transport)}\`` });
      throw new CcosError('not-found', `MCP server ${name} has nothing staged`, { hint: `stage it with \`${addMcpCommand(name, info.transport)}\`` });
    }
    const req = this.ccos.governance.approvals.get(staged.approval);
    if (!req || req.status !== 'approved') {
      throw new CcosError('not-approved', `the onboarding of MCP server ${name} (approval ${staged.approval}) is ${req?.status ?? 'missing'}`, {
        hint: req?.status === 'pending' ? `approve with \`ccos approve ${staged.approval} --as NAME\`, then \`ccos caps activate-mcp ${name}\`` : `stage it again with \`${addMcpCommand(name, staged.transport)}\``,
      });
    }
    const manifests = staged.tools.map((t) => manifestFor(name, staged.transport, t));
    const active: ActiveRecord = {
      approval: staged.approval,
      hash: staged.hash,
      tools: Object.fromEntries(staged.tools.map((t) => [t.name, t.hash])),
      capabilities: Object.fromEntries(staged.tools.map((t) => [t.name, t.capability])),
      time: new Date().toISOString(),
    };
    const store = this.ccos.store;
    store.tx(() => {
      for (const m of manifests) {
        this.ccos.registry.register(m, this.provider());
        const p = m.provider as unknown as McpProviderSpec;
        this.ccos.orchestrator.record({ type: 'CapabilityRegistered', data: { capability: m.id, version: m.version, provider: 'mcp', server: name, tool: p.tool, definition_hash: p.definitionHash, approval: staged.approval } });
      }
      // Tools no longer offered stay registered but are no longer approved (their calls are refused).
      const blocked = info.blocked.filter((b) => !(b.tool in active.tools));
      store.stmt('UPDATE mcp_servers SET transport = ?, staged = NULL, active = ?, blocked = ?, updated = ? WHERE name = ?').run(JSON.stringify(staged.transport), JSON.stringify(active), JSON.stringify(blocked), active.time, name);
    });
    // The next call connects afresh and checks the new definitions.
    void this.disconnect(name);
    return { server: name, approval: staged.approval, capabilities: manifests };
  }

  /** Every known server. */
  servers(): McpServerInfo[] {
    return (this.ccos.store.stmt('SELECT * FROM mcp_servers ORDER BY name').all() as Row[]).map((r) => this.decode(r));
  }

  server(name: string): McpServerInfo | undefined {
    const r = this.ccos.store.stmt('SELECT * FROM mcp_servers WHERE name = ?').get(name) as Row | undefined;
    return r ? this.decode(r) : undefined;
  }

  private decode(r: Row): McpServerInfo {
    return {
      name: r.name,
      transport: r.transport ? JSON.parse(r.transport) : null,
      staged: r.staged ? JSON.parse(r.staged) : null,
      active: r.active ? JSON.parse(r.active) : null,
      blocked: JSON.parse(r.blocked),
      created: r.created,
      updated: r.updated,
      connected: this.pool.has(r.name),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  /** The process id of the pooled stdio server `name` (null if none is running here). */
  async pid(name: string): Promise<number | null> {
    const p = this.pool.get(name);
    if (!p) return null;
    const conn = await p.catch(() => undefined);
    return conn && conn.transport instanceof StdioClientTransport ? conn.transport.pid : null;
  }

  /** Closes the pooled connection to `name` (the next call reconnects). */
  async disconnect(name: string): Promise<void> {
    const p = this.pool.get(name);
    this.pool.delete(name);
    const conn = await p?.catch(() => undefined);
    if (conn) await closeQuietly(conn);
  }

  /** Closes every connection (stops the stdio servers this process started). */
  async close(): Promise<void> {
    await Promise.all([...this.pool.keys()].map((n) => this.disconnect(n)));
  }

  private async connect(server: string, spec: McpTransportSpec, onClose?: (c: Conn) => void): Promise<Conn> {
    const transport: Transport =
      spec.type === 'stdio'
        ? new StdioClientTransport({ command: spec.command, args: spec.args, cwd: spec.cwd, env: { ...getDefaultEnvironment(), ...(spec.env ?? {}) }, stderr: 'pipe' })
        : new StreamableHTTPClientTransport(new URL(spec.url));
    const client = new Client({ name: 'ccos', version: '0.1.0' }, { capabilities: {} });
    const conn: Conn = { server, spec, client, transport, tools: null, closed: false, stderr: '' };
    if (transport instanceof StdioClientTransport) {
      transport.stderr?.on('data', (chunk: Buffer) => {
        conn.stderr = (conn.stderr + chunk.toString('utf8')).slice(-STDERR_TAIL);
      });
    }
    client.onclose = () => {
      conn.closed = true;
      onClose?.(conn);
    };
    client.onerror = (e) => {
      conn.lastError = e.message;
    };
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      conn.tools = null; // list again before the next call
    });
    try {
      await client.connect(transport, { timeout: this.connectTimeoutMs });
    } catch (e) {
      await closeQuietly(conn);
      const what = `cannot connect to MCP server ${server} (${describeTransport(spec)})`;
      if (e instanceof McpError && e.code === ErrorCode.RequestTimeout) throw new CcosError('timeout', `${what}: it did not answer within ${this.connectTimeoutMs} ms`, { hint: 'check that the command starts an MCP server speaking stdio (or the URL its Streamable HTTP endpoint)' });
      if (isZodError(e)) throw new CcosError('mcp-malformed-response', `${what}: its initialize answer is malformed (${shortZod(e)})`);
      throw new CcosError('mcp-connect', `${what}: ${(e as Error).message}${stderrNote(conn)}`, { hint: spec.type === 'stdio' ? 'check the command and its arguments' : 'check the URL and that the server is running' });
    }
    const proc = (transport as unknown as { _process?: { once(ev: 'exit', fn: (code: number | null, signal: string | null) => void): void } })._process;
    proc?.once('exit', (code, signal) => {
      conn.exit = signal ? ` (its process was killed by ${signal})` : ` (its process exited with code ${code})`;
    });
    return conn;
  }

  /** The pooled connection to an active server (connecting if needed). */
  private connection(server: string, spec: McpTransportSpec): Promise<Conn> {
    let p = this.pool.get(server);
    if (!p) {
      p = this.connect(server, spec, () => {
        if (this.pool.get(server) === p) this.pool.delete(server);
      });
      this.pool.set(server, p);
      p.catch(() => {
        if (this.pool.get(server) === p) this.pool.delete(server);
      });
    }
    return p;
  }

  private async listRaw(conn: Conn, opts: { signal?: AbortSignal; timeout: number }): Promise<unknown[]> {
    const tools: unknown[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const r = (await conn.client.request({ method: 'tools/list', params: cursor ? { cursor } : {} }, ResultSchema, opts)) as Record<string, unknown>;
      if (!Array.isArray(r.tools)) throw new CcosError('mcp-malformed-response', `MCP server ${conn.server} answered tools/list without a tools array`);
      tools.push(...r.tools);
      cursor = typeof r.nextCursor === 'string' && r.nextCursor ? r.nextCursor : undefined;
      if (!cursor) break;
    }
    return tools;
  }

  /** Live definition hashes of a connection's tools (listed once per connection). */
  private async liveTools(conn: Conn, signal: AbortSignal): Promise<Map<string, string>> {
    if (conn.tools) return conn.tools;
    const raw = await this.listRaw(conn, { signal, timeout: this.connectTimeoutMs });
    const tools = new Map<string, string>();
    for (const entry of raw) {
      const r = validateToolDefinition(entry);
      if (r.ok) tools.set(r.tool.name, toolDefinitionHash(r.tool));
      else if (isObject(entry) && typeof entry.name === 'string') tools.set(entry.name, `invalid: ${r.problem}`);
    }
    conn.tools = tools;
    return tools;
  }

  // -------------------------------------------------------------------------------------------
  // Calls

  private provider(): Provider {
    return { invoke: (args, ctx) => this.invoke(args, ctx) };
  }

  private async invoke(args: Value[], ctx: CallContext): Promise<Value> {
    const p = ctx.capability.provider as unknown as McpProviderSpec;
    const { server, tool } = p;
    const info = this.server(server);
    if (!info || !info.transport || !info.active) throw new CcosError('mcp-unknown-server', `MCP server ${server} of ${ctx.capability.id} is not active on this node`, { hint: `stage and approve it with \`ccos caps add-mcp ${server} ...\`` });
    const blocked = info.blocked.find((b) => b.tool === tool);
    if (blocked) throw this.driftError(server, tool, info.transport, `it was blocked at ${blocked.time} because its definition changed since it was approved`);
    let conn: Conn | undefined;
    try {
      conn = await raceAbort(this.connection(server, info.transport), ctx.signal);
      // This process may hold an older manifest than the one another process re-approved since.
      const pinned = info.active.tools[tool] !== p.definitionHash && this.persistedHash(ctx.capability.id) === info.active.tools[tool] ? info.active.tools[tool] : p.definitionHash;
      const cached = conn.tools !== null;
      let found = (await this.liveTools(conn, ctx.signal)).get(tool) ?? null;
      if (found !== pinned && cached) {
        // A listing from earlier on this connection may be older than the approval: look again.
        conn.tools = null;
        found = (await this.liveTools(conn, ctx.signal)).get(tool) ?? null;
      }
      if (found !== pinned) {
        this.block(server, tool, pinned, found, ctx);
        throw this.driftError(server, tool, info.transport, found === null ? 'the server no longer offers it' : 'its definition changed since it was approved');
      }
      if (info.active.tools[tool] !== pinned) {
        throw new CcosError('mcp-not-approved', `${ctx.capability.id}: this definition of ${tool} is not the approved one of MCP server ${server}`, { hint: `re-approve with \`${addMcpCommand(server, info.transport)}\`` });
      }
      const input = args.length === 0 ? {} : valueToPlainJson(args[0]);
      if (!isObject(input)) throw new CcosError('invalid-input', `${ctx.capability.id} takes one map of arguments`);
      const result = await conn.client.request({ method: 'tools/call', params: { name: tool, arguments: input } }, CallToolResultSchema, { signal: ctx.signal, timeout: SDK_REQUEST_TIMEOUT });
      const items = (result.content ?? []) as ContentItem[];
      if (result.isError) throw new RtfsError('mcp-tool-error', `MCP tool ${tool} of ${server} failed: ${contentText(items).slice(0, 2000) || '(no message)'}`);
      const json = mcpResultJson({ structuredContent: result.structuredContent, content: items });
      const size = JSON.stringify(json)?.length ?? 0;
      if (size > this.maxResultBytes) throw new RtfsError('mcp-result-too-large', `MCP tool ${tool} of ${server} returned ${size} bytes (the limit is ${this.maxResultBytes})`);
      return plainJsonToValue(json);
    } catch (e) {
      throw conn ? this.translate(e, conn, `a call to ${tool}`, ctx) : e;
    }
  }

  private persistedHash(capability: string): string | undefined {
    const row = this.ccos.store.stmt('SELECT manifest FROM capabilities WHERE id = ?').get(capability) as { manifest: string } | undefined;
    return row ? (JSON.parse(row.manifest) as { provider?: { definitionHash?: string } }).provider?.definitionHash : undefined;
  }

  private driftError(server: string, tool: string, t: McpTransportSpec, why: string): CcosError {
    return new CcosError('mcp-drift', `MCP tool ${tool} of ${server} is blocked: ${why}`, { hint: `re-approve with \`${addMcpCommand(server, t)}\`, then \`ccos approve ID --as NAME\` and \`ccos caps activate-mcp ${server}\`` });
  }

  private block(server: string, tool: string, expected: string, found: string | null, ctx: CallContext): void {
    const store = this.ccos.store;
    store.tx(() => {
      const row = store.stmt('SELECT blocked FROM mcp_servers WHERE name = ?').get(server) as { blocked: string } | undefined;
      if (!row) return;
      const blocked = (JSON.parse(row.blocked) as McpServerInfo['blocked']).filter((b) => b.tool !== tool);
      blocked.push({ tool, expected, found, time: new Date().toISOString() });
      store.stmt('UPDATE mcp_servers SET blocked = ?, updated = ? WHERE name = ?').run(JSON.stringify(blocked), new Date().toISOString(), server);
      this.ccos.orchestrator.record({ type: 'McpToolBlocked', runId: ctx.runId, planId: ctx.planId, intentId: ctx.intentId, data: { server, tool, capability: ctx.capability.id, expected, found } });
    });
  }

  /** Any failure during a request → an error with a stable code; a dead connection leaves the pool. */
  private translate(e: unknown, conn: Conn, what: string, ctx?: CallContext): Error {
    if (e instanceof CcosError || e instanceof RtfsError) return e;
    if (ctx?.signal.aborted) return e instanceof Error ? e : new Error(String(e)); // the gate reports its own timeout
    const server = conn.server;
    const closed = conn.closed || (e instanceof McpError && e.code === ErrorCode.ConnectionClosed);
    const unreachable = conn.spec.type === 'http' && !(e instanceof McpError) && !isZodError(e);
    if (closed || unreachable) {
      void this.dropIfCurrent(conn);
      const exit = processExit(conn);
      const message = `MCP server ${server} ${closed ? `stopped during ${what}` : `could not be reached during ${what}`}${exit}: ${(e as Error).message}${stderrNote(conn)}`;
      const idempotent = ctx?.capability.idempotent ?? true;
      // A non-idempotent tool may or may not have acted before the server died.
      return new RtfsError('mcp-server-crashed', message, undefined, idempotent ? undefined : EMPTY_MAP.set(kw('outcome-unknown'), true), 'the next call starts (or reconnects to) the server again; a step with {:retries {:max N}} retries by itself');
    }
    if (e instanceof McpError && e.code === ErrorCode.RequestTimeout) return new CcosError('timeout', `MCP server ${server} did not answer ${what} in time`);
    if (isZodError(e)) return new CcosError('mcp-malformed-response', `MCP server ${server} sent a malformed answer to ${what}: ${shortZod(e)}`);
    if (e instanceof McpError) return new CcosError('mcp-error', `MCP server ${server} refused ${what}: ${e.message}`);
    return new CcosError('mcp-error', `MCP server ${server} failed during ${what}: ${e instanceof Error ? e.message : String(e)}`);
  }

  private async dropIfCurrent(conn: Conn): Promise<void> {
    const p = this.pool.get(conn.server);
    if (p && (await p.catch(() => undefined)) === conn) this.pool.delete(conn.server);
    await closeQuietly(conn);
  }
}

interface Row {
  name: string;
  transport: string | null;
  staged: string | null;
  active: string | null;
  blocked: string;
  created: string;
  updated: string;
}

function normalizeTransport(t: McpTransportSpec): McpTransportSpec {
  if (t.type === 'http') {
    let url: URL;
    try {
      url = new URL(t.url);
    } catch {
      throw new CcosError('invalid-input', `invalid MCP server URL ${JSON.stringify(t.url)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CcosError('invalid-input', `an MCP server URL must be http(s): ${t.url}`);
    return { type: 'http', url: url.toString() };
  }
  if (t.type !== 'stdio' || !t.command) throw new CcosError('invalid-input', 'an MCP stdio server needs a command');
  // The working directory is pinned so that relative paths mean the same in every process.
  const out: McpTransportSpec = { type: 'stdio', command: t.command, args: [...(t.args ?? [])], cwd: path.resolve(t.cwd ?? process.cwd()) };
  if (t.env) out.env = t.env;
  return out;
}

async function closeQuietly(conn: Conn): Promise<void> {
  try {
    await conn.client.close();
  } catch {
    /* already closed */
  }
}

function stderrNote(conn: Conn): string {
  const tail = conn.stderr.trim().split('\n').slice(-3).join(' | ');
  return tail ? ` (server stderr: ${tail.slice(-400)})` : '';
}

function processExit(conn: Conn): string {
  return conn.exit ?? '';
}

function shortZod(e: unknown): string {
  const issues = (e as { issues?: { path?: unknown[]; message?: string }[] }).issues;
  if (!Array.isArray(issues) || issues.length === 0) return (e as Error).message.slice(0, 300);
  return issues
    .slice(0, 3)
    .map((i) => `${(i.path ?? []).join('.') || '(root)'}: ${i.message ?? 'invalid'}`)
    .join('; ');
}
