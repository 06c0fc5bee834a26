/**
 * Human-readable diagnostics: `error[code]: message`, the place, a caret excerpt, and a hint.
 *
 * Owns: the one rendering of kernel errors that users read (CLI, REPL, `rtfs check`).
 * Must never: throw, or read files itself (the caller passes the source text it has).
 */
import type { SourcePos } from './values.js';

/** The parts of an error a diagnostic shows. */
export interface DiagnosticInput {
  code: string;
  message: string;
  pos?: SourcePos;
  hint?: string;
}

/** Renders a diagnostic; `source` is the text of `pos.file`, when the caller has it. */
export function formatDiagnostic(d: DiagnosticInput, source?: string, severity: 'error' | 'warning' = 'error'): string {
  const lines = [`${severity}[${d.code}]: ${d.message}`];
  if (d.pos) {
    lines.push(`  --> ${d.pos.file}:${d.pos.line}:${d.pos.col}`);
    const text = source?.split('\n')[d.pos.line - 1];
    if (text !== undefined) {
      const num = String(d.pos.line);
      const pad = ' '.repeat(num.length);
      const shown = text.replace(/\t/g, ' ');
      lines.push(`${pad} |`, `${num} | ${shown}`, `${pad} | ${' '.repeat(Math.max(0, d.pos.col - 1))}^`);
    }
  }
  if (d.hint) lines.push(`  = hint: ${d.hint}`);
  return lines.join('\n');
}
