/**
 * The options of the `failover` plugin.
 *
 * @module
 */
import { boolean, milliseconds } from '../../core/option-checks.ts'
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
  /**
   * Whether the failover hand-over logs sessions in ahead on each host the writer search reaches,
   * as many as the lost writer's pool had open at once, so that the new writer's pool does not
   * wait for logins after the failover (default `true`). Each counts against that server's
   * `max_connections` while the search runs: up to `max` − 1 per client on every host reached,
   * readers included. `false`: only the one hand-over connection per host, and the pool's other
   * connections log in after the failover (a slower ramp under load).
   */
  failoverLoginsAhead?: boolean
}

/** The `failover` plugin's options, resolved. */
export interface ResolvedFailoverOptions {
  readonly failoverTimeoutMs: number
  readonly failoverProbeIntervalMs: number
  readonly failoverLoginsAhead: boolean
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
  failoverLoginsAhead: {
    check: boolean,
    default: true,
    example: 'false',
  },
})
