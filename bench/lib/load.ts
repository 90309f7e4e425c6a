/**
 * A closed-loop load: `count` statements run by `concurrency` workers, each timed; the per-query
 * latencies and the wall time of the whole batch.
 *
 * @module
 */

/**
 * What a batch measured: every statement's latency (ms), the batch's wall time (ms) and the
 * process's CPU time (ms; `null` where the runtime has no `process.cpuUsage`), all of it and the
 * user-mode part (the system part is mostly the kernel's loopback networking, which also does
 * some of the server's receiving in the sender's time).
 */
export interface Batch {
  latencies: Float64Array
  wallMs: number
  cpuMs: number | null
  userCpuMs: number | null
}

function cpuNow(): { user: number; system: number } | null {
  try {
    return process.cpuUsage()
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
  const cpu0 = cpuNow()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  const wallMs = performance.now() - t0
  const cpu1 = cpuNow()
  if (cpu0 === null || cpu1 === null) return { latencies, wallMs, cpuMs: null, userCpuMs: null }
  const userCpuMs = (cpu1.user - cpu0.user) / 1000
  return { latencies, wallMs, cpuMs: userCpuMs + (cpu1.system - cpu0.system) / 1000, userCpuMs }
}

/**
 * Batches run one after the other as one: latencies end to end, wall and CPU times summed.
 *
 * @example
 * ```ts
 * joinBatches([await runBatch(100, 10, q), await runBatch(100, 10, q)]).latencies.length // 200
 * ```
 */
export function joinBatches(parts: readonly Batch[]): Batch {
  const latencies = new Float64Array(parts.reduce((n, b) => n + b.latencies.length, 0))
  let at = 0
  for (const b of parts) {
    latencies.set(b.latencies, at)
    at += b.latencies.length
  }
  const sum = (field: 'cpuMs' | 'userCpuMs') =>
    parts.every((b) => b[field] !== null) ? parts.reduce((t, b) => t + b[field]!, 0) : null
  return {
    latencies,
    wallMs: parts.reduce((t, b) => t + b.wallMs, 0),
    cpuMs: sum('cpuMs'),
    userCpuMs: sum('userCpuMs'),
  }
}
