/**
 * `clusterInstanceHostPattern`: how an instance id from the topology becomes an address, as in the
 * AWS drivers. `?` stands for the id; an optional `:port` overrides the client's port.
 *
 * @module
 */
import type { HostAddress } from './host.ts'

/** A parsed `clusterInstanceHostPattern`. */
export interface HostPattern {
  /** The pattern as written, e.g. `?.abc123.us-east-1.rds.amazonaws.com:5432`. */
  readonly source: string
  /** Maps an instance id to its endpoint; `defaultPort` is used when the pattern has none. */
  toAddress(instanceId: string, defaultPort: number): HostAddress
}

/**
 * Parses and checks a pattern; returns an error message instead of throwing so the option parser
 * can name the option.
 *
 * @example
 * ```ts
 * const p = parseHostPattern('?.abc.us-east-1.rds.amazonaws.com')
 * if (typeof p !== 'string') p.toAddress('db-1', 5432) // { host: 'db-1.abc.us-east-1.rds.amazonaws.com', port: 5432 }
 * ```
 */
export function parseHostPattern(source: string): HostPattern | string {
  const match = /^(?<host>[^:]+|\[[^\]]+\])(?::(?<port>\d{1,5}))?$/.exec(source.trim())
  if (!match?.groups) return 'expected "<host pattern>[:port]" such as "?.abc123.us-east-1.rds.amazonaws.com"'
  const hostPart = match.groups.host!
  const count = hostPart.split('?').length - 1
  if (count !== 1) return 'must contain exactly one "?" where the instance id goes'
  if (/[\s/@]/.test(hostPart)) return 'must be a host name, without spaces, "/" or "@"'
  if (/^[^?]*\?[^.]/.test(hostPart) && hostPart !== '?')
    return 'the "?" must be a whole DNS label (e.g. "?.domain")'
  const port = match.groups.port === undefined ? undefined : Number(match.groups.port)
  if (port !== undefined && (port < 1 || port > 65535)) return `port ${port} is out of range 1-65535`
  return Object.freeze({
    source,
    toAddress(instanceId: string, defaultPort: number): HostAddress {
      return { host: hostPart.replace('?', instanceId), port: port ?? defaultPort }
    },
  })
}
