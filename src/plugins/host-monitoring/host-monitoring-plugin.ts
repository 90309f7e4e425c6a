/**
 * The `hostMonitoring` plugin: notices a host that stops answering without closing the socket
 * (a black hole, a frozen server) while a statement runs on it, and aborts that host's
 * connections so that failover can start. Defaults detect a silent writer in about
 * `failureDetectionTime + failureDetectionCount × failureDetectionInterval` = 200 + 2 × 500 ms,
 * where the AWS drivers' defaults (30 s + 3 × 5 s) take 45 s.
 *
 * @module
 */

import { withLane } from '../../core/execute-lane.ts'
import { readOptions } from '../../core/option-spec.ts'
import type { ExecuteContext, HaPlugin, PluginServices } from '../../core/plugin.ts'
import { closeIdleHostMonitors, hostMonitorFor } from './host-monitor.ts'
import { type LongStatements, longStatements, type Tracked } from './long-statements.ts'
import { hostMonitoringOptionSpecs, type ResolvedHostMonitoringOptions } from './options.ts'

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
  let options: ResolvedHostMonitoringOptions
  let tracker: LongStatements<ExecuteContext> | undefined

  /** A statement past its grace period: its host is watched until the statement ends. */
  const watch = (ctx: ExecuteContext): (() => void) | undefined => {
    const host = ctx.host
    if (!host) return undefined
    return hostMonitorFor(host, services.runtime).watch({
      factory: services.factory,
      intervalMs: options.failureDetectionInterval,
      count: options.failureDetectionCount,
      connectTimeoutMs: services.options.connectTimeoutMs,
      onDown: (reason) => {
        services.markHostDown(host, reason)
        services.abortHost(host, reason)
      },
    })
  }

  const plugin: HaPlugin = {
    name: 'hostMonitoring',
    init(s) {
      services = s
      options = readOptions<ResolvedHostMonitoringOptions>(hostMonitoringOptionSpecs, [s.options])
      tracker = longStatements(options.failureDetectionTime, s.runtime, watch)
    },
    execute<T>(ctx: ExecuteContext, next: () => Promise<T>): Promise<T> {
      // Short statements, the vast majority, never reach the monitor, and arm no timer of their
      // own: one shared timer finds those that run past the grace period.
      const done = tracker!.start(ctx)
      let running: Promise<T>
      try {
        running = next()
      } catch (error) {
        done()
        return Promise.reject(error)
      }
      return running.then(
        (value) => {
          done()
          return value
        },
        (error) => {
          done()
          throw error
        },
      )
    },
    end() {
      tracker?.close()
      closeIdleHostMonitors()
    },
  }
  // The lane: what `execute` does, for a statement that skips the chain (core/execute-lane.ts).
  return withLane<Tracked<ExecuteContext>>(plugin, {
    open: () => true,
    start: (ctx) => tracker!.track(ctx),
    settled: (entry) => tracker!.end(entry),
    resume: (_ctx, entry, first) => {
      tracker!.end(entry)
      return first
    },
  })
}
