/**
 * Plugin names as written in the `plugins` option, and the plugins they make.
 *
 * @module
 */
import { InvalidOptionError } from '../core/errors.ts'
import { registerPluginOptions } from '../core/options.ts'
import type { HaPlugin } from '../core/plugin.ts'
import { connectionTrackerPlugin } from './connection-tracker.ts'
import { failoverPlugin } from './failover/failover-plugin.ts'
import { hostMonitoringPlugin } from './host-monitoring/host-monitoring-plugin.ts'
import { iamOptionSpecs, iamPlugin } from './iam/mod.ts'
import { secretsManagerOptionSpecs, secretsManagerPlugin } from './secrets-manager/mod.ts'

/** Makes a fresh plugin instance for one client. */
export type PluginMaker = () => HaPlugin

const makers = new Map<string, PluginMaker>([
  ['connectionTracker', connectionTrackerPlugin],
  ['failover', failoverPlugin],
  ['hostMonitoring', hostMonitoringPlugin],
  ['iam', () => iamPlugin()],
  ['secretsManager', () => secretsManagerPlugin()],
])

// Their options are validated with the rest even when the plugin is off, so a typo is caught early.
registerPluginOptions({ ...iamOptionSpecs, ...secretsManagerOptionSpecs })

/** The AWS drivers' names that mean one of ours, so that their plugin strings work unchanged. */
const ALIASES: Record<string, string> = {
  auroraConnectionTracker: 'connectionTracker',
  failover2: 'failover',
  efm: 'hostMonitoring',
  efm2: 'hostMonitoring',
}

/** Adds a named plugin (used by the optional plugins and by users who want a name for theirs). */
export function registerPlugin(name: string, maker: PluginMaker): void {
  makers.set(name, maker)
}

/** The names `plugins` accepts. */
export function knownPluginNames(): string[] {
  return [...makers.keys()]
}

/**
 * Turns the `plugins` option into plugin instances, in order.
 *
 * @example
 * ```ts
 * resolvePlugins(['connectionTracker', 'failover']) // two fresh plugins
 * ```
 */
export function resolvePlugins(list: ReadonlyArray<string | HaPlugin>): HaPlugin[] {
  return list.map((entry) => {
    if (typeof entry !== 'string') return entry
    const maker = makers.get(ALIASES[entry] ?? entry)
    if (!maker)
      throw new InvalidOptionError(
        'plugins',
        `Invalid option plugins: unknown plugin "${entry}"; known plugins are ${knownPluginNames().join(', ')} ` +
          `(the AWS drivers' ${Object.keys(ALIASES).join(', ')} are accepted too), or pass a plugin object.`,
      )
    return maker()
  })
}
