/**
 * Throughput recovery after a writer fault: when, after the new writer was ready, did the
 * acknowledgements the new writer gave reach 90 % of the rate before the fault again.
 *
 * @module
 */

/**
 * Acknowledgements per second in `[fromMs, toMs)`.
 *
 * @example
 * ```ts
 * rate([1000, 1500, 1900], 1000, 2000) // 3
 * ```
 */
export function rate(ackTimes: readonly number[], fromMs: number, toMs: number): number {
  let n = 0
  for (const t of ackTimes) if (t >= fromMs && t < toMs) n++
  return (n / (toMs - fromMs)) * 1000
}

/**
 * The end of the first window of `windowMs`, ending at or after `fromMs`, in which the
 * acknowledgements in `ackTimes` reach `fraction` of `baselinePerSecond` (the window's rate over
 * its whole length, so a recovery is counted only once it is sustained for `windowMs`); or
 * `undefined` if none does.
 *
 * @example
 * ```ts
 * const at = recoveredAt(newWriterAcks, { baselinePerSecond: 1200, fromMs: ready.atMs, windowMs: 100 })
 * const recoveryMs = at === undefined ? null : at - ready.atMs
 * ```
 */
export function recoveredAt(
  ackTimes: readonly number[],
  options: { baselinePerSecond: number; fromMs: number; windowMs: number; fraction?: number },
): number | undefined {
  const { baselinePerSecond, fromMs, windowMs, fraction = 0.9 } = options
  const needed = Math.max(1, Math.ceil((fraction * baselinePerSecond * windowMs) / 1000))
  const times = [...ackTimes].sort((a, b) => a - b)
  let start = 0
  for (let end = 0; end < times.length; end++) {
    const t = times[end]!
    while (times[start]! <= t - windowMs) start++
    if (end - start + 1 >= needed) return Math.max(t, fromMs)
  }
  return undefined
}
