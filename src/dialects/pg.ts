/**
 * Plain PostgreSQL streaming replication (self-hosted, Patroni, ...): the hosts are the ones listed
 * in the connection string, each asked for its own role; the writer's `pg_stat_replication` adds
 * replication lag where a standby can be matched by name or address.
 *
 * @module
 */
import type { DbConnection } from '../core/connection-factory.ts'
import { type Dialect, readRole, type TopologyContext } from '../core/dialect.ts'
import { type HostInfo, type HostRole, sameHost } from '../core/host.ts'

/** Replicas as the writer sees them. */
export const PG_REPLICATION_QUERY =
  'SELECT application_name, host(client_addr) AS client_addr, ' +
  'COALESCE(EXTRACT(EPOCH FROM replay_lag) * 1000, 0)::float8 AS lag_ms FROM pg_catalog.pg_stat_replication'

/**
 * The plain streaming-replication dialect.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app@db1:5432,db2:5432,db3:5432/app', { dialect: 'pg' })
 * ```
 */
export const pgDialect: Dialect = Object.freeze({
  name: 'pg' as const,
  async readTopology(conn: DbConnection, context: TopologyContext): Promise<HostInfo[]> {
    const own = await readRole(conn)
    const roles = await Promise.all(
      context.initialHosts.map(
        (h): Promise<HostRole> =>
          sameHost(h, conn.host)
            ? Promise.resolve(own)
            : context.probeRole(h).catch(() => 'unknown' as const),
      ),
    )
    const lagByName = new Map<string, number>()
    if (own === 'writer') {
      const rows = await conn.query<{ application_name: string; client_addr: string | null; lag_ms: number }>(
        PG_REPLICATION_QUERY,
      )
      for (const r of rows) {
        if (r.application_name) lagByName.set(r.application_name, Number(r.lag_ms))
        if (r.client_addr) lagByName.set(r.client_addr, Number(r.lag_ms))
      }
    }
    return context.initialHosts.map((h, i) => ({
      host: h.host,
      port: h.port,
      id: h.host,
      role: roles[i]!,
      lagMs: roles[i] === 'writer' ? 0 : lagByName.get(h.host),
    }))
  },
  roleOf: readRole,
})
