/**
 * The postgres.js-shaped `sql` of a client: every statement, transaction, reserved connection and
 * listener goes through the core's executor, which picks the host; the work itself runs on the
 * per-host postgres.js pools.
 *
 * @module
 */

import postgres from 'postgres'
import type { HaEvents } from '../../core/events.ts'
import type { Attempt, ExecuteRequest, Executor, Lane } from '../../core/executor.ts'
import type { HostAddress } from '../../core/host.ts'
import type { Logger } from '../../core/logger.ts'
import type { ExecuteContext, Precheck } from '../../core/plugin.ts'
import { startTimer, stopTimer } from '../../runtime/mod.ts'
import { createCapacity } from './capacity.ts'
import { postgresJsError } from './errors.ts'
import { makeSqlFunction } from './helpers.ts'
import { openLargeObject } from './large-object.ts'
import { createListener } from './listen.ts'
import type { HostPools } from './pools.ts'
import {
  attemptQuery,
  cancelQuery,
  type HaQuery,
  type OwnAttempt,
  type PgQuery,
  type QueryHandler,
  streamsRows,
  unrunQuery,
} from './query.ts'
import { createReserve } from './reserve.ts'
import { createSubscriber } from './subscribe.ts'
import { beginGuarded, transactionGuard } from './transaction-guard.ts'

/**
 * The `sql` a client returns: a postgres.js `Sql` (so Drizzle and Kysely accept it as it is)
 * plus `ha`, the client's high-availability API.
 */
// biome-ignore lint/complexity/noBannedTypes: postgres.js's own default for `Sql<TTypes>`
export type HaSql<Ha = unknown, TTypes extends Record<string, unknown> = {}> = postgres.Sql<TTypes> & {
  readonly ha: Ha
}

/** What {@link createSql} needs. */
export interface CreateSqlOptions<Ha> {
  /** Runs every unit of work through the plugin pipeline on the host the core picks. */
  readonly executor: Executor
  readonly pools: HostPools
  /** A postgres.js instance on the client's options that never connects (`ParsedConnection.base`). */
  readonly base: postgres.Sql
  /** Attached as `sql.ha`. */
  readonly ha: Ha
  /** Called once by `sql.end()` after every connection is closed (stop plugins, release the monitor). */
  readonly onEnd?: (() => void | Promise<void>) | undefined
  /** Called once when `sql.end()` starts, before any connection is closed (the core stops failing over). */
  readonly onEnding?: (() => void) | undefined
  /**
   * Ends another surface over the same pools (the reader `sql`): started by `sql.end()` at once,
   * so that both stop taking statements in the same tick, and awaited before the pools close.
   */
  readonly alongside?: ((options: { timeout?: number | null } | undefined) => Promise<void>) | undefined
  /**
   * The client's events: when the writer moves, every `sql.listen` channel and `sql.subscribe`
   * subscriber moves to the host the core now gives.
   */
  readonly events?: Pick<HaEvents, 'on'> | undefined
  /** Where a failed re-listen or re-subscribe is reported. */
  readonly logger?: Pick<Logger, 'warn'> | undefined
}

const requests = new WeakMap<readonly string[], ExecuteRequest>()
const TRANSACTION: ExecuteRequest = Object.freeze({
  kind: 'transaction',
  inTransaction: true,
  description: 'begin',
})

function requestOf(q: PgQuery): ExecuteRequest {
  // A cursor or forEach hands rows over as they come: its result cannot be thrown away unseen.
  const discardable = !q.cursorFn && !q.forEachFn
  if (!q.tagged) return { kind: 'statement', description: q.strings[0] ?? '', discardable }
  let request = requests.get(q.strings)
  if (!request) {
    request = Object.freeze({ kind: 'statement', description: q.strings.join('$?'), discardable: true })
    requests.set(q.strings, request)
  }
  return discardable ? request : { ...request, discardable }
}

/**
 * Creates the `sql` of a client.
 *
 * @example
 * ```ts
 * const parsed = parseConnection(url)
 * const pools = createHostPools({ parsed, connectHook })
 * const sql = createSql({ executor, pools, base: parsed.base, ha })
 * const [row] = await sql`select ${1}::int as x`
 * ```
 */
export function createSql<Ha>(input: CreateSqlOptions<Ha>): HaSql<Ha> {
  const { executor, pools, base, ha, onEnd, onEnding, alongside } = input
  let ended = false
  let ending: Promise<void> | undefined
  // Executions under way, so that `end()` lets them finish first: how to reject each, and whether
  // postgres.js has it now. When `end({ timeout })` is up, postgres.js destroys what it has, with
  // its own errors; what is still ours (waiting for a connection, a failover, a first topology
  // read) is destroyed here, as postgres.js destroys its queue.
  const pending = new Map<(error: unknown) => void, boolean>()
  // Statements whose first attempt runs on the core's lane: with postgres.js from the start, so a
  // count is enough (no map entry per statement); a failed one joins `pending`.
  let onLanes = 0
  let drained: (() => void) | undefined
  const isEnded = () => ended
  // What postgres.js raises itself after end(): code written against it branches on these codes.
  const host0 = String(pools.options.host[0] ?? 'localhost')
  const port0 = Number(pools.options.port[0] ?? 5432)
  const endedError = () => postgresJsError('CONNECTION_ENDED', host0, port0)
  const destroyedError = () => postgresJsError('CONNECTION_DESTROYED', host0, port0)

  const enter = (reject: (error: unknown) => void) => {
    pending.set(reject, false)
  }
  /** Runs one attempt with postgres.js owning the work meanwhile. */
  const handOver = <T>(reject: (error: unknown) => void, attempt: () => Promise<T>): Promise<T> => {
    if (!pending.has(reject)) return attempt()
    pending.set(reject, true)
    return attempt().catch((error: unknown) => {
      if (pending.has(reject)) pending.set(reject, false)
      throw error
    })
  }
  const leave = (reject: (error: unknown) => void) => {
    if (pending.delete(reject) && pending.size === 0 && onLanes === 0 && drained) drained()
  }
  /** Work on the lane settled: its connection is free again. */
  const offLane = () => {
    onLanes--
    capacity.done()
    if (onLanes === 0 && pending.size === 0 && drained) drained()
  }

  const capacity = createCapacity(Math.max(1, Number(pools.options.max) || 1))

  /** One attempt of `q` on `host`: a fresh postgres.js query on that host's pool. */
  const attemptOf =
    (q: HaQuery, reject: (error: unknown) => void) =>
    (host: HostAddress, ctx: ExecuteContext): Promise<unknown> => {
      const entry = pools.entry(host)
      const drops = entry.drops ?? 0
      const precheck = ctx.precheck
      return handOver(reject, () =>
        (precheck
          ? attemptAfter(precheck, entry, q, ctx)
          : attemptQuery(q, entry.handler, entry.canceller, ctx)
        ).then(undefined, (error) => {
          // A drop by postgres-ha says so, whatever postgres.js made of it.
          throw pools.explain(host, drops, error)
        }),
      )
    }
  const settle = (q: PgQuery, reject: (error: unknown) => void, value: unknown) => {
    capacity.done()
    leave(reject)
    q.resolve(value)
  }
  const fail = (q: PgQuery, reject: (error: unknown) => void, error: unknown) => {
    capacity.done()
    leave(reject)
    q.reject(error)
  }
  const viaChain = (q: PgQuery, reject: (error: unknown) => void) => {
    executor.execute(requestOf(q), attemptOf(q as HaQuery, reject)).then(
      (value) => settle(q, reject, value),
      (error) => fail(q, reject, error),
    )
  }

  /**
   * The fast path: the core's lane is open, so the query itself is handed to the writer's pool,
   * with no promise of ours in between (see {@link OwnAttempt}). A failure carries on through the
   * plugins as a failed first attempt of the chain would.
   */
  class LaneAttempt implements OwnAttempt {
    done = false
    readonly ctx: ExecuteContext
    constructor(
      readonly lane: Lane,
      readonly reject: (error: unknown) => void,
      readonly handler: QueryHandler,
      readonly canceller: (q: PgQuery) => unknown,
      readonly drops: number,
    ) {
      this.ctx = lane.ctx
    }
    settled(q: HaQuery, value: unknown): void {
      this.lane.settled()
      offLane()
      q.resolve(value)
    }
    failed(q: HaQuery, error: unknown): void {
      onLanes--
      enter(this.reject)
      afterLane(q, this.reject, this.lane, pools.explain(this.lane.host, this.drops, error))
    }
  }
  const onLane = (q: HaQuery, reject: (error: unknown) => void, lane: Lane) => {
    let entry: ReturnType<typeof pools.entry>
    try {
      entry = pools.entry(lane.host)
    } catch (error) {
      enter(reject)
      afterLane(q, reject, lane, error)
      return
    }
    onLanes++
    const handler = entry.handler as QueryHandler
    q.own = new LaneAttempt(
      lane,
      reject,
      handler,
      entry.canceller as (q: PgQuery) => unknown,
      entry.drops ?? 0,
    )
    // As in postgres.js, the query is active once a connection runs it: the pool's cancel of a
    // query not yet running must not cancel the statement before it on the same connection.
    q.active = false
    handler(q)
  }
  const afterLane = (q: HaQuery, reject: (error: unknown) => void, lane: Lane, error: unknown) => {
    lane.failed(error, attemptOf(q, reject)).then(
      (value) => {
        q.own = undefined
        settle(q, reject, value)
      },
      (error) => {
        q.own = undefined
        fail(q, reject, error)
      },
    )
  }

  const handler: QueryHandler = (q) => {
    if (ended) return q.reject(endedError())
    q.active = true
    const reject = q.reject
    if (capacity.tryStatement()) {
      // A cursor, forEach or COPY hands rows over as they come: those take the chain.
      const lane = streamsRows(q) ? undefined : executor.lane?.(requestOf(q))
      if (lane) return onLane(q as HaQuery, reject, lane)
      enter(reject)
      return viaChain(q, reject)
    }
    enter(reject)
    capacity.statement(() => viaChain(q, reject))
  }
  handler.debug = pools.options.debug

  const sql = makeSqlFunction(base, handler, cancelQuery)
  const reserved = createReserve({
    executor,
    pools,
    base,
    fallback: handler,
    capacity,
    isEnded,
    endedError,
    enter,
    leave,
  })
  const listener = createListener({ executor, pools, isEnded, endedError })
  const subscriber = createSubscriber({ executor, pools, isEnded, endedError })
  // A LISTEN and a logical replication subscription live on one connection: when the writer
  // moves, they move with it.
  input.events?.on('writerChanged', ({ from }) => {
    if (!from) return
    void listener
      .relisten()
      .catch((error) => input.logger?.warn('re-listen failed', { error: String(error) }))
    void subscriber
      .resubscribe()
      .catch((error) => input.logger?.warn('re-subscribe failed', { error: String(error) }))
  })

  /**
   * One attempt of a transaction on `host`: `sql.begin` on that host's pool, its body guarded.
   * `rejectTx` is set once postgres-ha holds the transaction in `pending` (see `handOver`).
   * postgres.js's promise settles the attempt through `done` and `failed` (the connection-lost
   * error explained), in one reaction: a transaction on the lane pays one promise of ours, not
   * one per layer.
   */
  const transactionAttempt = (
    mode: string,
    body: (tx: postgres.TransactionSql) => unknown,
    rejectTx: ((error: unknown) => void) | undefined,
    host: HostAddress,
    ctx: ExecuteContext,
    done: ((value: unknown) => unknown) | undefined,
    failed: (error: unknown) => unknown,
  ): Promise<unknown> => {
    const entry = pools.entry(host)
    const drops = entry.drops ?? 0
    const guard = transactionGuard(host)
    // postgres.js owns the transaction while it runs (see `handOver`), unless end() gave up on it.
    const handedOver = rejectTx !== undefined && pending.has(rejectTx)
    if (handedOver) pending.set(rejectTx, true)
    return beginGuarded(entry.sql, guard, mode, (tx) => {
      // From here on the caller's function runs: never replay it.
      ctx.sent = true
      guard.enter(tx)
      return body(tx)
    }).then(done, (error: unknown) => {
      if (handedOver && pending.has(rejectTx)) pending.set(rejectTx, false)
      guard.abandon(error)
      // The connection loss, not postgres.js's reaction to it, is why the transaction failed.
      return failed(pools.explain(host, drops, guard.lost ?? error))
    })
  }
  const rethrow = (error: unknown): never => {
    throw error
  }

  /**
   * A transaction postgres-ha holds in `pending` (as `rejectTx`, see `handOver`): its attempts
   * through the chain, and how it ends, its count against `max` and its `pending` entry released
   * before the caller hears.
   */
  const heldTransaction = (
    mode: string,
    body: (tx: postgres.TransactionSql) => unknown,
    resolve: (value: unknown) => void,
    rejectTx: (error: unknown) => void,
  ) => ({
    attempt: ((host, ctx) =>
      transactionAttempt(mode, body, rejectTx, host, ctx, undefined, rethrow)) as Attempt<unknown>,
    done(value: unknown): void {
      capacity.done()
      leave(rejectTx)
      resolve(value)
    },
    failed(error: unknown): void {
      capacity.done()
      leave(rejectTx)
      rejectTx(error)
    },
  })

  /**
   * A transaction on the core's lane (capacity already counted): its first attempt starts now,
   * with postgres.js owning it, so like a statement on the lane it is only counted in `onLanes`
   * (no `pending` entry, no promise of ours around it); BEGIN is then a microtask away, as in
   * postgres.js (a query made after `begin()` queues behind it). A failed first attempt becomes
   * postgres-ha's again: it joins `pending` and carries on through the plugins.
   */
  const beginOnLane = (
    mode: string,
    body: (tx: postgres.TransactionSql) => unknown,
    lane: Lane,
  ): Promise<unknown> => {
    onLanes++
    const settled = (value: unknown) => {
      lane.settled()
      offLane()
      return value
    }
    const failed = (error: unknown) =>
      new Promise<unknown>((resolve, rejectTx) => {
        onLanes--
        enter(rejectTx)
        const held = heldTransaction(mode, body, resolve, rejectTx)
        lane.failed(error, held.attempt).then(held.done, held.failed)
      })
    try {
      return transactionAttempt(mode, body, undefined, lane.host, lane.ctx, settled, failed)
    } catch (error) {
      return Promise.reject(error).then(undefined, failed)
    }
  }

  function begin(mode: unknown, fn?: unknown): Promise<unknown> {
    if (fn === undefined) {
      fn = mode
      mode = ''
    }
    if (ended) return Promise.reject(endedError())
    const body = fn as (tx: postgres.TransactionSql) => unknown
    const modeText = String(mode)
    // A transaction holds a pool connection: it counts against `max` like a statement.
    const counted = capacity.tryStatement()
    if (counted) {
      const lane = executor.lane?.(TRANSACTION)
      if (lane) return beginOnLane(modeText, body, lane)
    }
    // Settled by the transaction, or rejected by end({ timeout }) when it gives up on the
    // transaction before postgres.js does (`rejectTx`, what `pending` holds).
    return new Promise<unknown>((resolve, rejectTx) => {
      enter(rejectTx)
      const { attempt, done, failed } = heldTransaction(modeText, body, resolve, rejectTx)
      const start = (): void => {
        const lane = executor.lane?.(TRANSACTION)
        if (!lane) {
          executor.execute(TRANSACTION, attempt).then(done, failed)
          return
        }
        // Counted in `onLanes` from here on (before `leave` could find nothing left to drain).
        const onLane = beginOnLane(modeText, body, lane)
        leave(rejectTx)
        onLane.then(resolve, rejectTx)
      }
      try {
        if (counted) start()
        // Started a microtask after the count lets it, not inside the settling of the statement
        // that freed the connection.
        else capacity.statement(() => void Promise.resolve().then(start).catch(failed))
      } catch (error) {
        failed(error)
      }
    })
  }

  function end(options?: { timeout?: number | null }): Promise<void> {
    if (ending) return ending
    const timeout = options?.timeout ?? null
    ending = (async () => {
      // Started before our own `await 1`: the other surface stops taking statements when we do.
      const others = alongside?.(options)
      // Awaited below, after our own drain: not an unhandled rejection meanwhile.
      others?.catch(() => {})
      // As in postgres.js, a query made just before end() (its handler is a microtask away) still
      // runs, and one made after it gets CONNECTION_ENDED.
      await 1
      ended = true
      onEnding?.()
      const started = performance.now()
      if (pending.size > 0 || onLanes > 0) {
        let timer: ReturnType<typeof startTimer> | undefined
        await new Promise<void>((resolve) => {
          drained = resolve
          if (timeout !== null) timer = startTimer(resolve, timeout * 1000, { keepAlive: true })
        })
        stopTimer(timer)
        for (const [reject, withPostgresJs] of pending) if (!withPostgresJs) reject(destroyedError())
      }
      await others
      const left = timeout === null ? null : Math.max(0, timeout - (performance.now() - started) / 1000)
      await Promise.all([listener.end(), subscriber.end(), reserved.end()])
      await pools.endAll({ timeout: left })
      await onEnd?.()
    })()
    return ending
  }

  async function close(): Promise<void> {
    await Promise.all(pools.hosts().map((h) => pools.close(h)))
  }

  const visibleOptions = withoutTlsSecrets(pools.options)
  Object.assign(sql, {
    CLOSE: (postgres as unknown as { CLOSE?: unknown }).CLOSE ?? base.CLOSE,
    END: base.CLOSE,
    PostgresError: postgres.PostgresError,
    options: visibleOptions,
    begin,
    reserve: reserved.reserve,
    listen: listener.listen,
    end,
    close,
    subscribe: subscriber.subscribe,
    largeObject: (oid?: number, mode?: number) => openLargeObject(begin as never, oid, mode),
    ha,
  })
  Object.defineProperty(sql, 'parameters', {
    get: () => (pools.options as unknown as { parameters: unknown }).parameters,
    enumerable: true,
  })
  Object.defineProperty(sql, Symbol.for('nodejs.util.inspect.custom'), {
    value: (_depth: number, opts: unknown, inspect?: (v: unknown, o: unknown) => string) =>
      `PostgresHa ${inspect ? inspect(visibleOptions, opts) : ''}`,
  })
  return sql as unknown as HaSql<Ha>
}

/** Fields of a TLS options object that are secrets (a private key, its passphrase, a PKCS#12 bundle). */
const TLS_SECRETS = new Set(['key', 'passphrase', 'pfx'])

/**
 * `sql.options` as the user sees it: the same object fields (postgres.js's `parsers` and
 * `serializers`, which ORMs extend in place, stay shared) but TLS secrets replaced by a mark. The
 * pools keep the real ones.
 */
function withoutTlsSecrets(options: postgres.ParsedOptions): postgres.ParsedOptions {
  const ssl = (options as { ssl?: unknown }).ssl
  if (ssl === null || typeof ssl !== 'object') return options
  const masked: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(ssl)) masked[k] = TLS_SECRETS.has(k) && v ? '*** (hidden)' : v
  return Object.assign(Object.create(Object.getPrototypeOf(options)), options, { ssl: masked })
}

/**
 * Runs `precheck` and then `q` on one connection of the pool, pipelined (one round trip): a
 * postgres.js reservation holds the connection, and the check is handed to it first (both go out
 * in the same write), so the statement's snapshot is taken after the check ran.
 */
async function attemptAfter(
  precheck: Precheck,
  entry: { readonly sql: postgres.Sql },
  q: HaQuery,
  ctx: ExecuteContext,
): Promise<unknown> {
  const reservation = await entry.sql.reserve()
  try {
    const probe = unrunQuery(reservation)
    const check = reservation.unsafe(precheck.text).values()
    const value = check.then((rows) => (rows as unknown as unknown[][])[0]?.[0])
    // Read once the statement settles; a failed check must not be an unhandled rejection meanwhile.
    value.catch(() => {})
    precheck.value = value
    return await attemptQuery(q, probe.handler, probe.canceller, ctx)
  } finally {
    reservation.release()
  }
}
