/**
 * The options of the `failover` plugin.
 *
 * @module
 */
import { milliseconds } from '../../core/option-checks.ts'
import type { OptionSpec } from '../../core/option-spec.ts'

/**
 * Options of the `failover` plugin.
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { failoverTimeoutMs: 60_000 })
 * ```
 */
export interface FailoverOptions {
  /** Give up failover after this long with `FailoverFailedError` (default 300000 ms, as the AWS drivers; 30000-60000 recommended). */
  failoverTimeoutMs?: number
  /** Interval between rounds of writer probes during failover (default 20 ms). */
  failoverProbeIntervalMs?: number
}

/** The `failover` plugin's options, resolved. */
export interface ResolvedFailoverOptions {
  readonly failoverTimeoutMs: number
  readonly failoverProbeIntervalMs: number
}

/** Specs of the `failover` plugin's options. */
export const failoverOptionSpecs: Readonly<Record<keyof FailoverOptions, OptionSpec>> = Object.freeze({
  failoverTimeoutMs: {
    check: milliseconds(1),
    default: 300_000,
    example: '60000',
  },
  failoverProbeIntervalMs: {
    check: milliseconds(1, 60_000),
    default: 20,
    example: '20',
  },
})
