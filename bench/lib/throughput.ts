/**
 * Throughput recovery after a writer fault: when, after the new writer was ready, did the
 * acknowledgements the new writer gave reach 90 % of the rate before the fault again.
 *
 * @module
 */
import { nowMs } from './report.ts'

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

/**
 * {@link recoveredAt}, asked again and again while a run goes on, at a cost that does not grow
 * with the run. Asking it over every acknowledgement each time (tens of thousands after a few
 * seconds at thousands of writes per second) took the client's CPU from the writes it measures:
 * a slow recovery then stayed slow until the benchmark stopped asking. Each call reads only the
 * records added since the last call (`sources` are the loops' records: appended in order, at most
 * the last one still pending) and keeps only the acknowledgements that can still end a window not
 * examined yet. Returns the same time {@link recoveredAt} would over all of them.
 *
 * @example
 * ```ts
 * const check = recoveryWatch(loops.map((l) => l.records), (r) => isRecoveryWrite(r, mark), options)
 * while (check() === undefined && performance.now() < deadline) await sleep(20)
 * ```
 */
export function recoveryWatch<R extends { endMs?: number }>(
  sources: readonly (readonly R[])[],
  counts: (record: R) => boolean,
  options: { baselinePerSecond: number; fromMs: number; windowMs: number; fraction?: number },
  now: () => number = nowMs,
): () => number | undefined {
  const cursors = sources.map(() => 0)
  let recent: number[] = []
  let examinedUpTo = Number.NEGATIVE_INFINITY
  let found: number | undefined
  return () => {
    if (found !== undefined) return found
    // Every acknowledgement up to now is recorded: windows ending by now are examined below, once.
    const checkedAt = now()
    sources.forEach((records, i) => {
      let c = cursors[i]!
      for (; c < records.length && records[c]!.endMs !== undefined; c++)
        if (counts(records[c]!)) recent.push(records[c]!.endMs!)
      cursors[i] = c
    })
    const from = examinedUpTo - options.windowMs
    recent = recent.filter((t) => t > from)
    found = recoveredAt(recent, options)
    examinedUpTo = checkedAt
    return found
  }
}
