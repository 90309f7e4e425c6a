/**
 * Replication lag of plain streaming replicas, matched reliably: the writer's `pg_stat_replication`
 * names each standby by the `application_name` of its WAL receiver (and, with a slot, by the slot),
 * which is rarely the host name a client was given (the lab's `n12`, Patroni's member name,
 * `walreceiver` by default) and whose `client_addr` is often 127.0.0.1 or a NAT address. So each
 * standby is asked what it calls itself — its WAL receiver's slot and `application_name` — and
 * matched on that.
 *
 * @module
 */
import type { DbConnection } from '../core/connection-factory.ts'
import type { TopologyContext } from '../core/dialect.ts'
import type { HostAddress, HostRole } from '../core/host.ts'

/**
 * A host's role and, on a standby, how the writer knows it. `conninfo` is visible to superusers
 * and `pg_read_all_stats` (in `pg_monitor`); without it only the slot or `cluster_name` identify.
 */
export const STANDBY_IDENTITY_QUERY =
  'SELECT pg_catalog.pg_is_in_recovery() AS is_reader, w.slot_name, ' +
  "COALESCE(substring(w.conninfo from 'application_name=([^ ]+)'), " +
  "NULLIF(pg_catalog.current_setting('cluster_name'), ''), 'walreceiver') AS application_name " +
  'FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_stat_wal_receiver w ON true'

/** Each standby as the writer sees it, with its replay lag (0 when caught up and idle). */
export const REPLICATION_LAG_QUERY =
  'SELECT r.application_name, s.slot_name, ' +
  'COALESCE(EXTRACT(EPOCH FROM r.replay_lag) * 1000, 0)::float8 AS lag_ms ' +
  'FROM pg_catalog.pg_stat_replication r LEFT JOIN pg_catalog.pg_replication_slots s ON s.active_pid = r.pid'

/** What a host says of itself. */
export interface StandbyIdentity {
  readonly role: HostRole
  readonly slotName: string | null
  readonly applicationName: string | null
}

interface IdentityRow {
  is_reader: boolean
  slot_name: string | null
  application_name: string | null
}

/** Reads {@link STANDBY_IDENTITY_QUERY} rows into an identity. */
export function identityOf(rows: readonly IdentityRow[]): StandbyIdentity {
  const row = rows[0]
  if (!row) return { role: 'unknown', slotName: null, applicationName: null }
  return {
    role: row.is_reader ? 'reader' : 'writer',
    slotName: row.is_reader ? row.slot_name : null,
    applicationName: row.is_reader ? row.application_name : null,
  }
}

/** Asks the host behind `conn` who it is. */
export async function readIdentity(conn: DbConnection): Promise<StandbyIdentity> {
  return identityOf(await conn.query<IdentityRow>(STANDBY_IDENTITY_QUERY))
}

/** Where {@link lagOf} reads the writer's `pg_stat_replication`: its connection or a probe of it. */
export type WriterQuery = Pick<DbConnection, 'query'>

/**
 * The writer asked over its probe connection, for when the topology connection is on a standby
 * (whose `pg_stat_replication` is empty).
 */
export function probeOf(context: TopologyContext, writer: HostAddress): WriterQuery {
  return { query: <Row>(text: string) => context.probe<Row>(writer, text) }
}

/**
 * The writer's lag for each identity (`undefined` when it cannot be matched to exactly one
 * `pg_stat_replication` row: guessing would put another standby's lag on it).
 *
 * @example
 * ```ts
 * const lags = await lagOf(writerConn, [identityA, identityB]) // [0, 1234]
 * ```
 */
export async function lagOf(
  writer: WriterQuery,
  identities: readonly StandbyIdentity[],
): Promise<Array<number | undefined>> {
  if (!identities.some((i) => i.role === 'reader')) return identities.map(() => undefined)
  const rows = await writer.query<{ application_name: string; slot_name: string | null; lag_ms: number }>(
    REPLICATION_LAG_QUERY,
  )
  return identities.map((id) => {
    if (id.role !== 'reader') return undefined
    const bySlot = id.slotName ? rows.filter((r) => r.slot_name === id.slotName) : []
    const matches = bySlot.length > 0 ? bySlot : rows.filter((r) => r.application_name === id.applicationName)
    return matches.length === 1 ? Number(matches[0]!.lag_ms) : undefined
  })
}
