/**
 * The plugins a client can name in its `plugins` option. The core holds no list of its own: the
 * composition hands it a catalog (postgres-ha's is in `src/plugins/mod.ts`).
 *
 * @module
 */
import { InvalidOptionError } from './errors.ts'
import type { OptionTable } from './option-spec.ts'
import type { HaPlugin } from './plugin.ts'

/** A plugin that can be named: how to make one, and the options it reads. */
export interface PluginEntry {
  /** Makes a fresh instance for one client. */
  create(): HaPlugin
  /** The plugin's options, validated by `parseOptions` with the rest. */
  readonly options?: OptionTable
}

/**
 * The named plugins.
 *
 * @example
 * ```ts
 * const catalog: PluginCatalog = {
 *   defaults: 'audit',
 *   entries: { audit: { create: auditPlugin, options: auditOptionSpecs } },
 *   aliases: { audit2: 'audit' },
 * }
 * ```
 */
export interface PluginCatalog {
  /** The `plugins` option when it is not given. */
  readonly defaults: string
  readonly entries: Readonly<Record<string, PluginEntry>>
  /** Other names for entries (the AWS drivers' names). */
  readonly aliases: Readonly<Record<string, string>>
}

/** The entry a name (or alias) stands for. */
export function catalogEntry(catalog: PluginCatalog, name: string): PluginEntry | undefined {
  const entries = catalog.entries
  const key = catalog.aliases[name] ?? name
  return Object.hasOwn(entries, key) ? entries[key] : undefined
}

/** The error for a name the catalog does not know. */
export function unknownPlugin(catalog: PluginCatalog, name: string): InvalidOptionError {
  return new InvalidOptionError(
    'plugins',
    `Invalid option plugins: unknown plugin "${name}"; known plugins are ${Object.keys(catalog.entries).join(', ')} ` +
      `(the AWS drivers' ${Object.keys(catalog.aliases).join(', ')} are accepted too), or pass a plugin object.`,
  )
}

/**
 * Turns the `plugins` option into plugin instances, in order.
 *
 * @example
 * ```ts
 * resolvePlugins(['audit', myPlugin], catalog) // a fresh audit plugin, then mine
 * ```
 */
export function resolvePlugins(list: ReadonlyArray<string | HaPlugin>, catalog: PluginCatalog): HaPlugin[] {
  return list.map((entry) => {
    if (typeof entry !== 'string') return entry
    const found = catalogEntry(catalog, entry)
    if (!found) throw unknownPlugin(catalog, entry)
    return found.create()
  })
}
