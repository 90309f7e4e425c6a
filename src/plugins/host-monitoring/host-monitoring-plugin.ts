/**
 * The `hostMonitoring` plugin: notices a host that stops answering without closing the socket
 * (a black hole, a frozen server) while a statement runs on it, and aborts that host's
 * connections so that failover can start. Defaults detect a silent writer in about
 * `failureDetectionTime + failureDetectionCount × failureDetectionInterval` = 200 + 2 × 500 ms,
 * where the AWS drivers' defaults (30 s + 3 × 5 s) take 45 s.
 *
 * @module
 */
import type { ExecuteContext, HaPlugin, PluginServices } from '../../core/plugin.ts'
import { startTimer, stopTimer } from '../../runtime/timers.ts'
import { closeIdleHostMonitors, hostMonitorFor } from './host-monitor.ts'

/**
 * Creates the host monitoring plugin (enabled by default).
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { failureDetectionTime: 500, failureDetectionInterval: 1000, failureDetectionCount: 3 })
 * ```
 */
export function hostMonitoringPlugin(): HaPlugin {
  let services: PluginServices
  let graceMs = 200
  let intervalMs = 500
  let count = 2
  let connectTimeoutMs = 10_000

  return {
    name: 'hostMonitoring',
    init(s) {
      services = s
      graceMs = s.options['failureDetectionTime'] as number
      intervalMs = s.options['failureDetectionInterval'] as number
      count = s.options['failureDetectionCount'] as number
      connectTimeoutMs = s.options['connectTimeoutMs'] as number
    },
    async execute<T>(ctx: ExecuteContext, next: () => Promise<T>): Promise<T> {
      let unwatch: (() => void) | undefined
      // Short statements, the vast majority, never reach the monitor: only a timer is armed.
      const grace = startTimer(() => {
        const host = ctx.host
        if (!host) return
        unwatch = hostMonitorFor(host).watch({
          factory: services.factory,
          intervalMs,
          count,
          connectTimeoutMs,
          onDown: (reason) => {
            services.markHostDown(host, reason)
            services.abortHost(host, reason)
          },
        })
      }, graceMs)
      try {
        return await next()
      } finally {
        stopTimer(grace)
        unwatch?.()
      }
    },
    end() {
      closeIdleHostMonitors()
    },
  }
}
