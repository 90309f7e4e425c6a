/**
 * A steady write loop: one insert every `intervalMs`, each with the next id. Each insert asks the
 * server which instance committed it (`returning inst`, in the same statement), so that the demo
 * counts a client as writing again only once the new writer acknowledges it. Records what errors
 * came back, and re-runs a write after FailoverSuccessError (postgres-ha's contract), counting a
 * duplicate-key answer to the re-run as "it had committed" (acknowledged, instance unknown: it
 * proves nothing about recovery).
 *
 * @module
 */
import type postgres from 'postgres'
import { type AckRecord, type FaultMark, firstRecoveryWrite } from '../bench/lib/recovery.ts'

/** One acknowledged write. */
export interface DemoWrite extends AckRecord {
  id: number
  endMs: number
}

export interface WriteLoopStats {
  acknowledged: Set<number>
  /** Every acknowledged write, in order, with the instance that committed it when known. */
  acks: DemoWrite[]
  errors: Map<string, number>
  firstErrorAt: number | undefined
}

export interface WriteLoop {
  readonly stats: WriteLoopStats
  /** The first write the new writer acknowledged after the fault, once there is one. */
  firstRecovery(fault: FaultMark): DemoWrite | undefined
  stop(): Promise<void>
}

const now = () => performance.timeOrigin + performance.now()

/**
 * Creates `table` for the loop: the id, and the instance that committed the row.
 *
 * @example
 * ```ts
 * await createDemoTable(sql, 'demo_ha')
 * ```
 */
export async function createDemoTable(sql: postgres.Sql, table: string): Promise<void> {
  await sql`create table ${sql(table)} (
    id int primary key,
    inst text not null default pg_catalog.aurora_db_instance_identifier()
  )`
}

/** One insert; resolves with the instance that committed it. */
export async function insertReturningInstance(sql: postgres.Sql, table: string, id: number): Promise<string> {
  const [row] = await sql`insert into ${sql(table)} (id) values (${id}) returning inst`
  return row!.inst as string
}

/** Starts writing into `table` (made by {@link createDemoTable}). */
export function startWriteLoop(sql: postgres.Sql, table: string, intervalMs = 10): WriteLoop {
  const stats: WriteLoopStats = {
    acknowledged: new Set(),
    acks: [],
    errors: new Map(),
    firstErrorAt: undefined,
  }
  let running = true
  const done = (async () => {
    for (let id = 1; running && id < 10_000_000; id++) {
      for (let attempt = 0; running && attempt < 1_000; attempt++) {
        try {
          const inst = await insertReturningInstance(sql, table, id)
          stats.acknowledged.add(id)
          stats.acks.push({ id, endMs: now(), inst })
          break
        } catch (error) {
          const e = error as { code?: string; constructor: { name: string } }
          if (e.code === '23505' && attempt > 0) {
            // The first try had committed after all: count it once, move on.
            stats.acknowledged.add(id)
            stats.acks.push({ id, endMs: now() })
            break
          }
          // postgres.js connection errors are plain Errors with a code such as CONNECTION_CLOSED.
          const name = e.code ? `${e.constructor.name} ${e.code}` : e.constructor.name
          stats.errors.set(name, (stats.errors.get(name) ?? 0) + 1)
          stats.firstErrorAt ??= now()
          await new Promise((r) => setTimeout(r, intervalMs))
        }
      }
      await new Promise((r) => setTimeout(r, intervalMs))
    }
  })()
  return {
    stats,
    firstRecovery(fault) {
      return firstRecoveryWrite(stats.acks, fault)
    },
    async stop() {
      running = false
      await done
    },
  }
}
