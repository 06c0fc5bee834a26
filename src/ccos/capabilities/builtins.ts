/**
 * The built-in `ccos.*` capabilities: echo, state (kv, counters, event streams), files confined
 * to the workspace root, HTTP fetch limited to allowed hosts, the current time, and asking a
 * person.
 *
 * Owns: their manifests and providers.
 * Must never: touch a file outside the workspace root, reach a host that is not allowed, or keep
 * a value outside the store (so that everything they do is in the data dir).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { IMap, Keyword, List, RtfsError, kw, strOf, valueFromJson, valueToJson, type RMap, type Value } from '../../rtfs/index.js';
import { plainJsonToValue } from '../values-json.js';
import { PauseRun, type CallContext, type CapabilityManifest, type Provider } from './types.js';

type Builtin = { manifest: CapabilityManifest; provider: Provider };

function manifest(id: string, description: string, extra: Partial<CapabilityManifest>): CapabilityManifest {
  return { id, version: '1.0.0', description, effects: [], risk: 'low', idempotent: false, deterministic: false, provider: { kind: 'builtin' }, ...extra };
}

const name = (v: Value, what: string): string => {
  if (typeof v === 'string') return v;
  if (v instanceof Keyword) return v.name;
  throw new RtfsError('invalid-input', `${what} must be a string or keyword, got ${strOf(v)}`);
};

function insideWorkspace(ctx: CallContext, p: Value): string {
  const rel = name(p, 'path');
  const root = path.resolve(ctx.workspaceRoot);
  const full = path.resolve(root, rel);
  if (full !== root && !full.startsWith(root + path.sep)) {
    throw new RtfsError('fs-denied', `path ${rel} is outside the workspace root ${root}`, undefined, undefined, 'use a path inside the workspace (set it with --workspace)');
  }
  return full;
}

function opt(m: Value, key: string): Value {
  return IMap.isMap(m) ? ((m as RMap).get(kw(key), null) as Value) : null;
}

/** All built-in capabilities. */
export const BUILTINS: Builtin[] = [
  {
    manifest: manifest('ccos.echo', 'Returns its argument (several arguments: a vector of them).', { idempotent: true, deterministic: true }),
    provider: { invoke: (args) => (args.length === 1 ? args[0] : List(args)) },
  },
  {
    manifest: manifest('ccos.state.kv.get', 'Reads a value from the durable key-value state (nil when absent).', {
      params: [{ rtfs: '[:union :string :keyword]' }],
      effects: [{ kind: 'state', access: 'read' }],
      idempotent: true,
    }),
    provider: {
      invoke: ([k], ctx) => {
        const row = ctx.store.stmt('SELECT value FROM state_kv WHERE key = ?').get(name(k, 'key')) as { value: string } | undefined;
        return row ? valueFromJson(JSON.parse(row.value)) : null;
      },
    },
  },
  {
    manifest: manifest('ccos.state.kv.put', 'Stores a value under a key in the durable state; returns the value.', {
      params: [{ rtfs: '[:union :string :keyword]' }, { rtfs: ':any' }],
      effects: [{ kind: 'state', access: 'write' }],
      idempotent: true,
    }),
    provider: {
      invoke: ([k, v], ctx) => {
        ctx.store.stmt('INSERT INTO state_kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(name(k, 'key'), JSON.stringify(valueToJson(v)));
        return v;
      },
    },
  },
  {
    manifest: manifest('ccos.state.counter.inc', 'Adds to a durable counter (by 1 unless given) and returns the new value.', {
      effects: [{ kind: 'state', access: 'write' }],
    }),
    provider: {
      invoke: (args, ctx) => {
        if (args.length < 1 || args.length > 2) throw new RtfsError('invalid-input', 'ccos.state.counter.inc takes a counter name and an optional amount');
        const by = args.length > 1 ? args[1] : 1;
        if (typeof by !== 'number') throw new RtfsError('invalid-input', 'the amount must be an integer');
        const n = name(args[0], 'counter name');
        const row = ctx.store.stmt('INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value RETURNING value')
          .get(n, by) as { value: number };
        return row.value;
      },
    },
  },
  {
    manifest: manifest('ccos.state.counter.get', 'Reads a durable counter (0 when absent).', { params: [{ rtfs: '[:union :string :keyword]' }], effects: [{ kind: 'state', access: 'read' }], idempotent: true }),
    provider: {
      invoke: ([k], ctx) => (ctx.store.stmt('SELECT value FROM counters WHERE name = ?').get(name(k, 'counter name')) as { value: number } | undefined)?.value ?? 0,
    },
  },
  {
    manifest: manifest('ccos.state.event.append', 'Appends a value to a durable event stream; returns the stream length.', {
      params: [{ rtfs: '[:union :string :keyword]' }, { rtfs: ':any' }],
      effects: [{ kind: 'state', access: 'write' }],
    }),
    provider: {
      invoke: ([stream, v], ctx) => {
        const s = name(stream, 'stream');
        ctx.store.stmt('INSERT INTO events (stream, value, time) VALUES (?, ?, ?)').run(s, JSON.stringify(valueToJson(v)), new Date().toISOString());
        return (ctx.store.stmt('SELECT COUNT(*) AS n FROM events WHERE stream = ?').get(s) as { n: number }).n;
      },
    },
  },
  {
    manifest: manifest('ccos.fs.read', 'Reads a UTF-8 file inside the workspace root.', {
      params: [{ rtfs: ':string' }],
      effects: [{ kind: 'fs', access: 'read' }],
      idempotent: true,
    }),
    provider: {
      invoke: async ([p], ctx) => {
        const full = insideWorkspace(ctx, p);
        try {
          return await fs.readFile(full, 'utf8');
        } catch (e) {
          throw new RtfsError('fs-error', `cannot read ${strOf(p)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      },
    },
  },
  {
    manifest: manifest('ccos.fs.write', 'Writes a UTF-8 file inside the workspace root; returns the number of characters written.', {
      params: [{ rtfs: ':string' }, { rtfs: ':string' }],
      effects: [{ kind: 'fs', access: 'write' }],
      risk: 'medium',
      idempotent: true,
    }),
    provider: {
      invoke: async ([p, content], ctx) => {
        const full = insideWorkspace(ctx, p);
        await fs.mkdir(path.dirname(full), { recursive: true });
        await fs.writeFile(full, content as string, 'utf8');
        return (content as string).length;
      },
    },
  },
  {
    manifest: manifest('ccos.http.fetch', 'HTTP request to an allowed host: {:url .. :method .. :headers {..} :body ..} → {:status .. :headers {..} :body ..}.', {
      input: { rtfs: '[:map [:url :string] [:method {:optional true} :keyword] [:headers {:optional true} [:map-of :string :string]] [:body {:optional true} :string]]' },
      effects: [{ kind: 'network' }],
      risk: 'medium',
      timeoutMs: 15000,
    }),
    provider: {
      invoke: async ([req], ctx) => {
        const url = new URL(opt(req, 'url') as string);
        if (!ctx.allowedHosts.some((h) => h === url.hostname || h === url.host || h === '*')) {
          throw new RtfsError('network-denied', `host ${url.host} is not in the allowed hosts (${ctx.allowedHosts.join(', ') || 'none'})`, undefined, undefined, 'allow it with --allow-host HOST');
        }
        const method = opt(req, 'method');
        const headers = opt(req, 'headers');
        const res = await fetch(url, {
          method: method instanceof Keyword ? method.name.toUpperCase() : 'GET',
          headers: headers ? (Object.fromEntries([...(headers as RMap).entries()].map(([k, v]) => [String(k instanceof Keyword ? k.name : k), String(v)])) as Record<string, string>) : undefined,
          body: (opt(req, 'body') as string | null) ?? undefined,
          signal: ctx.signal,
        });
        const text = await res.text();
        return plainJsonToValue({ status: res.status, headers: Object.fromEntries(res.headers.entries()), body: text });
      },
    },
  },
  {
    manifest: manifest('ccos.time.now', 'The current time: {:iso "..." :epoch-ms n}. Journaled, so a replay sees the same time.', { effects: [{ kind: 'clock' }], idempotent: true }),
    provider: { invoke: () => IMap<Value, Value>().set(kw('iso'), new Date().toISOString()).set(kw('epoch-ms'), Date.now()) },
  },
  {
    manifest: manifest('ccos.user.ask', 'Asks a person a question; the run pauses until `ccos resume RUN --answer ...` (or the terminal) answers.', {
      params: [{ rtfs: ':string' }],
      effects: [{ kind: 'human' }],
      idempotent: true,
    }),
    provider: {
      invoke: ([prompt]) => {
        throw new PauseRun({ kind: 'answer', prompt: prompt as string });
      },
    },
  },
];

