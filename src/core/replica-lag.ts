/**
 * Keeps replication lag fresh for clients that route by it (`maxReplicaLagMs`, the `lowestLag`
 * strategy): the calm topology poll (30 s) is far too slow to notice a reader falling behind, so
 * such a client reads the topology — which carries each reader's lag — every
 * {@link lagPollMs} as well. Reads share the cluster's monitor and its connection.
 *
 * @module
 */
import type { Runtime } from '../runtime/runtime.ts'
import type { TimerHandle } from '../runtime/timers.ts'
import type { Topology } from './topology.ts'

/**
 * How often lag is read: half the limit, at most every 500 ms, so that a reader crossing the limit
 * is known within about a second (the read itself included).
 *
 * @example
 * ```ts
 * lagPollMs(500) // 250
 * ```
 */
export function lagPollMs(maxReplicaLagMs: number | undefined): number {
  if (maxReplicaLagMs === undefined) return 500
  return Math.max(50, Math.min(500, Math.floor(maxReplicaLagMs / 2)))
}

/**
 * Reads the topology every `intervalMs` until stopped; never keeps the process alive.
 *
 * @example
 * ```ts
 * const stop = pollLag(() => monitor.refresh(), 250, systemRuntime)
 * stop()
 * ```
 */
export function pollLag(
  refresh: () => Promise<Topology | undefined>,
  intervalMs: number,
  runtime: Runtime,
): () => void {
  let timer: TimerHandle | undefined
  let stopped = false
  const tick = () => {
    timer = undefined
    void refresh()
      .catch(() => undefined)
      .finally(() => {
        if (!stopped) timer = runtime.startTimer(tick, intervalMs)
      })
  }
  timer = runtime.startTimer(tick, intervalMs)
  return () => {
    stopped = true
    runtime.stopTimer(timer)
  }
}
