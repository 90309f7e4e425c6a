/**
 * The `connectionTracker` plugin: when a host fails or the writer changes, closes every
 * connection this client has to the old writer or the failed host (pooled, reserved and idle),
 * so that no later statement lands on a host with the wrong role.
 *
 * @module
 */
import { sameHost } from '../core/host.ts'
import type { HaPlugin } from '../core/plugin.ts'

/**
 * Creates the connection tracker plugin (enabled by default).
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { plugins: 'connectionTracker,failover' })
 * ```
 */
export function connectionTrackerPlugin(): HaPlugin {
  const unsubscribe: Array<() => void> = []
  return {
    name: 'connectionTracker',
    init(services) {
      unsubscribe.push(
        services.events.on('writerChanged', ({ from, to }) => {
          if (from && !sameHost(from, to)) services.abortHost(from, 'the writer changed')
        }),
        services.events.on('hostDown', ({ host, reason }) => services.abortHost(host, reason)),
      )
    },
    end() {
      for (const off of unsubscribe.splice(0)) off()
    },
  }
}
