/**
 * Percentile summaries. These machines are noisy: the benchmarks report distributions and ratios,
 * never a single time.
 *
 * @module
 */

/** p50/p95/p99/max (and min, mean) of a sample, rounded to 0.1; `n` counts the finite values. */
export interface Summary {
  n: number
  min: number | null
  p50: number | null
  p95: number | null
  p99: number | null
  max: number | null
  mean: number | null
}

const round = (x: number) => Math.round(x * 10) / 10

/**
 * The `q` quantile (0..1) of sorted values, by linear interpolation between closest ranks.
 *
 * @example
 * ```ts
 * quantile([1, 2, 3, 4], 0.5) // 2.5
 * ```
 */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  const pos = (sorted.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo)
}

/**
 * Summarises a sample; `null` and non-finite values are left out of the figures (a trial that
 * never recovered has no time), and `n` says how many remained.
 *
 * @example
 * ```ts
 * summarize([12, 8, 30]).p50 // 12
 * ```
 */
export function summarize(values: ReadonlyArray<number | null | undefined>): Summary {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
  xs.sort((a, b) => a - b)
  if (xs.length === 0) return { n: 0, min: null, p50: null, p95: null, p99: null, max: null, mean: null }
  return {
    n: xs.length,
    min: round(xs[0]!),
    p50: round(quantile(xs, 0.5)),
    p95: round(quantile(xs, 0.95)),
    p99: round(quantile(xs, 0.99)),
    max: round(xs[xs.length - 1]!),
    mean: round(xs.reduce((a, b) => a + b, 0) / xs.length),
  }
}

/** `a / b` rounded to two decimals, or `null` when either is missing or `b` is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || b === 0 || !Number.isFinite(a) || !Number.isFinite(b)) return null
  return Math.round((a / b) * 100) / 100
}
