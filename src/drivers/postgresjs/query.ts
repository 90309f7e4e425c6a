/**
 * Lazy queries. A query made by our `sql` is a subclass of postgres.js's own `Query` (so it works
 * as a fragment inside any postgres.js query, and has every modifier postgres.js has), but instead
 * of a connection its handler is the executor. On the fast path (the core's lane) its first
 * attempt is the query itself, handed to the pool of the writer: the connection settles it
 * through {@link OwnAttempt}, which tells the driver, and no second query is made. Any other
 * attempt builds a fresh postgres.js query on the pool of the host the core picked, copies the
 * modifiers over, and reports `sent`/`delivered`.
 *
 * @module
 */
import type postgres from 'postgres'
import type { ExecuteContext } from '../../core/plugin.ts'
import { asCancelRequest, markDeferredCancelRequest } from './cancel-request.ts'
import { classify } from './classify.ts'
import { closingWords } from './last-words.ts'
import { refuseStatementsOfLostTransactions } from './transaction-guard.ts'
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

/**
 * Whether `q` hands its rows over as they come (a cursor, `forEach`, or COPY's stream) rather than
 * all at once: such a query never takes the core's lane.
 */
export function streamsRows(q: PgQuery): boolean {
  return Boolean(q.cursorFn || q.forEachFn || (q as { streaming?: boolean }).streaming)
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

/**
 * The first attempt of a query run as itself on a pool (the fast path): the pool's handler and
 * canceller, and what to tell once a connection settles it. While it is set, the connection's
 * `resolve`/`reject` of the query go to `settled`/`failed`, and a connection taking the query
 * marks `ctx.sent`.
 */
export interface OwnAttempt {
  /**
   * Set once it failed: postgres.js may reject a query twice (a socket error, then its close), and
   * the query's own promise is the caller's now, settled by the driver once the plugins are done.
   */
  done: boolean
  readonly ctx: ExecuteContext
  readonly handler: QueryHandler
  readonly canceller: (q: PgQuery) => unknown
  settled(q: HaQuery, value: unknown): void
  failed(q: HaQuery, error: unknown): void
}

/** One of our lazy queries; `inner` is the postgres.js query of its latest attempt. */
export interface HaQuery extends PgQuery {
  inner: PgQuery | undefined
  /** Set while its first attempt runs as the query itself (see {@link OwnAttempt}). */
  own: OwnAttempt | undefined
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
  refuseStatementsOfLostTransactions(Query)

  class HaQueryImpl extends Query {
    declare inner: PgQuery | undefined
    declare owner: unknown
    declare callerOrigin: Error | undefined
    declare own: OwnAttempt | undefined
    declare _state: unknown
    declare _resolve: (value: unknown) => void
    declare _reject: (error: unknown) => void
    declare _redispatched: boolean
    override get origin(): string {
      return this.callerOrigin?.stack ?? ''
    }
    // As AttemptQuery's below, for a first attempt run as the query itself.
    override get state(): unknown {
      return this._state
    }
    override set state(value: unknown) {
      this._state = value
      if (value !== null && this.own !== undefined) this.own.ctx.sent = true
    }
    override get resolve(): (value: unknown) => void {
      const own = this.own
      return own === undefined ? this._resolve : own.done ? ignore : resolveOwn
    }
    override set resolve(fn: (value: unknown) => void) {
      this._resolve = fn
    }
    override get reject(): (error: unknown) => void {
      const own = this.own
      return own === undefined ? this._reject : own.done ? ignore : rejectOwn
    }
    override set reject(fn: (error: unknown) => void) {
      this._reject = fn
    }
  }
  // postgres.js's own `then`, without the detour through the type-fetch guard (type-fetch.ts) and
  // without a promise from `handle()` once the query runs.
  Object.defineProperty(HaQueryImpl.prototype, 'then', {
    configurable: true,
    writable: true,
    value(this: PgQuery, onFulfilled?: unknown, onRejected?: unknown) {
      if (!this.executed) void this.handle()
      return promiseThen.call(this, onFulfilled as never, onRejected as never)
    },
  })

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

const promiseThen = Promise.prototype.then

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
  const e = staleOr(this, error, this.handler as QueryHandler)
  if (e !== REDISPATCHED) this._reject(e)
}

/** A connection settled a query's own first attempt (see {@link OwnAttempt}). */
function resolveOwn(this: HaQuery, value: unknown) {
  const own = this.own!
  this.own = undefined
  own.settled(this, value)
}

function rejectOwn(this: HaQuery & { _state: unknown; _redispatched?: boolean }, error: unknown) {
  const own = this.own!
  const e = staleOr(this, error, own.handler)
  if (e === REDISPATCHED) return
  own.done = true
  own.failed(this, e)
}

function ignore() {}

const REDISPATCHED: unique symbol = Symbol('redispatched')

/** What a connection's rejection of `q` means (see {@link rejectUnlessStale}); `handler` is its pool's. */
function staleOr(
  q: PgQuery & { _state: unknown; _redispatched?: boolean },
  error: unknown,
  handler: QueryHandler,
): unknown {
  const code = (error as { code?: string })?.code ?? ''
  if (q._state === null && !q._redispatched && STALE_CODES.has(code)) {
    q._redispatched = true
    handler(q)
    return REDISPATCHED
  }
  const words = code === 'CONNECTION_CLOSED' && q._state !== null ? closingWords() : undefined
  return words && classify(words) === 'other' ? asStatementError(words, error) : error
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
 * Counts `q` (one of ours: a first attempt run as the query itself, or an attempt) as sent to a
 * session that is gone, though no connection took it: it must not run on another session.
 */
export function countAsSent(q: PgQuery): void {
  const ctx = (q as HaQuery).own?.ctx ?? (q as AttemptQuery).ctx
  if (ctx !== undefined) ctx.sent = true
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
  // Its first attempt runs as the query itself: the pool cancels it, as postgres.js would its own.
  const own = (q as HaQuery).own
  if (own && !own.done) {
    asCancelRequest(() => own.canceller(q))
    markDeferredCancelRequest(q)
    return null
  }
  const inner = (q as HaQuery).inner
  if (inner) {
    const cancelled = asCancelRequest(() => inner.cancel())
    markDeferredCancelRequest(inner)
    return cancelled
  }
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
