/**
 * RDS Multi-AZ DB cluster (PostgreSQL): the topology comes from `rds_tools.show_topology()` and the
 * writer from `rds_tools.multi_az_db_cluster_source_dbi_resource_id()`, as the AWS drivers read them.
 *
 * @module
 */
import type { DbConnection } from '../core/connection-factory.ts'
import { type Dialect, readRole, type TopologyContext } from '../core/dialect.ts'
import type { HostInfo } from '../core/host.ts'

/** Identifies this client in `show_topology`, as the AWS drivers do with theirs. */
export const MULTI_AZ_TOPOLOGY_QUERY = "SELECT id, endpoint, port FROM rds_tools.show_topology('postgres-ha')"
/** On a reader: the resource id of the writer it replicates from; null on the writer itself. */
export const MULTI_AZ_WRITER_QUERY =
  'SELECT multi_az_db_cluster_source_dbi_resource_id FROM rds_tools.multi_az_db_cluster_source_dbi_resource_id()'
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
    const rows = await conn.query<{ id: string; endpoint: string; port: number | string }>(
      MULTI_AZ_TOPOLOGY_QUERY,
    )
    return rows.map((r) => {
      const port = Number(r.port) || context.defaultPort
      // The endpoint column is the instance's own DNS name; a host pattern given explicitly wins.
      const address =
        context.hostPattern.source !== '?'
          ? context.hostPattern.toAddress(r.endpoint.split('.')[0]!, port)
          : { host: r.endpoint, port }
      return { ...address, id: r.id, role: r.id === writerId ? 'writer' : 'reader' }
    })
  },
  roleOf: readRole,
})
