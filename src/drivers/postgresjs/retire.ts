/**
 * Pools of hosts that left the cluster are closed: over many failovers and topology changes no
 * postgres.js instance, connection or timer accumulates for a host the client no longer uses.
 *
 * @module
 */
import { type HostAddress, hostKey } from '../../core/host.ts'
import type { Topology } from '../../core/topology.ts'
import type { HostPools } from './pools.ts'

/**
 * Closes (gracefully, see {@link HostPools.close}) the pool of every host that is neither in
 * `topology`, nor one the user listed, nor the current writer.
 *
 * @example
 * ```ts
 * client.events.on('topology', ({ topology }) => closeLeftHosts(pools, topology, initialHosts, client.writer()))
 * ```
 */
export function closeLeftHosts(
  pools: HostPools,
  topology: Topology,
  listed: readonly HostAddress[],
  writer: HostAddress | undefined,
): HostAddress[] {
  const keep = new Set([...topology.hosts, ...listed, ...(writer ? [writer] : [])].map(hostKey))
  const left = pools.hosts().filter((h) => !keep.has(hostKey(h)))
  for (const host of left) void pools.close(host).catch(() => {})
  return left
}
