/**
 * `sql.ha.reader`: a second postgres.js `Sql` of the same client whose statements go to readers.
 * It shares everything with `sql` — the core client (topology monitor, host monitors, plugins,
 * credentials) and the per-host pools — and differs only in what it asks the core for: a reader,
 * with `readerFallback` and read-your-writes applied. `LISTEN` stays on the writer, where
 * notifications are sent.
 *
 * @module
 */

import type postgres from 'postgres'
import type { HaEvents } from '../../core/events.ts'
import type { ExecuteRequest, Executor } from '../../core/executor.ts'
import type { Logger } from '../../core/logger.ts'
import type { HostPools } from './pools.ts'
import { createSql, type HaSql } from './sql.ts'

/** What {@link createReaderSql} needs: the parts of the client's own `sql`. */
export interface ReaderSqlOptions<Ha> {
  readonly executor: Executor
  readonly pools: HostPools
  readonly base: postgres.Sql
  /** `sql.ha`; the composition attaches it once the api over this surface is built. */
  readonly ha?: Ha
  /** The client's events: the reader's LISTENs follow the writer too (see `CreateSqlOptions`). */
  readonly events?: Pick<HaEvents, 'on'> | undefined
  readonly logger?: Pick<Logger, 'warn'> | undefined
}

/** The reader `sql`, and how the client's `end()` drains it before closing the shared pools. */
export interface ReaderSql<Ha> {
  readonly sql: HaSql<Ha>
  /** Lets the reader's statements finish (or not, per `timeout`) and closes its reserved connections. */
  drain(options?: { timeout?: number | null }): Promise<void>
}

/**
 * The executor of `sql.ha.reader`: every request asks for a reader. Requests are frozen and
 * reused per statement text, so their reader versions are too.
 */
function readerExecutor(executor: Executor): Executor {
  const cache = new WeakMap<ExecuteRequest, ExecuteRequest>()
  const forReader = (request: ExecuteRequest): ExecuteRequest => {
    if (request.kind === 'listen') return request
    let r = cache.get(request)
    if (!r) {
      r = { ...request, targetRole: 'reader', forReader: true }
      if (Object.isFrozen(request)) cache.set(request, Object.freeze(r))
    }
    return r
  }
  return { execute: (request, attempt) => executor.execute(forReader(request), attempt) }
}

/**
 * Creates `sql.ha.reader` over a client's executor and pools.
 *
 * @example
 * ```ts
 * const reader = createReaderSql({ executor: client, pools, base: parsed.base, ha })
 * const rows = await reader.sql`select * from reports` // on a reader
 * ```
 */
export function createReaderSql<Ha>(input: ReaderSqlOptions<Ha>): ReaderSql<Ha> {
  // The pools belong to the client's `sql`: ending the reader surface must not close them.
  const pools: HostPools = { ...input.pools, endAll: () => Promise.resolve() }
  const sql = createSql({
    executor: readerExecutor(input.executor),
    pools,
    base: input.base,
    ha: input.ha as Ha,
    events: input.events,
    logger: input.logger,
  })
  const drain = sql.end.bind(sql)
  return { sql, drain }
}
