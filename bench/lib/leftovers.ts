/**
 * What a client left on the lab after its `end()`: the application user's client backends still
 * connected on every running instance, asked from the inside with a lab-admin connection. A
 * benchmark that ends its process itself (plain postgres.js keeps reconnect timers past its
 * `end()`, see bench/recovery.ts) first proves with this that postgres-ha's clients closed every
 * connection they opened, so that the forced exit hides no leak of the client under test.
 *
 * @module
 */
import postgres from 'postgres'
import { ADMIN_PASSWORD, ADMIN_USER } from '../../lab/instance.ts'
import type { Lab } from '../../lab/mod.ts'
import { sleep } from './report.ts'

/** A lab endpoint's URL with the lab's admin credentials. */
export function adminUrl(url: string): string {
  const u = new URL(url)
  u.username = ADMIN_USER
  u.password = ADMIN_PASSWORD
  return u.toString()
}

/**
 * The application user's client backends on the lab's running instances whose
 * `application_name` is not `exceptApplication`, by instance; polled until there are none or
 * `waitMs` passed (a backend exits a moment after its client closed the socket).
 *
 * @example
 * ```ts
 * await client.end()
 * const left = await backendsLeft(lab, { exceptApplication: 'bench plain postgres.js', waitMs: 2_000 })
 * // {} when the client closed everything
 * ```
 */
export async function backendsLeft(
  lab: Lab,
  options: { exceptApplication: string; waitMs: number },
): Promise<Record<string, number>> {
  const status = await lab.status()
  const nodes = status.nodes.filter((n) => n.state === 'running')
  const sqls = nodes.map((n) => ({
    id: n.id,
    sql: postgres(adminUrl(lab.url(n.id)), { max: 1, connect_timeout: 5, onnotice: () => {} }),
  }))
  const deadline = performance.now() + options.waitMs
  try {
    for (;;) {
      const left: Record<string, number> = {}
      for (const { id, sql } of sqls) {
        const [row] = await sql`select count(*)::int as n from pg_stat_activity
          where usename = ${status.user} and backend_type = 'client backend'
            and application_name is distinct from ${options.exceptApplication}`
        if (row!.n > 0) left[id] = row!.n as number
      }
      if (Object.keys(left).length === 0 || performance.now() >= deadline) return left
      await sleep(20)
    }
  } finally {
    await Promise.all(sqls.map((s) => s.sql.end({ timeout: 1 }).catch(() => {})))
  }
}
