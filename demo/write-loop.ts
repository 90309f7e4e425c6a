/**
 * A steady write loop: one insert every `intervalMs`, each with the next id. Records when each
 * write was acknowledged, what errors came back, and re-runs a write after FailoverSuccessError
 * (postgres-ha's contract), counting a duplicate-key answer to the re-run as "it had committed".
 *
 * @module
 */
import type postgres from 'postgres'

export interface WriteLoopStats {
  acknowledged: Set<number>
  /** Epoch ms of every acknowledged write, in order. */
  ackTimes: number[]
  errors: Map<string, number>
  firstErrorAt: number | undefined
}

export interface WriteLoop {
  readonly stats: WriteLoopStats
  /** First acknowledgement at or after `afterMs` (epoch ms), once there is one. */
  firstAckAfter(afterMs: number): number | undefined
  stop(): Promise<void>
}

const now = () => performance.timeOrigin + performance.now()

/** Starts writing into `table` (created by the caller with an integer primary key `id`). */
export function startWriteLoop(sql: postgres.Sql, table: string, intervalMs = 10): WriteLoop {
  const stats: WriteLoopStats = {
    acknowledged: new Set(),
    ackTimes: [],
    errors: new Map(),
    firstErrorAt: undefined,
  }
  let running = true
  const done = (async () => {
    for (let id = 1; running && id < 10_000_000; id++) {
      for (let attempt = 0; running && attempt < 1_000; attempt++) {
        try {
          await sql`insert into ${sql(table)} (id) values (${id})`
          stats.acknowledged.add(id)
          stats.ackTimes.push(now())
          break
        } catch (error) {
          const e = error as { code?: string; constructor: { name: string } }
          if (e.code === '23505' && attempt > 0) {
            // The first try had committed after all: count it once, move on.
            stats.acknowledged.add(id)
            stats.ackTimes.push(now())
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
    firstAckAfter(afterMs) {
      return stats.ackTimes.find((t) => t >= afterMs)
    },
    async stop() {
      running = false
      await done
    },
  }
}
