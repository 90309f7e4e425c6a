/**
 * Which host a statement goes to: the writer for writes, a reader chosen by the configured
 * strategy for reads, never a host marked down while another will do.
 *
 * @module
 */
import { type HostAddress, type HostInfo, hostKey } from './host.ts'
import type { ReaderStrategy } from './options.ts'

/** `lowestLag` counts readers within this many ms of the lowest lag as tied. */
export const LAG_TIE_MS = 20

/** Picks one reader among candidates. */
export type ReaderPicker = (candidates: readonly HostInfo[]) => HostInfo | undefined

/**
 * A reader picker for a strategy. `leastConnections` asks `connectionCount` how busy a host is;
 * `lowestLag` takes the reader with the least replication lag the topology reported.
 *
 * @example
 * ```ts
 * const pick = readerPicker('roundRobin', () => 0)
 * pick(topology.readers)
 * ```
 */
export function readerPicker(
  strategy: ReaderStrategy,
  connectionCount: (host: HostAddress) => number,
): ReaderPicker {
  if (strategy === 'roundRobin') {
    let next = 0
    return (candidates) => {
      if (candidates.length === 0) return undefined
      // Sorted so that the rotation is stable while topology readings reorder the list.
      const sorted = [...candidates].sort((a, b) => hostKey(a).localeCompare(hostKey(b)))
      return sorted[next++ % sorted.length]
    }
  }
  if (strategy === 'lowestLag') {
    return (candidates) => {
      let lowest = Number.POSITIVE_INFINITY
      // A reader whose lag is unknown ranks behind every measured one.
      const lagOf = (h: HostInfo) => h.lagMs ?? Number.MAX_SAFE_INTEGER
      for (const h of candidates) lowest = Math.min(lowest, lagOf(h))
      // Readers about as far behind as the best share the reads: a few ms of lag is measurement noise.
      const best = candidates.filter((h) => lagOf(h) <= lowest + LAG_TIE_MS)
      return best.length === 0 ? undefined : best[Math.floor(Math.random() * best.length)]
    }
  }
  if (strategy === 'leastConnections') {
    return (candidates) =>
      candidates.reduce<HostInfo | undefined>(
        (best, h) => (!best || connectionCount(h) < connectionCount(best) ? h : best),
        undefined,
      )
  }
  return (candidates) =>
    candidates.length === 0 ? undefined : candidates[Math.floor(Math.random() * candidates.length)]
}

/**
 * Whether a reader may take reads: `maxReplicaLagMs` (`undefined`: no limit) against the lag the
 * topology last reported. A reader whose lag is unknown is kept: the dialect cannot tell, and
 * dropping every such reader would send all reads to the writer.
 *
 * @example
 * ```ts
 * topology.readers.filter((h) => withinLag(h, 500))
 * ```
 */
export function withinLag(host: HostInfo, maxReplicaLagMs: number | undefined): boolean {
  return maxReplicaLagMs === undefined || host.lagMs === undefined || host.lagMs <= maxReplicaLagMs
}
