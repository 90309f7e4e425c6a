/**
 * The table the write loops insert into, and the end-of-trial check that every acknowledged write
 * is there exactly once. `seq` is the primary key, not `id`, so that a write replayed by a driver
 * would show up as a duplicate instead of being refused.
 *
 * @module
 */
import postgres from 'postgres'
import type { WriteRecord } from './write-loop.ts'

/** Creates `bench_writes` (idempotent). `inst` records which instance committed each row. */
export async function createLedger(url: string): Promise<void> {
  await withSql(url, (sql) =>
    sql.unsafe(`create table if not exists bench_writes (
      seq bigint generated always as identity primary key,
      id bigint not null,
      trial int not null,
      client text not null,
      inst text not null default pg_catalog.aurora_db_instance_identifier(),
      at timestamptz not null default clock_timestamp()
    )`),
  )
}

/** What the check found for one trial's writes. */
export interface LedgerCheck {
  acknowledged: number
  /** Acknowledged but absent: must be 0. */
  lost: number
  /** Stored more than once: must be 0. */
  duplicated: number
  /** Failed or unanswered writes that committed anyway (allowed: their outcome was unknown). */
  unacknowledgedCommitted: number
  /** Failed or unanswered writes that did not commit. */
  unacknowledgedAbsent: number
}

/**
 * Compares the loop's records with the table, read from `writerUrl` (the current writer, through
 * a fresh plain connection so that the client under test is not its own witness).
 *
 * @example
 * ```ts
 * const check = await verifyLedger(lab.url(writer), loop.records)
 * check.lost === 0 && check.duplicated === 0
 * ```
 */
export async function verifyLedger(writerUrl: string, records: readonly WriteRecord[]): Promise<LedgerCheck> {
  const ids = records.map((r) => r.id)
  const counts = new Map<number, number>()
  await withSql(writerUrl, async (sql) => {
    const rows =
      await sql`select id::int as id, count(*)::int as n from bench_writes where id = any(${ids}::bigint[]) group by id`
    for (const row of rows) counts.set(row.id as number, row.n as number)
  })
  const check: LedgerCheck = {
    acknowledged: 0,
    lost: 0,
    duplicated: 0,
    unacknowledgedCommitted: 0,
    unacknowledgedAbsent: 0,
  }
  for (const r of records) {
    const n = counts.get(r.id) ?? 0
    if (n > 1) check.duplicated++
    if (r.inst !== undefined) {
      check.acknowledged++
      if (n === 0) check.lost++
    } else if (n > 0) check.unacknowledgedCommitted++
    else check.unacknowledgedAbsent++
  }
  return check
}

async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, connect_timeout: 5, idle_timeout: 0, onnotice: () => {} })
  try {
    return await fn(sql)
  } finally {
    await sql.end({ timeout: 1 })
  }
}
