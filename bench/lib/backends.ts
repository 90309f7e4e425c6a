/**
 * Server-side view of what a client holds: the application user's backends on every instance
 * of a lab, classified by the last statement each ran (`pg_stat_activity.query`).
 *
 * @module
 */
import postgres from 'postgres'
import type { Lab } from '../../lab/mod.ts'

/** Backends by kind: `monitoring` (topology and probe statements), `pool` (the caller's), `other`. */
export interface BackendCount {
  monitoring: number
  pool: number
  other: number
}

/** The statement the benchmark's clients run, so that their pool connections can be told apart. */
export const POOL_MARKER = 'bench-idle-pool'

const MONITORING =
  /aurora_replica_status|aurora_db_instance_identifier|pg_is_in_recovery|rds_tools|^select 1$/i

/**
 * Counts the lab user's client backends on every instance (this check's own excluded).
 *
 * @example
 * ```ts
 * const { monitoring, pool } = await countBackends(lab)
 * ```
 */
export async function countBackends(lab: Lab): Promise<BackendCount> {
  const status = await lab.status()
  const count: BackendCount = { monitoring: 0, pool: 0, other: 0 }
  for (const node of status.nodes.filter((n) => n.state === 'running')) {
    const sql = postgres(lab.url(node.id), { max: 1, connect_timeout: 5, onnotice: () => {} })
    try {
      const rows = await sql`select query from pg_stat_activity
        where usename = current_user and pid <> pg_backend_pid() and backend_type = 'client backend'`
      for (const { query } of rows) {
        const q = String(query ?? '').trim()
        if (q.includes(POOL_MARKER)) count.pool++
        else if (MONITORING.test(q)) count.monitoring++
        else count.other++
      }
    } finally {
      await sql.end({ timeout: 1 })
    }
  }
  return count
}
