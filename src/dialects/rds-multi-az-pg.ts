/**
 * RDS Multi-AZ DB cluster (PostgreSQL): the topology comes from `rds_tools.show_topology()` and the
 * writer from `rds_tools.multi_az_db_cluster_source_dbi_resource_id()`, as the AWS drivers read them.
 *
 * @module
 */
import type { DbConnection } from '../core/connection-factory.ts'
import { type Dialect, isInstanceId, type TopologyContext } from '../core/dialect.ts'
import { type HostInfo, sameHost } from '../core/host.ts'
import {
  identityOf,
  lagOf,
  probeOf,
  STANDBY_IDENTITY_QUERY,
  type StandbyIdentity,
  type WriterQuery,
} from './standby-lag.ts'

/** Identifies this client in `show_topology`, as the AWS drivers do with theirs. */
export const MULTI_AZ_TOPOLOGY_QUERY = "SELECT id, endpoint, port FROM rds_tools.show_topology('postgres-ha')"
/** On a reader: the resource id of the writer it replicates from; null on the writer itself. */
export const MULTI_AZ_WRITER_QUERY =
  'SELECT multi_az_db_cluster_source_dbi_resource_id FROM rds_tools.multi_az_db_cluster_source_dbi_resource_id()'
/** Whether the connected instance is a standby. */
const IN_RECOVERY_QUERY = 'SELECT pg_catalog.pg_is_in_recovery() AS standby'
/** The resource id of the connected instance. */
export const MULTI_AZ_HOST_ID_QUERY = 'SELECT dbi_resource_id FROM rds_tools.dbi_resource_id()'

/**
 * The RDS Multi-AZ DB cluster dialect.
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { dialect: 'rds-multi-az-pg' })
 * ```
 */
export const rdsMultiAzPgDialect: Dialect = Object.freeze({
  name: 'rds-multi-az-pg' as const,
  async readTopology(conn: DbConnection, context: TopologyContext): Promise<HostInfo[]> {
    const [writerRow] = await conn.query<{ multi_az_db_cluster_source_dbi_resource_id: string | null }>(
      MULTI_AZ_WRITER_QUERY,
    )
    let writerId = writerRow?.multi_az_db_cluster_source_dbi_resource_id ?? null
    if (!writerId) {
      const [own] = await conn.query<{ dbi_resource_id: string }>(MULTI_AZ_HOST_ID_QUERY)
      writerId = own?.dbi_resource_id ?? null
    }
    const all = await conn.query<{ id: unknown; endpoint: unknown; port: number | string | null }>(
      MULTI_AZ_TOPOLOGY_QUERY,
    )
    const rows = all.filter((r): r is { id: string; endpoint: string; port: number | string | null } => {
      const problem = !isInstanceId(r.id)
        ? `an unusable id ${JSON.stringify(r.id)}`
        : typeof r.endpoint !== 'string' || !isInstanceId(r.endpoint)
          ? `an unusable endpoint ${JSON.stringify(r.endpoint)} for ${r.id}`
          : undefined
      if (problem) context.ignoreRow(`rds_tools.show_topology() reported ${problem}`)
      return problem === undefined
    })
    const hosts: HostInfo[] = rows.map((r) => {
      const port = Number(r.port) || context.defaultPort
      // The endpoint column is the instance's own DNS name; a host pattern given explicitly wins.
      const address =
        context.hostPattern.source !== '?'
          ? context.hostPattern.toAddress(r.endpoint.split('.')[0]!, port)
          : { host: r.endpoint, port }
      return { ...address, id: r.id, role: r.id === writerId ? 'writer' : 'reader' }
    })
    return withLag(conn, context, hosts)
  },
})

/**
 * show_topology() has no lag: each standby's replay lag comes from the writer's
 * pg_stat_replication (over the topology connection when it is the writer's, else over the
 * writer's probe connection), matched by what the standby calls itself (see standby-lag.ts).
 */
async function withLag(conn: DbConnection, context: TopologyContext, hosts: HostInfo[]): Promise<HostInfo[]> {
  const writer = hosts.find((h) => h.role === 'writer')
  if (!writer || !hosts.some((h) => h.role === 'reader')) return hosts
  const self = hosts.find((h) => sameHost(h, conn.host))
  try {
    // Through the cluster endpoint (the usual URL) the connection is to no listed instance: the
    // endpoint leads to the writer, but only the server can say that it does now. On a standby
    // (a reader's URL, the reader endpoint, a cluster endpoint whose DNS has not moved yet) the
    // writer is asked over its probe connection: the standby's pg_stat_replication is empty, and
    // every reader's lag would go unknown.
    const onWriter =
      self?.role === 'writer' ||
      (!self && (await conn.query<{ standby: boolean }>(IN_RECOVERY_QUERY))[0]?.standby === false)
    const source: WriterQuery = onWriter ? conn : probeOf(context, writer)
    const identities = await Promise.all(
      hosts.map(
        (h): Promise<StandbyIdentity> =>
          h.role === 'writer'
            ? Promise.resolve({ role: 'writer', slotName: null, applicationName: null })
            : context
                .probe<Parameters<typeof identityOf>[0][number]>(h, STANDBY_IDENTITY_QUERY)
                .then(identityOf),
      ),
    )
    const lags = await lagOf(source, identities)
    return hosts.map((h, i) => (h.role === 'writer' ? h : { ...h, lagMs: lags[i] }))
  } catch {
    // Lag is an extra: a standby that does not answer, or no pg_monitor, leaves it unknown.
    return hosts
  }
}
