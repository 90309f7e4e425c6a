/**
 * The options of the `hostMonitoring` plugin, named as the AWS drivers name them.
 *
 * @module
 */
import { integer, milliseconds } from '../../core/option-checks.ts'
import type { OptionSpec } from '../../core/option-spec.ts'

/**
 * Options of the `hostMonitoring` plugin.
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { failureDetectionTime: 500, failureDetectionInterval: 1000, failureDetectionCount: 3 })
 * ```
 */
export interface HostMonitoringOptions {
  /** Start probing a host once a statement has run this long on it (default 200 ms; AWS: 30000). */
  failureDetectionTime?: number
  /** Interval between probes, and each probe's timeout (default 500 ms; AWS: 5000). */
  failureDetectionInterval?: number
  /** Failed probes in a row before the host is declared down (default 2; AWS: 3). */
  failureDetectionCount?: number
}

/** The `hostMonitoring` plugin's options, resolved. */
export interface ResolvedHostMonitoringOptions {
  readonly failureDetectionTime: number
  readonly failureDetectionInterval: number
  readonly failureDetectionCount: number
}

/** Specs of the `hostMonitoring` plugin's options. */
export const hostMonitoringOptionSpecs: Readonly<Record<keyof HostMonitoringOptions, OptionSpec>> =
  Object.freeze({
    failureDetectionTime: {
      check: milliseconds(0),
      default: 200,
      example: '200',
    },
    failureDetectionInterval: {
      // Below 100 ms a probe would count scheduling hiccups as a dead host, and probe 10+ times a second.
      check: milliseconds(100),
      default: 500,
      example: '500',
      // A host declared down only after failover gave up would be of no use to it.
      relate: (value, options) => {
        const limit = options.failoverTimeoutMs
        return typeof limit === 'number' && (value as number) > limit
          ? `at most failoverTimeoutMs (${limit} ms)`
          : undefined
      },
    },
    failureDetectionCount: {
      check: integer(1, 100),
      default: 2,
      example: '2',
    },
  })
