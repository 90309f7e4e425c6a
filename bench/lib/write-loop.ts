/**
 * The steady workload of the failover benchmarks: one single-row insert at a time, started every
 * `intervalMs` (immediately when the previous one took longer), each with a new id. Every write is
 * recorded with its start, its end, and the instance that committed it (or its error), so a trial
 * can find the first write on the new writer and check that no acknowledged write was lost.
 *
 * @module
 */
import type postgres from 'postgres'
import { addCounts, errorClass } from './errors.ts'
import { nowMs } from './report.ts'

/** One write of the loop; `endMs` is undefined while it is still pending (or hung). */
export interface WriteRecord {
  id: number
  startMs: number
  endMs?: number
  /** The instance that committed it (from the row's default), when acknowledged. */
  inst?: string
  /**
   * The server process (`pg_backend_pid()`) that ran it, when acknowledged: which of the pool's
   * connections carried it (a recovery's timeline shows how the writes spread over them).
   */
  pid?: number
  /** `errorClass` of its error, when it failed. */
  error?: string
}

/** Why a loop ended: stopped by its owner, one of its own bounds, or a throw outside a write. */
export type LoopEnd = 'stop' | 'time bound' | 'count bound' | `threw: ${string}`

/** A running loop. */
export interface WriteLoop {
  readonly records: readonly WriteRecord[]
  /** Why it ended (undefined while it runs), and when (epoch ms, the lab's clock). */
  readonly ended: { by: LoopEnd; atMs: number } | undefined
  /** Stops after the current write; gives up waiting for a hung write after `waitMs`. */
  stop(waitMs?: number): Promise<void>
}

/** Any postgres.js-shaped `sql` (plain postgres.js or postgres-ha). */
export type AnySql = postgres.Sql<any>

/** The options of {@link startWriteLoop}. */
export interface WriteLoopOptions {
  sql: AnySql
  /** Trial number stored with each row. */
  trial: number
  /** Who wrote it (`postgres-ha`, `postgres.js cluster`, ...), stored with each row. */
  client: string
  /** Gives each write its id; ids are unique across a whole run. */
  nextId: () => number
  intervalMs?: number
  /** The least pause after a failed write (default 0), so that a loop with no interval cannot spin on errors. */
  errorPauseMs?: number
  /** Hard bounds: the loop ends by itself after this long or this many writes. */
  maxMs: number
  maxWrites?: number
}

/**
 * Starts the loop; it runs until `stop()` or its bounds.
 *
 * @example
 * ```ts
 * const loop = startWriteLoop({ sql, trial: 1, client: 'postgres-ha', nextId: () => ++id, maxMs: 20_000 })
 * await lab.kill('writer')
 * await loop.stop()
 * ```
 */
export function startWriteLoop(options: WriteLoopOptions): WriteLoop {
  const {
    sql,
    trial,
    client,
    nextId,
    intervalMs = 10,
    errorPauseMs = 0,
    maxMs,
    maxWrites = Math.ceil(maxMs / intervalMs),
  } = options
  const records: WriteRecord[] = []
  let stopped = false
  let ended: { by: LoopEnd; atMs: number } | undefined
  const started = performance.now()
  const done = (async () => {
    while (!stopped && records.length < maxWrites && performance.now() - started < maxMs) {
      const record: WriteRecord = { id: nextId(), startMs: nowMs() }
      records.push(record)
      const t = performance.now()
      try {
        const [row] =
          await sql`insert into bench_writes (id, trial, client) values (${record.id}, ${trial}, ${client}) returning inst, pg_backend_pid() as pid`
        record.inst = row!.inst as string
        record.pid = row!.pid as number
      } catch (error) {
        record.error = errorClass(error)
      }
      record.endMs = nowMs()
      const wait = Math.max(intervalMs - (performance.now() - t), record.error ? errorPauseMs : 0)
      if (wait > 0 && !stopped) await new Promise((r) => setTimeout(r, wait))
    }
    const by: LoopEnd = stopped ? 'stop' : records.length >= maxWrites ? 'count bound' : 'time bound'
    ended = { by, atMs: nowMs() }
  })().catch((error: unknown) => {
    ended = { by: `threw: ${errorClass(error)}`, atMs: nowMs() }
  })
  return {
    records,
    get ended() {
      return ended
    },
    async stop(waitMs = 2_000) {
      stopped = true
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([done, new Promise((r) => (timer = setTimeout(r, waitMs)))])
      clearTimeout(timer)
    },
  }
}

/** What the callers of these writes saw: each error class with its count, and writes still hung. */
export function errorCounts(records: readonly WriteRecord[]): Record<string, number> {
  const errors: Record<string, number> = {}
  for (const r of records) if (r.error) addCounts(errors, { [r.error]: 1 })
  const pending = records.filter((r) => r.endMs === undefined).length
  if (pending) addCounts(errors, { 'no answer (hung)': pending })
  return errors
}
