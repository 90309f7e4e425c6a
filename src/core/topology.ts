/**
 * A topology: which hosts make up a cluster and which one is the writer, as read at one moment.
 *
 * @module
 */
import { type HostInfo, hostKey } from './host.ts'

/**
 * One reading of a cluster's topology.
 *
 * @example
 * ```ts
 * const t = sql.ha.topology()
 * console.log(t?.writer?.host, t?.readers.length)
 * ```
 */
export interface Topology {
  /** The id of the cluster, shared by every client of it in the process. */
  readonly clusterId: string
  /** Every known host, writer first. */
  readonly hosts: readonly HostInfo[]
  /** The writer, if the cluster has one right now. */
  readonly writer: HostInfo | undefined
  /** The readers, in the order the database reported them. */
  readonly readers: readonly HostInfo[]
  /** When this reading was taken (epoch ms). */
  readonly readAtMs: number
  /** The host the reading came from. */
  readonly source: string
}

/** Builds a frozen {@link Topology} from a host list; the writer, if any, goes first. */
export function makeTopology(
  clusterId: string,
  hosts: readonly HostInfo[],
  readAtMs: number,
  source: string,
): Topology {
  const writer = hosts.find((h) => h.role === 'writer')
  const readers = hosts.filter((h) => h.role !== 'writer')
  return Object.freeze({
    clusterId,
    hosts: Object.freeze(writer ? [writer, ...readers] : readers),
    writer,
    readers: Object.freeze(readers),
    readAtMs,
    source,
  })
}

/** Whether two readings describe the same cluster shape (same hosts, same roles). */
export function sameShape(a: Topology | undefined, b: Topology | undefined): boolean {
  if (!a || !b) return a === b
  if (a.hosts.length !== b.hosts.length) return false
  const roles = new Map(a.hosts.map((h) => [hostKey(h), h.role]))
  return b.hosts.every((h) => roles.get(hostKey(h)) === h.role)
}
