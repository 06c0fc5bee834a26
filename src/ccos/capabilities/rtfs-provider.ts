/**
 * Capabilities written in RTFS: `(capability :id {manifest} (fn [input] ...))` in an `.rtfs`
 * file. The function runs in its own machine; every `call` it makes goes back through the gate,
 * journaled under the outer call's request id.
 *
 * Owns: loading capability definitions from a file, and running one.
 * Must never: run the file's top level with effects (definitions must be pure: a `call` at top
 * level is an error).
 */
import { CAPABILITY_PREFIX } from '../../rtfs/macros.js';
import { Closure, IMap, Keyword, RtfsError, createRuntime, errorValueToRtfsError, type RMap, type Value } from '../../rtfs/index.js';
import { CcosError } from '../errors.js';
import { manifestFromRtfs } from './registry.js';
import type { CapabilityManifest, Provider } from './types.js';

/** One capability found in a file. */
export interface RtfsCapability {
  manifest: CapabilityManifest;
  provider: Provider;
}

function describe(source: string, file: string): Map<string, RMap> {
  const rt = createRuntime();
  const unit = rt.load(source, file);
  rt.runToCompletion(unit.main, [], 10_000_000);
  const out = new Map<string, RMap>();
  for (const [name, cell] of rt.cells) {
    if (!name.startsWith(CAPABILITY_PREFIX) || !cell.defined || !IMap.isMap(cell.value)) continue;
    const desc = cell.value as RMap;
    const id = desc.get(Keyword.of('id')) as string;
    out.set(id, desc);
  }
  return out;
}

/** Reads every `(capability ...)` of an RTFS file into manifests and providers. */
export function loadRtfsCapabilities(source: string, file: string): RtfsCapability[] {
  const found = describe(source, file);
  if (found.size === 0) throw new CcosError('manifest', `${file} defines no capability`, { hint: 'define one with (capability :my.id {:description "..."} (fn [input] ...))' });
  return [...found.entries()].map(([id, desc]) => {
    const manifest = manifestFromRtfs(id, desc.get(Keyword.of('manifest')) as RMap, { kind: 'rtfs', file, source });
    return { manifest, provider: rtfsProvider(manifest) };
  });
}

/** The provider of an RTFS capability (recreated from its persisted manifest after a restart). */
export function rtfsProvider(manifest: CapabilityManifest): Provider {
  if (manifest.provider.kind !== 'rtfs') throw new Error('not an RTFS capability');
  const { source, file } = manifest.provider as { kind: 'rtfs'; file: string; source: string };
  return {
    async invoke(args, ctx) {
      const rt = createRuntime();
      const unit = rt.load(source, file);
      rt.runToCompletion(unit.main, [], 10_000_000);
      const desc = rt.findCell(`${CAPABILITY_PREFIX}${manifest.id.replace(/\//g, '%2F')}`)?.value as RMap | undefined;
      const fn = desc?.get(Keyword.of('fn')) as Value;
      if (!(fn instanceof Closure)) throw new CcosError('manifest', `${file} no longer defines ${manifest.id}`);
      const m = rt.machine();
      m.start(fn, args);
      for (;;) {
        const out = m.run();
        if (out.status === 'complete') return out.value;
        if (out.status === 'error') throw errorValueToRtfsError(out.error);
        if (out.status === 'out-of-fuel') throw new CcosError('fuel-exhausted', `${manifest.id} ran out of fuel`);
        const answers = await Promise.all(
          out.requests.map(async (r) => {
            if (r.kind === 'call') {
              try {
                return { id: r.id, resolution: { value: await ctx.call(r.capability, r.args, r.id) } };
              } catch (e) {
                return { id: r.id, resolution: { error: e as Error & { code: string } } };
              }
            }
            return { id: r.id, resolution: { value: r.kind === 'step-end' && r.outcome.ok ? r.outcome.value : null } };
          }),
        );
        m.resume(answers.map((a) => ({ id: a.id, resolution: 'error' in a.resolution ? { error: toRtfsError(a.resolution.error) } : a.resolution })));
      }
    },
  };
}

function toRtfsError(e: unknown): RtfsError {
  if (e instanceof RtfsError) return e;
  if (e instanceof CcosError) return new RtfsError(e.code, e.message, undefined, undefined, e.hint);
  return new RtfsError('provider-failed', e instanceof Error ? e.message : String(e));
}
