/**
 * Redaction of secret-looking values in text that is recorded or shown (chain actions, approval
 * summaries).
 *
 * Owns: the one rule for what looks secret by its key (password, token, secret, api key,
 * authorization, credential). Values of declared secrets never reach recorded text at all: they
 * exist only at the provider boundary (see secrets.ts).
 * Must never: be the only protection for secrets (it is a second line, for secrets typed into plans).
 */

/** Masks values of keys that look secret (password, token, secret, api key, authorization). */
export function redact(text: string): string {
  return text.replace(/(:?"?(?:password|passwd|secret|token|api[-_]?key|authorization|credential)[a-z_-]*"?\s+)("(?:[^"\\]|\\.)*"|\S+)/gi, '$1"[redacted]"');
}
