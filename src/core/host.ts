/**
 * Hosts as the core sees them: an address, and what the topology says about it.
 *
 * @module
 */

/** Where to connect: a host name or address and a port. */
export interface HostAddress {
  /** Host name or IP address. */
  readonly host: string
  /** TCP port. */
  readonly port: number
}

/** The role of a host in its cluster. */
export type HostRole = 'writer' | 'reader' | 'unknown'

/** Which hosts a client or a statement wants. */
export type TargetRole = 'writer' | 'reader' | 'any'

/**
 * A host of the cluster as the topology reports it.
 *
 * @example
 * ```ts
 * const writer: HostInfo = { host: '127.0.0.2', port: 5432, id: '127.0.0.2', role: 'writer' }
 * ```
 */
export interface HostInfo extends HostAddress {
  /** The instance id the database reports (Aurora `server_id`), when it has one. */
  readonly id?: string
  /** Writer, reader, or unknown when the host did not answer. */
  readonly role: HostRole
  /** Replication lag reported by the topology, in milliseconds. */
  readonly lagMs?: number
  /** The topology's own last-update time of this host (epoch ms), when reported. */
  readonly lastUpdateMs?: number
  /** Replication lag in bytes of WAL, when the source reports it (Patroni). */
  readonly lagBytes?: number
  /** A synchronous standby: it has every acknowledged commit, and is the one promoted (Patroni). */
  readonly synchronous?: boolean
}

/** The key under which a host is tracked: `host:port`. Hosts are equal when their keys are. */
export function hostKey(address: HostAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`
}

/** Whether two addresses denote the same endpoint. */
export function sameHost(a: HostAddress | undefined, b: HostAddress | undefined): boolean {
  return !!a && !!b && a.port === b.port && a.host.toLowerCase() === b.host.toLowerCase()
}
