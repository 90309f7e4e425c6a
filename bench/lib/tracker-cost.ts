/**
 * What the host-monitoring tracker (src/plugins/host-monitoring/long-statements.ts) costs one
 * statement on its own: `track` as the statement starts and `end` as it settles, its clock read
 * included, with 10 statements in flight as in the other workloads. Measured against the same loop
 * without the tracker, so that only the tracker's own work is left; every statement ends well
 * within the grace period, as on a healthy server.
 *
 * @module
 */
import { longStatements } from '../../src/plugins/host-monitoring/long-statements.ts'
import { systemRuntime } from '../../src/runtime/runtime.ts'
import { quantile } from './stats.ts'

/** ns per statement: the median over `rounds` of (with the tracker − without), and the loop's own. */
export interface TrackerCost {
  addedNsPerStatement: number
  loopNsPerStatement: number
}

const IN_FLIGHT = 10
const STATEMENTS_PER_BATCH = 200_000

/**
 * Alternates batches with and without the tracker, `rounds` of each after a warm-up.
 *
 * @example
 * ```ts
 * const { addedNsPerStatement } = trackerCost(60)
 * ```
 */
export function trackerCost(rounds: number): TrackerCost {
  const tracker = longStatements<object>(60_000, systemRuntime, () => undefined)
  const items = Array.from({ length: IN_FLIGHT }, () => ({}))
  const slots: unknown[] = new Array(IN_FLIGHT)
  const withTracker = (): number => {
    const t0 = performance.now()
    for (let n = 0; n < STATEMENTS_PER_BATCH; n += IN_FLIGHT) {
      for (let i = 0; i < IN_FLIGHT; i++) slots[i] = tracker.track(items[i]!)
      for (let i = 0; i < IN_FLIGHT; i++) tracker.end(slots[i] as ReturnType<typeof tracker.track>)
    }
    return ((performance.now() - t0) * 1e6) / STATEMENTS_PER_BATCH
  }
  const without = (): number => {
    const t0 = performance.now()
    for (let n = 0; n < STATEMENTS_PER_BATCH; n += IN_FLIGHT) {
      for (let i = 0; i < IN_FLIGHT; i++) slots[i] = items[i]
      for (let i = 0; i < IN_FLIGHT; i++) slots[i] = undefined
    }
    return ((performance.now() - t0) * 1e6) / STATEMENTS_PER_BATCH
  }
  try {
    for (let i = 0; i < 10; i++) {
      withTracker()
      without()
    }
    const added: number[] = []
    const loop: number[] = []
    for (let r = 0; r < rounds; r++) {
      const bare = without()
      added.push(withTracker() - bare)
      loop.push(bare)
    }
    return {
      addedNsPerStatement: Math.round(median(added) * 10) / 10,
      loopNsPerStatement: Math.round(median(loop) * 10) / 10,
    }
  } finally {
    tracker.close()
  }
}

const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  )
