/**
 * postgres-ha's plugins as the `plugins` option names them, with their options: the catalog the
 * composition hands to `parseOptions`. Nothing is registered at import.
 *
 * @module
 */
import type { HaPlugin } from '../core/plugin.ts'
import { type PluginCatalog, resolvePlugins as resolveFrom } from '../core/plugin-catalog.ts'
import { connectionTrackerPlugin } from './connection-tracker.ts'
import { failoverPlugin } from './failover/failover-plugin.ts'
import { failoverOptionSpecs } from './failover/options.ts'
import { hostMonitoringPlugin } from './host-monitoring/host-monitoring-plugin.ts'
import { hostMonitoringOptionSpecs } from './host-monitoring/options.ts'
import { iamOptionSpecs, iamPlugin } from './iam/mod.ts'
import { secretsManagerOptionSpecs, secretsManagerPlugin } from './secrets-manager/mod.ts'

/** The plugins enabled when `plugins` is not given, in order (outermost first). */
export const DEFAULT_PLUGINS = 'connectionTracker,failover,hostMonitoring'

/**
 * postgres-ha's named plugins. The AWS drivers' names that mean one of ours are aliases, so that
 * their plugin strings work unchanged.
 *
 * @example
 * ```ts
 * parseOptions(options, { driver: postgresJsOptions, plugins: builtInPlugins })
 * ```
 */
export const builtInPlugins: PluginCatalog = Object.freeze({
  defaults: DEFAULT_PLUGINS,
  entries: Object.freeze({
    connectionTracker: { create: connectionTrackerPlugin },
    failover: { create: failoverPlugin, options: failoverOptionSpecs },
    hostMonitoring: { create: hostMonitoringPlugin, options: hostMonitoringOptionSpecs },
    iam: { create: () => iamPlugin(), options: iamOptionSpecs },
    secretsManager: { create: () => secretsManagerPlugin(), options: secretsManagerOptionSpecs },
  }),
  aliases: Object.freeze({
    auroraConnectionTracker: 'connectionTracker',
    failover2: 'failover',
    efm: 'hostMonitoring',
    efm2: 'hostMonitoring',
  }),
})

/**
 * Turns the `plugins` option into instances of postgres-ha's plugins (and the user's objects), in order.
 *
 * @example
 * ```ts
 * resolvePlugins(['connectionTracker', 'failover']) // two fresh plugins
 * ```
 */
export function resolvePlugins(list: ReadonlyArray<string | HaPlugin>): HaPlugin[] {
  return resolveFrom(list, builtInPlugins)
}
