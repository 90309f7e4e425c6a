/**
 * The postgres.js {@link Driver}: per-host pools for the user's statements (every connection
 * logged in through the connect plugins) and `max: 1` connections for the core's own work.
 *
 * @module
 */
import type { PluginConnect } from '../../core/connect-contract.ts'
import type { Driver } from '../../core/driver.ts'
import { createConnectionFactory } from './factory.ts'
import type { ParsedConnection } from './parse.ts'
import { createHostPools, type HostPools } from './pools.ts'
import { createSaltedPasswords } from './salted-passwords.ts'

/** Options of {@link createPostgresJsDriver}. */
export interface PostgresJsDriverOptions {
  readonly parsed: ParsedConnection
  /** The connect plugins' chain: every user connection logs in through it. */
  readonly connect: PluginConnect
  /** Connect timeout of user connections, in milliseconds (default: postgres.js's `connect_timeout`). */
  readonly connectTimeoutMs?: number | undefined
}

/** The postgres.js driver, with the pools the `sql` surfaces run on. */
export interface PostgresJsDriver extends Driver {
  readonly pools: HostPools
}

/**
 * Creates the driver of one client.
 *
 * @example
 * ```ts
 * const driver = createPostgresJsDriver({ parsed: parseConnection(url), connect: pluginConnect(plugins, runtime) })
 * const rows = await driver.pools.get(host)`select 1 as x`
 * ```
 */
export function createPostgresJsDriver(options: PostgresJsDriverOptions): PostgresJsDriver {
  const { parsed, connect, connectTimeoutMs } = options
  // One derivation of SCRAM's salted password for the pools and the internal connections alike.
  const salted = createSaltedPasswords()
  const pools = createHostPools({ parsed, connectHook: connect, connectTimeoutMs, salted })
  const factory = createConnectionFactory({ parsed, salted })
  return {
    pools,
    connect: (request) => factory.connect(request),
    classify: (error) => factory.classify(error),
    dropHost: (host, reason) => pools.abort(host, reason),
    warmHost: (host, like) => pools.warm(host, like),
    connectionCount: (host) => pools.connectionCount(host),
    connectedHosts: () => pools.hosts().filter((h) => pools.connectionCount(h) > 0),
    switchUser: (user) => pools.setUser(user),
  }
}
