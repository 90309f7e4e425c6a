/**
 * Lazy queries. A query made by our `sql` is a subclass of postgres.js's own `Query` (so it works
 * as a fragment inside any postgres.js query, and has every modifier postgres.js has), but instead
 * of a connection its handler is the executor: each attempt builds a fresh postgres.js query on the
 * pool of the host the core picked, copies the modifiers over, and reports `sent`/`delivered`.
 *
 * @module
 */
import type postgres from 'postgres'
import type { ExecuteContext } from '../../core/plugin.ts'
import { asCancelRequest } from './cancel-request.ts'
import { classify } from './classify.ts'
import { closingWords } from './last-words.ts'
import { guardTypeFetch } from './type-fetch.ts'

type RowCallback = (rows: unknown, result?: unknown) => unknown

/** The fields of a postgres.js `Query` (src/query.js) this driver reads or writes. */
export interface PgQuery extends Promise<unknown> {
  strings: readonly string[]
  args: unknown[]
  options: { simple?: boolean; prepare?: boolean; [key: string]: unknown }
  readonly tagged: boolean
  handler: QueryHandler
  canceller: ((q: PgQuery) => unknown) | null
  state: unknown
  active: boolean
  executed: boolean
  cancelled: unknown
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
  isRaw?: boolean | 'values'
  cursorRows?: number
  cursorFn?: RowCallback
  forEachFn?: RowCallback
  onlyDescribe?: boolean
  /** The stack postgres.js appends to the error of a failed statement. */
  readonly origin: string
  handle(): Promise<void>
  execute(): this
  cancel(): unknown
}

/** What postgres.js calls with a query to run; `debug` is read by the `Query` constructor. */
export type QueryHandler = ((q: PgQuery) => void) & { debug?: unknown }

type PgQueryClass = new (
  strings: readonly string[],
  args: unknown[],
  handler: QueryHandler,
  canceller: ((q: PgQuery) => unknown) | null,
  options?: Record<string, unknown>,
) => PgQuery

/** One of our lazy queries; `inner` is the postgres.js query of its latest attempt. */
export interface HaQuery extends PgQuery {
  inner: PgQuery | undefined
  /** Set by a reserved connection: which reservation runs it. */
  owner: unknown
  /** Where the caller made it (see {@link callerOrigin}). */
  callerOrigin: Error | undefined
}

/** A postgres.js query of one attempt; setting `state` (a connection took it) marks `ctx.sent`. */
interface AttemptQuery extends PgQuery {
  ctx: ExecuteContext | undefined
  outer: HaQuery | undefined
}

export interface QueryClasses {
  readonly HaQuery: new (
    strings: readonly string[],
    args: unknown[],
    handler: QueryHandler,
    canceller: (q: PgQuery) => unknown,
    options?: Record<string, unknown>,
  ) => HaQuery
  readonly AttemptQuery: new (
    strings: readonly string[],
    args: unknown[],
    handler: unknown,
    canceller: unknown,
    options?: Record<string, unknown>,
  ) => AttemptQuery
}

let classes: QueryClasses | undefined

/**
 * A query of `sql` that is never run. postgres.js exports neither its `Query` class nor a pool's
 * query handler; every query it makes carries both (`constructor`, `handler`, `canceller`).
 */
export function unrunQuery(sql: postgres.Sql): PgQuery {
  const empty = Object.assign([''], { raw: [''] }) as unknown as TemplateStringsArray
  return (sql as unknown as (s: TemplateStringsArray) => PgQuery)(empty)
}

/**
 * The query classes, derived once from postgres.js's `Query` (which the package does not export;
 * any query of any instance has it as constructor, and it is one class per module instance).
 */
export function queryClasses(base: postgres.Sql): QueryClasses {
  if (classes) return classes
  const Query = unrunQuery(base).constructor as PgQueryClass
  // Before any connection of ours opens: its type fetch must never become an unhandled rejection.
  guardTypeFetch(Query)

  class HaQueryImpl extends Query {
    declare inner: PgQuery | undefined
    declare owner: unknown
    declare callerOrigin: Error | undefined
    override get origin(): string {
      return this.callerOrigin?.stack ?? ''
    }
  }

  class AttemptQueryImpl extends Query {
    declare ctx: ExecuteContext | undefined
    declare outer: HaQuery | undefined
    // postgres.js appends a failed query's origin to the error's stack: the caller's, not ours.
    override get origin(): string {
      return this.outer?.callerOrigin?.stack ?? ''
    }
    declare _state: unknown
    declare _reject: (error: unknown) => void
    declare _redispatched: boolean
    // The Query constructor assigns `state = null`; a connection assigns its backend when it
    // executes the query, the moment the statement may reach the server.
    override get state(): unknown {
      return this._state
    }
    override set state(value: unknown) {
      this._state = value
      if (value !== null && this.ctx !== undefined) this.ctx.sent = true
    }
    // The Query constructor assigns its own `reject`; connections call it as `query.reject(e)`.
    override get reject(): (error: unknown) => void {
      return rejectUnlessStale
    }
    override set reject(fn: (error: unknown) => void) {
      this._reject = fn
    }
  }

  classes = {
    HaQuery: HaQueryImpl as unknown as QueryClasses['HaQuery'],
    AttemptQuery: AttemptQueryImpl as unknown as QueryClasses['AttemptQuery'],
  }
  return classes
}

/** The FATAL errors a session can end with mid-statement: shutdowns, and standby recovery conflicts. */
const STALE_CODES = new Set(['57P01', '57P02', '40001', '57P04'])

/**
 * postgres.js keeps the FATAL error of a connection that ended mid-statement (a shutdown 57P01, a
 * recovery conflict 40001 / 57P04) and raises it again on the first statement of the reconnected
 * connection (the statement was never executed: `state` is still null). Such a statement is handed
 * back to its pool once instead.
 *
 * The statement that was running gets a bare `CONNECTION_CLOSED` from postgres.js. When the server
 * said why (see last-words.ts) and the reason is not the host going away (a recovery conflict on a
 * live standby, a dropped database), it gets the server's error, as it would without postgres.js's
 * deferral: an ordinary error, not a lost connection to fail over from.
 */
function rejectUnlessStale(
  this: AttemptQuery & { _state: unknown; _reject(e: unknown): void; _redispatched?: boolean },
  error: unknown,
) {
  const code = (error as { code?: string })?.code ?? ''
  if (this._state === null && !this._redispatched && STALE_CODES.has(code)) {
    this._redispatched = true
    ;(this.handler as (q: PgQuery) => void)(this)
    return
  }
  const words = code === 'CONNECTION_CLOSED' && this._state !== null ? closingWords() : undefined
  this._reject(words && classify(words) === 'other' ? asStatementError(words, error) : error)
}

/** The server's error with the statement details postgres.js attached to its own (`query`, `parameters`...). */
function asStatementError(words: Error, original: unknown): Error {
  for (const key of ['query', 'parameters', 'args', 'types'])
    if (original && typeof original === 'object' && key in original)
      Object.defineProperty(words, key, {
        value: (original as Record<string, unknown>)[key],
        enumerable: false,
        configurable: true,
      })
  return words
}

/**
 * Builds the postgres.js query of one attempt of `q` on a pool (its handler and canceller) and
 * starts it. Modifiers (`values`, `raw`, `describe`, `simple`, `cursor`, `forEach`) carry over.
 */
export function attemptQuery(
  q: HaQuery,
  handler: unknown,
  canceller: unknown,
  ctx: ExecuteContext,
): Promise<unknown> {
  if (q.cancelled) return Promise.reject(cancelError())
  const { AttemptQuery } = classes!
  const inner = new AttemptQuery(q.strings, q.args, handler, canceller, q.options)
  inner.ctx = ctx
  inner.outer = q
  if (q.isRaw) inner.isRaw = q.isRaw
  if (q.onlyDescribe) inner.onlyDescribe = true
  if (q.cursorFn) {
    inner.cursorRows = q.cursorRows
    inner.cursorFn = (rows) => {
      ctx.delivered = true
      return q.cursorFn!(rows)
    }
  } else if (q.forEachFn) {
    inner.forEachFn = (row, result) => {
      ctx.delivered = true
      return q.forEachFn!(row, result)
    }
  }
  q.inner = inner
  return inner.execute()
}

/** Cancels `q`: on the server if it runs, or before it starts (postgres.js semantics). */
export function cancelQuery(q: PgQuery): unknown {
  const inner = (q as HaQuery).inner
  if (inner) return asCancelRequest(() => inner.cancel())
  q.cancelled = true
  q.reject(cancelError())
  return undefined
}

function cancelError(): Error {
  return Object.assign(new Error('57014: canceling statement due to user request'), { code: '57014' })
}

const origins = new WeakMap<readonly string[], Error>()

/**
 * The stack of the caller that made a query, for postgres.js to append to the error of a failed
 * statement (its "origin"): the caller's own frame, not ours (every attempt runs from the core,
 * far from the caller). As postgres.js does, one per template for tagged queries, and a full
 * stack for every query with `debug`; `above` is the function the caller called.
 */
export function callerOrigin(
  strings: readonly string[],
  tagged: boolean,
  debug: unknown,
  above: (...args: never[]) => unknown,
): Error | undefined {
  if (!debug) {
    if (!tagged) return undefined
    const cached = origins.get(strings)
    if (cached) return cached
  }
  const limit = Error.stackTraceLimit
  if (!debug) Error.stackTraceLimit = 1
  const origin = new Error()
  Error.captureStackTrace?.(origin, above)
  // Formats the stack now, while the limit holds (it is formatted lazily otherwise).
  void origin.stack
  Error.stackTraceLimit = limit
  if (!debug) origins.set(strings, origin)
  return origin
}
