/**
 * A closed-loop load: `count` statements run by `concurrency` workers, each timed; the per-query
 * latencies and the wall time of the whole batch.
 *
 * @module
 */

/** What a batch measured: every statement's latency (ms), the batch's wall time (ms) and the process's CPU time (ms, `null` where the runtime has no `process.cpuUsage`). */
export interface Batch {
  latencies: Float64Array
  wallMs: number
  cpuMs: number | null
}

function cpuNowMs(): number | null {
  try {
    const { user, system } = process.cpuUsage()
    return (user + system) / 1000
  } catch {
    return null
  }
}

/**
 * Runs `query(i)` for i = 0..count-1 on `concurrency` workers. A failed statement fails the batch.
 *
 * @example
 * ```ts
 * const batch = await runBatch(1000, 10, (i) => sql`select ${i}::int`)
 * batch.latencies.length // 1000
 * ```
 */
export async function runBatch(
  count: number,
  concurrency: number,
  query: (i: number) => Promise<unknown>,
): Promise<Batch> {
  const latencies = new Float64Array(count)
  let next = 0
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const t = performance.now()
      await query(i)
      latencies[i] = performance.now() - t
    }
  }
  const cpu0 = cpuNowMs()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  const wallMs = performance.now() - t0
  const cpu1 = cpuNowMs()
  return { latencies, wallMs, cpuMs: cpu0 === null || cpu1 === null ? null : cpu1 - cpu0 }
}
