// Superuser access to a lab's instances, for the read-scaling tests that pause replay or watch
// what a standby runs.
import postgres from 'postgres'
import type { Lab } from '../../lab/mod.ts'
import { asLabAdmin, eventually } from './ha.ts'

/** Superuser connections to a lab's instances (`pg_wal_replay_pause()` needs one); `end()` closes them all. */
export function labAdmins(lab: Lab): { admin(id: string): postgres.Sql; end(): Promise<void> } {
  const opened: postgres.Sql[] = []
  return {
    admin(id) {
      const sql = postgres(asLabAdmin(lab.url(id)), { max: 1, onnotice: () => {} })
      opened.push(sql)
      return sql
    },
    async end() {
      await Promise.all(opened.map((a) => a.end({ timeout: 0 })))
    },
  }
}

/**
 * Waits until the writer reports the replay lag of the lab standby `id` (application name `n12`
 * for 127.0.0.12) above `ms`; resolves with when it first saw it (`performance.now()`).
 */
export async function lagPassed(writer: postgres.Sql, id: string, ms: number): Promise<number> {
  let seenAt = 0
  await eventually(
    async () => {
      const [row] = await writer`select coalesce(extract(epoch from replay_lag) * 1000, 0)::float8 as ms
        from pg_stat_replication where application_name = ${`n${id.split('.').pop()}`}`
      if (Number(row?.ms) > ms) seenAt = performance.now()
      return seenAt > 0
    },
    10_000,
    `${id} lags ${ms} ms behind`,
  )
  return seenAt
}

/** Waits until a statement whose text is `LIKE like` is active on one of `standbys` (optionally in database `datname`). */
export async function runningOn(
  standbys: readonly postgres.Sql[],
  like: string,
  datname?: string,
): Promise<void> {
  await eventually(
    async () => {
      const running = await Promise.all(
        standbys.map(
          (a) => a`select 1 from pg_stat_activity where query like ${like} and state = 'active'
            and pid <> pg_backend_pid() and (${datname ?? null}::text is null or datname = ${datname ?? null})`,
        ),
      )
      return running.some((rows) => rows.length > 0)
    },
    5_000,
    `a statement like ${like} runs on a standby`,
  )
}
