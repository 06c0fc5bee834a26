/**
 * The error type of the CCOS layer: a stable `code`, a message that names the place, and a hint
 * that names the fix.
 *
 * Owns: `CcosError` and converting any thrown value into one for display.
 * Must never: carry secret values in messages or data.
 */
import { RtfsError } from '../rtfs/index.js';

/** An error users see. `code` is stable; `data` is structured detail for `--json`. */
export class CcosError extends Error {
  readonly hint?: string;
  readonly data?: Record<string, unknown>;
  constructor(
    readonly code: string,
    message: string,
    opts: { hint?: string; data?: Record<string, unknown> } = {},
  ) {
    super(message);
    this.name = 'CcosError';
    this.hint = opts.hint;
    this.data = opts.data;
  }
}

/** Normalizes anything thrown into `{code, message, hint}` for output. */
export function describeError(e: unknown): { code: string; message: string; hint?: string; file?: string; line?: number; col?: number } {
  if (e instanceof CcosError) return { code: e.code, message: e.message, hint: e.hint };
  if (e instanceof RtfsError) return { code: e.code, message: e.message, hint: e.hint, file: e.pos?.file, line: e.pos?.line, col: e.pos?.col };
  return { code: 'internal', message: e instanceof Error ? e.message : String(e), hint: 'this is a bug in ccos; please report it' };
}
