/**
 * Picks the dialect of a cluster by the functions it has, read from `pg_proc` (a `pg_settings`
 * check like the AWS drivers' cannot see a lab's emulation, and `pg_proc` is what the topology
 * statements need anyway).
 *
 * @module
 */
import type { DbConnection } from '../core/connection-factory.ts'
import type { Dialect, DialectName } from '../core/dialect.ts'
import type { HostAddress } from '../core/host.ts'
import { auroraPgDialect } from './aurora-pg.ts'
import { patroniAnswers, patroniDialect } from './patroni.ts'
import { patroniSettingsOf } from './patroni-options.ts'
import { pgDialect } from './pg.ts'
import { rdsMultiAzPgDialect } from './rds-multi-az-pg.ts'

/** The statement that tells the dialects apart. */
export const DETECT_QUERY =
  'SELECT ' +
  "EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pg_catalog' AND p.proname = 'aurora_replica_status') AS aurora, " +
  "EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'rds_tools' AND p.proname = 'show_topology') AS multi_az"

const BY_NAME: Record<DialectName, Dialect> = {
  'aurora-pg': auroraPgDialect,
  'rds-multi-az-pg': rdsMultiAzPgDialect,
  pg: pgDialect,
  patroni: patroniDialect,
}

/** The dialect of a name. */
export function dialectByName(name: DialectName): Dialect {
  return BY_NAME[name]
}

/**
 * Detects the dialect of the cluster `conn` is connected to. Plain PostgreSQL whose host has a
 * Patroni REST API answering (`patroni.restPort`, or `patroni.urls`) is a Patroni cluster.
 *
 * @example
 * ```ts
 * const dialect = await detectDialect(conn) // auroraPgDialect on Aurora or the lab
 * ```
 */
export async function detectDialect(
  conn: DbConnection,
  options?: Readonly<Record<string, unknown>>,
  timeoutMs = 1000,
): Promise<Dialect> {
  const [row] = await conn.query<{ aurora: boolean; multi_az: boolean }>(DETECT_QUERY)
  if (row?.aurora) return auroraPgDialect
  if (row?.multi_az) return rdsMultiAzPgDialect
  const host: HostAddress = conn.host
  if (options && (await patroniAnswers(host, patroniSettingsOf(options), timeoutMs))) return patroniDialect
  return pgDialect
}
