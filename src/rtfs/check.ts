/**
 * Static checks for RTFS programs (`rtfs check`): every top-level form is read and compiled, but
 * nothing is run (apart from `defmacro` bodies, which the compiler evaluates at compile time).
 *
 * Owns: the list of diagnostics (every unbound symbol and wrong arity, and the first other compile
 * error of each top-level form, each with its own position; a parse error stops the check), a few warnings, and the capabilities a program names.
 * Must never: import `node:*`, run plan code, or throw for a bad program (every problem becomes
 * a diagnostic).
 */
import { Compiler } from './compiler.js';
import { MetaForm, readAll, type Form } from './reader.js';
import { createRuntime } from './runtime.js';
import { RList, RtfsError, Sym, type SourcePos } from './values.js';

/** One finding of `checkProgram`. */
export interface Diagnostic {
  severity: 'error' | 'warning';
  code: string;
  message: string;
  file: string;
  line: number;
  col: number;
  hint?: string;
}

/** A capability named literally in a `(call :id ...)` form. */
export interface CapabilityUse {
  id: string;
  line: number;
  col: number;
}

export interface CheckResult {
  diagnostics: Diagnostic[];
  /** Capabilities in source order (duplicates kept, each with its own position). */
  capabilities: CapabilityUse[];
  /** True when some `call` computes its capability id (the list above is then incomplete). */
  dynamicCapabilities: boolean;
}

const DEFINERS = new Set(['def', 'defn', 'defn-', 'defmacro', 'declare']);

/** Top-level names a form defines (also inside `do`), with the position of each name. */
function definedNames(f: Form, out: { name: string; pos: SourcePos | undefined; kind: string }[]): void {
  if (!(f instanceof RList) || f.count < 2) return;
  const h = f.first();
  if (!(h instanceof Sym)) return;
  if (h.name === 'do') {
    for (const x of f.rest()) definedNames(x, out);
    return;
  }
  if (!DEFINERS.has(h.name)) return;
  for (const x of h.name === 'declare' ? f.rest() : [f.rest().first()]) {
    const n = x instanceof MetaForm ? x.form : x;
    if (n instanceof Sym && !n.name.includes('/')) out.push({ name: n.name, pos: n.pos, kind: h.name });
  }
}

function diag(severity: Diagnostic['severity'], code: string, message: string, pos: SourcePos | undefined, file: string, hint?: string): Diagnostic {
  const d: Diagnostic = { severity, code, message, file: pos?.file ?? file, line: pos?.line ?? 1, col: pos?.col ?? 1 };
  if (hint !== undefined) d.hint = hint;
  return d;
}

function errorDiagnostic(e: unknown, file: string): Diagnostic {
  if (e instanceof RtfsError) return diag('error', e.code, e.message, e.pos, file, e.hint);
  const msg = e instanceof Error ? e.message : String(e);
  return diag('error', 'internal', `internal error while checking: ${msg}`, undefined, file, 'this is a bug in rtfs; please report it with the program that triggers it');
}

/**
 * Checks `source` without running it. Each top-level form is compiled on its own (so that every
 * form's first error is reported), after all top-level definitions have been declared (so that
 * forms may refer to names defined anywhere at top level, as when the file is loaded).
 */
export function checkProgram(source: string, file: string): CheckResult {
  const diagnostics: Diagnostic[] = [];
  const capabilities: CapabilityUse[] = [];
  let dynamicCapabilities = false;

  let forms: Form[];
  try {
    forms = readAll(source, file);
  } catch (e) {
    return { diagnostics: [errorDiagnostic(e, file)], capabilities, dynamicCapabilities };
  }

  const rt = createRuntime();
  const defs: { name: string; pos: SourcePos | undefined; kind: string }[] = [];
  for (const f of forms) definedNames(f, defs);

  // Warnings about definitions: redefining a core function, defining a name twice.
  const seen = new Map<string, SourcePos | undefined>();
  for (const d of defs) {
    if (d.kind === 'declare') continue;
    const prev = seen.get(d.name);
    if (seen.has(d.name)) {
      const where = prev ? ` (first defined at line ${prev.line})` : '';
      diagnostics.push(diag('warning', 'redefined', `\`${d.name}\` is defined more than once${where}`, d.pos, file, 'the last definition wins; rename one of them'));
    } else {
      seen.set(d.name, d.pos);
      const core = rt.findCell(d.name);
      if (core?.core && d.kind !== 'defmacro') {
        diagnostics.push(diag('warning', 'shadows-core', `\`${d.name}\` redefines a standard library function`, d.pos, file, 'choose another name unless you mean to replace it'));
      }
    }
  }

  // Declare every top-level name so that forward references compile.
  for (const d of defs) if (d.kind !== 'defmacro') rt.cell(d.name);

  forms.forEach((form, i) => {
    try {
      const compiled = new Compiler(rt, `check-${i}`, file, (e) => diagnostics.push(errorDiagnostic(e, file))).compileUnit([form]);
      for (const c of compiled.capabilities) {
        capabilities.push({ id: c.id, line: c.pos?.line ?? 1, col: c.pos?.col ?? 1 });
      }
      if (compiled.dynamicCapabilities) dynamicCapabilities = true;
    } catch (e) {
      diagnostics.push(errorDiagnostic(e, file));
    }
  });

  diagnostics.sort((a, b) => (a.file === b.file ? a.line - b.line || a.col - b.col : 0));
  return { diagnostics, capabilities, dynamicCapabilities };
}
