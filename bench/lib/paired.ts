/**
 * Paired rounds on a noisy machine. Each round measures every client back to back, so that
 * whatever slows the machine down in that round (another process, a GC, the server's checkpoint)
 * hits all of them; the headline figure is the median over the rounds of a per-round difference
 * or ratio, with a distribution-free 95 % confidence interval, and an A/A pair (the same client
 * twice) shows how far the measure moves when nothing differs.
 *
 * @module
 */
import { quantile } from './stats.ts'

/** The median of `xs` (NaN for none). */
export function median(xs: readonly number[]): number {
  return quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  )
}

/**
 * A 95 % confidence interval of the median of `xs`, from order statistics (no assumption about
 * the distribution): the `k`-th smallest and the `k`-th largest value, `k` the largest rank with
 * P(Binomial(n, ½) < k) ≤ 2.5 %. With fewer than 6 values no such rank exists and the interval is
 * the whole range.
 *
 * @example
 * ```ts
 * medianCi95([5, 1, 4, 2, 3, 9, 8, 7, 6, 10, 12, 11]) // [3, 10] (ranks 3 and 10 of 12)
 * ```
 */
export function medianCi95(xs: readonly number[]): [number, number] {
  const sorted = xs.filter(Number.isFinite).sort((a, b) => a - b)
  const n = sorted.length
  if (n === 0) return [Number.NaN, Number.NaN]
  // The median is below the k-th smallest value when at most k − 1 values are below it:
  // P(X ≤ k − 1), X ~ Binomial(n, ½). The largest k whose tail is ≤ 2.5 %, else 1 (the range).
  let k = 1
  let term = 0.5 ** n // P(X = j)
  let tail = term // P(X ≤ j)
  for (let j = 0; tail <= 0.025 && j < n; j++) {
    k = j + 1
    term = (term * (n - j)) / (j + 1)
    tail += term
  }
  return [sorted[k - 1]!, sorted[n - k]!]
}

/**
 * A per-round figure of a client against the reference: its median, the 95 % interval, and the
 * values of every round (so that the rounds of several runs can be pooled).
 */
export interface PairedFigure {
  median: number
  ci95: [number, number]
  byRound: number[]
}

/** The median and interval of per-round values, rounded to `digits` decimals. */
export function pairedFigure(perRound: readonly number[], digits: number): PairedFigure {
  const r = (x: number) => Math.round(x * 10 ** digits) / 10 ** digits
  const [lo, hi] = medianCi95(perRound)
  return { median: r(median(perRound)), ci95: [r(lo), r(hi)], byRound: perRound.map(r) }
}

/**
 * The order of the clients in round `round`: all permutations in turn, so that each client runs
 * first, second and last equally often over a multiple of `n!` rounds.
 *
 * @example
 * ```ts
 * roundOrder(['a', 'b', 'c'], 1) // ['b', 'a', 'c']
 * ```
 */
export function roundOrder<T>(clients: readonly T[], round: number): T[] {
  const pool = [...clients]
  const out: T[] = []
  let index = round
  for (let size = pool.length; size > 0; size--) {
    out.push(pool.splice(index % size, 1)[0]!)
    index = Math.floor(index / size)
  }
  return out
}
