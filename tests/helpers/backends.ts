import postgres from 'postgres'
import type { Lab } from '../../lab/mod.ts'

/** Connections of the lab's application user on each running instance, not counting the one asking. */
export async function appBackends(lab: Lab): Promise<Record<string, number>> {
  const status = await lab.status()
  const counts: Record<string, number> = {}
  for (const node of status.nodes.filter((n) => n.state === 'running' && n.fault === 'none')) {
    const sql = postgres(lab.url(node.id), { max: 1, connect_timeout: 5, onnotice: () => {} })
    try {
      const [row] = await sql`
        select count(*)::int as n from pg_stat_activity
        where usename = current_user and pid <> pg_backend_pid() and backend_type = 'client backend'`
      counts[node.id] = row!.n as number
    } finally {
      await sql.end({ timeout: 1 })
    }
  }
  return counts
}
