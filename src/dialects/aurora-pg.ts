/**
 * Aurora PostgreSQL: the topology comes from `aurora_replica_status()` on any instance, the same
 * statement the AWS Advanced Wrapper drivers send.
 *
 * @module
 */

import type { DbConnection } from '../core/connection-factory.ts'
import { type Dialect, isInstanceId, type TopologyContext } from '../core/dialect.ts'
import type { HostInfo } from '../core/host.ts'

/** The AWS drivers' topology statement, verbatim in meaning. */
export const AURORA_TOPOLOGY_QUERY =
  "SELECT server_id, CASE WHEN SESSION_ID OPERATOR(pg_catalog.=) 'MASTER_SESSION_ID' THEN TRUE ELSE FALSE END AS is_writer, " +
  'CPU, COALESCE(REPLICA_LAG_IN_MSEC, 0) AS lag, LAST_UPDATE_TIMESTAMP ' +
  'FROM pg_catalog.aurora_replica_status() ' +
  'WHERE EXTRACT(EPOCH FROM(pg_catalog.NOW() OPERATOR(pg_catalog.-) LAST_UPDATE_TIMESTAMP)) OPERATOR(pg_catalog.<=) 300 ' +
  "OR SESSION_ID OPERATOR(pg_catalog.=) 'MASTER_SESSION_ID' OR LAST_UPDATE_TIMESTAMP IS NULL"

interface AuroraRow {
  server_id: string
  is_writer: boolean
  lag: number | string | null
  last_update_timestamp: Date | string | null
}

function epochMs(value: Date | string | null): number | undefined {
  if (value === null) return undefined
  const ms = value instanceof Date ? value.getTime() : Date.parse(value)
  return Number.isNaN(ms) ? undefined : ms
}

/**
 * The Aurora PostgreSQL dialect.
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { dialect: 'aurora-pg' })
 * ```
 */
export const auroraPgDialect: Dialect = Object.freeze({
  name: 'aurora-pg' as const,
  async readTopology(conn: DbConnection, context: TopologyContext): Promise<HostInfo[]> {
    const readAt = Date.now()
    const rows = (await conn.query<AuroraRow>(AURORA_TOPOLOGY_QUERY)).filter((r) => {
      if (isInstanceId(r.server_id)) return true
      context.ignoreRow(
        `aurora_replica_status() reported an unusable server_id ${JSON.stringify(r.server_id)}`,
      )
      return false
    })
    // During a failover Aurora can briefly report two writers; like the AWS drivers, trust the
    // one updated most recently. No update time (Aurora 13.9+) is the instance read from: now.
    const updated = (r: AuroraRow) => epochMs(r.last_update_timestamp) ?? readAt
    const writers = rows.filter((r) => r.is_writer === true)
    const latestWriter = writers.reduce<AuroraRow | undefined>(
      (best, r) => (!best || updated(r) > updated(best) ? r : best),
      undefined,
    )
    const kept = rows.filter((r) => {
      if (r.is_writer !== true || r === latestWriter) return true
      // Not a confirmed reader either: it joins the topology once it reports as one.
      context.ignoreRow(
        `aurora_replica_status() reported two writers; using ${latestWriter!.server_id} (updated last), ignoring ${r.server_id}`,
      )
      return false
    })
    return kept.map((r) => ({
      ...context.hostPattern.toAddress(r.server_id, context.defaultPort),
      id: r.server_id,
      role: r === latestWriter ? 'writer' : 'reader',
      lagMs: r.lag === null ? undefined : Number(r.lag),
      lastUpdateMs: epochMs(r.last_update_timestamp),
    }))
  },
})
