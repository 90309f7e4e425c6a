/**
 * The one seam between the core and a database driver. The core never imports a driver: it is
 * handed a {@link Driver} already built, and reaches the database only through it.
 *
 * Built in two steps, so that nothing needs an object that does not exist yet: first the plugins
 * and their connect chain ({@link pluginConnect}), then the driver with that chain (it runs it for
 * every user connection it opens), then the core client with the driver and the same chain (for
 * its own topology, monitor and probe connections).
 *
 * @module
 */
import type { ConnectionFactory } from './connection-factory.ts'
import type { HostAddress } from './host.ts'

/**
 * What the core needs from a driver: connections of its own for a purpose, what errors mean, and
 * a handle on the user connections the driver keeps.
 *
 * @example
 * ```ts
 * const driver: Driver = createPostgresJsDriver({ parsed, connect: pluginConnect(plugins, runtime) })
 * const conn = await driver.connect({ host, purpose: 'probe', timeoutMs: 1000 })
 * if (driver.classify(error) === 'connection-lost') driver.dropHost(host, 'the writer moved')
 * ```
 */
export interface Driver extends ConnectionFactory {
  /**
   * Opens one connection for `request.purpose` (topology, monitor, probe) with the credentials in
   * the request (the core ran the connect plugins); rejects with a `connect-failed` or
   * `auth-failed` error.
   */
  connect: ConnectionFactory['connect']
  /** Classifies any error this driver raises (see `ErrorKind`). */
  classify: ConnectionFactory['classify']
  /**
   * Drops every user connection to `host` at once (pooled, reserved, listening); statements on
   * them reject. Returns false when there was nothing left to drop.
   */
  dropHost(host: HostAddress, reason: string): boolean
  /**
   * Opens one user connection to `host` now, if there is none, so that the first statement there
   * pays no connect, and logs in ahead as many more as `like` (the lost writer) had open at once,
   * for the pool's next connections; returns a release for when the failover is over, `kept` if
   * `host` became the writer (else what it opened closes, if unused).
   */
  warmHost(host: HostAddress, like?: HostAddress): (kept?: boolean) => void
  /** Open user connections to `host`. */
  connectionCount(host: HostAddress): number
  /** Hosts with user connections open. */
  connectedHosts(): HostAddress[]
  /** Logs new user connections in as `user` from now on (the connect plugins resolved another one, e.g. from a secret). */
  switchUser(user: string): void
}
