/**
 * postgres-ha's options as a whole: the core's, the postgres.js driver's, the dialects' and the
 * built-in plugins' tables, handed to the core's `parseOptions` in one place.
 *
 * @module
 */
import type { CoreOptions, OptionParts, ParsedOptions } from './core/options.ts'
import { parseOptions as parseWith, refuseHaOptionsInUrl as refuseWith } from './core/options.ts'
import { type PatroniOptions, patroniOptionSpecs } from './dialects/patroni-options.ts'
import { postgresJsOptions } from './drivers/postgresjs/options.ts'
import type { FailoverOptions } from './plugins/failover/options.ts'
import type { HostMonitoringOptions } from './plugins/host-monitoring/options.ts'
import { builtInPlugins } from './plugins/mod.ts'

/**
 * High-availability options, accepted beside every postgres.js option: the core's and the default
 * plugins' (`failover`, `hostMonitoring`) and the Patroni dialect's.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app@db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   failoverTimeoutMs: 60_000,
 *   plugins: 'connectionTracker,failover,hostMonitoring,iam',
 * })
 * ```
 */
export interface HaOptions extends CoreOptions, PatroniOptions, FailoverOptions, HostMonitoringOptions {}

/** The option tables `postgresHa()` merges with the core's. */
export const optionParts: OptionParts = Object.freeze({
  driver: postgresJsOptions,
  dialects: patroniOptionSpecs,
  plugins: builtInPlugins,
})

/**
 * Validates `postgresHa()`'s options (postgres.js's, the core's and every built-in plugin's) into
 * one frozen object; throws `InvalidOptionError` naming the first option at fault.
 *
 * @example
 * ```ts
 * const { ha, driver } = parseOptions({ max: 5, failoverTimeoutMs: 60_000 })
 * ```
 */
export function parseOptions(input: Record<string, unknown> | undefined): ParsedOptions {
  return parseWith(input, optionParts)
}

/** Refuses postgres-ha options written as query parameters of the connection URL (see the core's). */
export function refuseHaOptionsInUrl(url: string): void {
  refuseWith(url, optionParts)
}
