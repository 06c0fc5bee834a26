/**
 * Timing helpers shared by the benchmark scripts (bench/run.ts, bench/ccos.ts, bench/governance.ts):
 * warm-up, median, and synchronous timing alone or round-robin.
 *
 * Owns only measurement; it never checks results or prints (each script does that for its own
 * workloads).
 */

export interface Stats {
  /** Median of the timed repetitions, in ms. */
  median: number;
  min: number;
  reps: number;
}

export interface BenchOpts {
  /** At least this many untimed runs, continuing (up to 30) until ~300 ms have been spent warming. */
  warmup?: number;
  /** At most this many timed repetitions... */
  maxReps?: number;
  /** ...and at least this many... */
  minReps?: number;
  /** ...stopping early once the timed repetitions have used this many ms. */
  budgetMs?: number;
}

/** Untimed runs, so that V8 has tiered the code up (a few runs are not enough for short loops). */
export function warm(fn: () => unknown, minRuns: number): void {
  const t0 = performance.now();
  for (let i = 0; i < 30 && (i < minRuns || performance.now() - t0 < 300); i++) fn();
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function bench(fn: () => unknown, opts: BenchOpts = {}): Stats {
  const { warmup = 5, maxReps = 15, minReps = 5, budgetMs = 2500 } = opts;
  warm(fn, warmup);
  const times: number[] = [];
  let spent = 0;
  while (times.length < maxReps && (times.length < minReps || spent < budgetMs)) {
    const t0 = performance.now();
    fn();
    const dt = performance.now() - t0;
    times.push(dt);
    spent += dt;
  }
  return { median: median(times), min: Math.min(...times), reps: times.length };
}

/**
 * Times several functions round-robin (one repetition of each per round), so that background load
 * on a shared machine hits every runtime alike instead of whichever happened to run at the time.
 */
export function benchInterleaved<K extends string>(fns: Record<K, () => unknown>, opts: BenchOpts = {}): Record<K, Stats> {
  const { warmup = 5, maxReps = 15, minReps = 5, budgetMs = 4000 } = opts;
  const keys = Object.keys(fns) as K[];
  for (const k of keys) warm(fns[k], warmup);
  const times = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  let spent = 0;
  for (let rep = 0; rep < maxReps && (rep < minReps || spent < budgetMs); rep++) {
    for (const k of keys) {
      const t0 = performance.now();
      fns[k]();
      const dt = performance.now() - t0;
      times[k].push(dt);
      spent += dt;
    }
  }
  return Object.fromEntries(keys.map((k) => [k, { median: median(times[k]), min: Math.min(...times[k]), reps: times[k].length }])) as Record<K, Stats>;
}
