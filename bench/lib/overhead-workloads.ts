/**
 * The overhead part's workloads (see `bench/overhead.ts`), in one place for the process that
 * compares the clients and for each client's own process (`client-process.ts`).
 *
 * @module
 */
import type { AnySql } from './write-loop.ts'

export interface Workload {
  /** Statements per operation (the transaction's three; begin and commit not counted). */
  statements: number
  /** Share of `--ops` per batch. */
  share: number
  run(sql: AnySql, i: number): Promise<unknown>
  /** Reported with the same figures, but without targets (none in the issue): why. */
  withoutTargets?: string
}

export const WORKLOADS: Record<string, Workload> = {
  'select $1': { statements: 1, share: 1, run: (sql, i) => sql`select ${i}::int as x` },
  insert: { statements: 1, share: 1, run: (sql, i) => sql`insert into bench_overhead (v) values (${i})` },
  'select 100 rows': {
    statements: 1,
    share: 1 / 2,
    run: (sql) => sql`select id, v, note from bench_rows order by id limit ${100}`,
  },
  transaction: {
    statements: 3,
    share: 1 / 3,
    run: (sql, i) =>
      sql.begin(async (tx) => {
        await tx`select ${i}::int as x`
        await tx`insert into bench_overhead (v) values (${i})`
        await tx`select count(*) from bench_rows where id <= ${i % 100}`
      }),
  },
  'reserved select (Kysely)': {
    statements: 1,
    share: 1,
    // kysely-postgres-js's executeQuery: a reservation per query, its text through unsafe().
    run: async (sql, i) => {
      const reserved = await sql.reserve()
      try {
        return await reserved.unsafe('select $1::int as x', [i])
      } finally {
        reserved.release()
      }
    },
    withoutTargets:
      "kysely-postgres-js's pattern for every Kysely query (reserve, unsafe(text, params), release): " +
      "reported beside the issue's four workloads with the same figures; the issue defines no target " +
      'for it, so it is not in targets, targetNoise, targetsMet or targetsDecided',
  },
}

/** The tables the workloads read and write, made once before any client runs them. */
export async function createWorkloadTables(sql: AnySql): Promise<void> {
  await sql`create table if not exists bench_overhead (id bigint generated always as identity primary key, v int)`
  await sql`create table if not exists bench_rows (id int primary key, v int, note text)`
  await sql`insert into bench_rows select g, g * 7, 'row number ' || g from generate_series(1, 100) g on conflict do nothing`
}
