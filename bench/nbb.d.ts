// Minimal typing for the part of nbb's JS API the benchmark uses.
declare module 'nbb' {
  /** Reads and evaluates ClojureScript source; resolves to the value of the last form. */
  export function loadString(source: string, opts?: Record<string, unknown>): Promise<unknown>;
}
