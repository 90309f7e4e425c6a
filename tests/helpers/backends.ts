import postgres from 'postgres'
import type { Lab } from '../../lab/mod.ts'

/** Connections of the lab's application user on each running instance, not counting the one asking. */
export async function appBackends(lab: Lab): Promise<Record<string, string[]>> {
  const status = await lab.status()
  const found: Record<string, string[]> = {}
  for (const node of status.nodes.filter((n) => n.state === 'running' && n.fault === 'none')) {
    const sql = postgres(lab.url(node.id), { max: 1, connect_timeout: 5, onnotice: () => {} })
    try {
      const rows = await sql`
        select pid, state, wait_event, left(query, 80) as query from pg_stat_activity
        where usename = current_user and pid <> pg_backend_pid() and backend_type = 'client backend'`
      found[node.id] = rows.map((r) => `pid ${r.pid} ${r.state} wait=${r.wait_event} ${r.query}`)
    } finally {
      await sql.end({ timeout: 1 })
    }
  }
  return found
}

/** Whether no instance has a connection of the application user left. */
export function noneLeft(found: Record<string, string[]>): boolean {
  return Object.values(found).every((list) => list.length === 0)
}
