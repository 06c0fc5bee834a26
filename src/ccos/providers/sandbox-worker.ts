/**
 * The entry point of a sandboxed capability's child process (see `sandbox.ts`).
 *
 * Runs under Node's permission model with the allow-lists its parent chose. Receives one request
 * over IPC — `{module, input, args, tmpDir, secrets, network}` — imports the module, calls its
 * default export `(input, context)`, and answers `{ok: true, value, denied}` or
 * `{ok: false, error, denied}`; then exits.
 *
 * Owns: noticing access the permission model denied (even when the module catches the error), and
 * a best-effort network block (Node 20's permission model does not cover the network).
 * Must never: import anything but Node built-ins (it may read only its own file and the module).
 */
import childProcess from 'node:child_process';
import dgram from 'node:dgram';
import dns from 'node:dns';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';

interface SandboxRequest {
  module: string;
  input: unknown;
  args: unknown[];
  tmpDir: string;
  secrets: Record<string, string>;
  network: boolean;
}

interface Denial {
  permission: string;
  resource: string;
}

const denied: Denial[] = [];

function isDenied(e: unknown): e is { code: string; permission?: string; resource?: string; message?: string } {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'ERR_ACCESS_DENIED';
}

function note(e: unknown): void {
  if (!isDenied(e)) return;
  // Some denials (fs.symlink, process.binding) carry no permission, only a message.
  const d = { permission: String(e.permission || e.message || 'unknown'), resource: String(e.resource ?? '') };
  if (!denied.some((x) => x.permission === d.permission && x.resource === d.resource)) denied.push(d);
}

/** Wraps the functions of a built-in module so that denied access is noted even if caught. */
function watch(target: Record<string, unknown>): void {
  for (const name of Object.keys(target)) {
    const f = target[name];
    if (typeof f !== 'function' || /^[A-Z]/.test(name)) continue; // skip classes
    const wrapped = function (this: unknown, ...args: unknown[]): unknown {
      const last = args.length - 1;
      if (last >= 0 && typeof args[last] === 'function') {
        const cb = args[last] as (...a: unknown[]) => unknown;
        args[last] = (err: unknown, ...rest: unknown[]) => {
          note(err);
          return cb(err, ...rest);
        };
      }
      try {
        const r = (f as (...a: unknown[]) => unknown).apply(this, args);
        if (r instanceof Promise) r.catch(note);
        return r;
      } catch (e) {
        note(e);
        throw e;
      }
    };
    Object.defineProperties(wrapped, Object.getOwnPropertyDescriptors(f));
    try {
      target[name] = wrapped;
    } catch {
      // read-only property: left as is
    }
  }
}

function networkDenied(what: string): never {
  const e = Object.assign(new Error(`Access to this API has been restricted: ${what}`), { code: 'ERR_ACCESS_DENIED', permission: 'Network', resource: what });
  note(e);
  throw e;
}

/** Node 20's permission model does not cover sockets: block the public entry points. */
function blockNetwork(): void {
  const target = (args: unknown[]): string => {
    const [a, b] = args;
    if (typeof a === 'object' && a !== null) {
      const o = a as { host?: string; port?: number; path?: string };
      return o.path ?? `${o.host ?? 'localhost'}:${o.port ?? ''}`;
    }
    return typeof b === 'string' ? `${b}:${String(a)}` : String(a);
  };
  const n = net as unknown as Record<string, unknown>;
  n.connect = (...args: unknown[]) => networkDenied(target(args));
  n.createConnection = n.connect;
  n.createServer = () => networkDenied('listen');
  net.Socket.prototype.connect = function (...args: unknown[]): never {
    return networkDenied(target(args));
  } as never;
  net.Server.prototype.listen = function (): never {
    return networkDenied('listen');
  } as never;
  (tls as unknown as Record<string, unknown>).connect = (...args: unknown[]) => networkDenied(target(args));
  (dgram as unknown as Record<string, unknown>).createSocket = () => networkDenied('udp socket');
  (dns as unknown as Record<string, unknown>).lookup = (host: unknown) => networkDenied(`dns ${String(host)}`);
  (dns.promises as unknown as Record<string, unknown>).lookup = async (host: unknown) => networkDenied(`dns ${String(host)}`);
  globalThis.fetch = (async (url: unknown) => networkDenied(String(url instanceof Request ? url.url : url))) as typeof fetch;
}

function errorJson(e: unknown): { name: string; message: string; code?: string; permission?: string; resource?: string } {
  if (e instanceof Error || (typeof e === 'object' && e !== null && 'message' in e)) {
    const x = e as { name?: string; message: string; code?: unknown; permission?: unknown; resource?: unknown };
    return {
      name: String(x.name ?? 'Error'),
      message: String(x.message),
      ...(typeof x.code === 'string' ? { code: x.code } : {}),
      ...(x.permission !== undefined ? { permission: String(x.permission) } : {}),
      ...(x.resource !== undefined ? { resource: String(x.resource) } : {}),
    };
  }
  return { name: 'Error', message: String(e) };
}

let answered = false;
function answer(msg: Record<string, unknown>): void {
  if (answered) return;
  answered = true;
  const send = process.send?.bind(process);
  if (!send) process.exit(2);
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(JSON.stringify({ ...msg, denied })) as Record<string, unknown>;
  } catch (e) {
    payload = { ok: false, error: { name: 'TypeError', message: `the result is not JSON: ${(e as Error).message}` }, denied };
  }
  send(payload, () => process.exit(0));
}

process.on('uncaughtException', (e) => {
  note(e);
  answer({ ok: false, error: errorJson(e) });
});
process.on('unhandledRejection', (e) => {
  note(e);
  answer({ ok: false, error: errorJson(e) });
});

// The parent went away (crashed or exited): nobody will read the answer.
process.on('disconnect', () => process.exit(3));

process.once('message', (raw) => {
  const req = raw as SandboxRequest;
  watch(fs as unknown as Record<string, unknown>);
  watch(fs.promises as unknown as Record<string, unknown>);
  watch(childProcess as unknown as Record<string, unknown>);
  if (!req.network) blockNetwork();
  syncBuiltinESMExports();
  const context = Object.freeze({ tmpDir: req.tmpDir, args: req.args, secrets: Object.freeze({ ...req.secrets }) });
  void (async () => {
    try {
      const mod = (await import(req.module)) as { default?: unknown };
      if (typeof mod.default !== 'function') throw new TypeError('the module has no default export function (export default async function (input, context) { ... })');
      const value = await (mod.default as (input: unknown, ctx: unknown) => unknown)(req.input, context);
      answer({ ok: true, value: value === undefined ? null : value });
    } catch (e) {
      note(e);
      answer({ ok: false, error: errorJson(e) });
    }
  })();
});
