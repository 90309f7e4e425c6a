/**
 * Which host a statement goes to: the writer for writes, a reader chosen by the configured
 * strategy for reads, never a host marked down while another will do.
 *
 * @module
 */
import { type HostAddress, type HostInfo, hostKey } from './host.ts'
import type { ReaderStrategy } from './options.ts'

/** Picks one reader among candidates. */
export type ReaderPicker = (candidates: readonly HostInfo[]) => HostInfo | undefined

/**
 * A reader picker for a strategy. `leastConnections` asks `connectionCount` how busy a host is.
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
