/**
 * `sql.reserve()`: a connection pinned to one host. Each reservation runs on a dedicated
 * `max: 1` postgres.js instance (recycled between reservations) rather than postgres.js's own
 * `reserve()`, whose connection can be closed and reused by the pool behind the reservation's back
 * (porsager/postgres#1208, #925). As in postgres.js, `reserve()` resolves once the connection is
 * open (a connect failure rejects it with postgres.js's own error) and counts against `max` (see
 * `capacity.ts`). The reservation tracks whether a transaction is open on it.
 * Once its connection is lost it is pinned to nothing: its next statement opens a new connection
 * on whatever host the core then gives (the current writer, or a live reader), so it never returns
 * to a dead or demoted host. A transaction open on a lost connection is gone: every statement
 * after the loss rejects with `TransactionResolutionUnknownError` until the caller ends it
 * (`rollback`, `commit`, which rejects too, or `release()`), so nothing of it runs in autocommit.
 *
 * The common case takes the core's lane (core/execute-lane.ts), as pool statements do: a
 * reservation that finds an open idle connection on the writer takes it with no promise of the
 * core's, and a plain statement on a reservation pinned to the writer runs as the query itself on
 * the reserved connection (see {@link OwnAttempt}), with no second postgres.js query. A failed
 * first attempt carries on through the plugins exactly as on the chain.
 *
 * @module
 */
import type postgres from 'postgres'
import { TransactionResolutionUnknownError } from '../../core/errors.ts'
import type { Attempt, ExecuteRequest, Executor, Lane } from '../../core/executor.ts'
import { type HostAddress, hostKey, sameHost } from '../../core/host.ts'
import type { Capacity } from './capacity.ts'
import { classify } from './classify.ts'
import { connectionError } from './errors.ts'
import type { SqlFunction } from './helpers.ts'
import { makeSqlFunction } from './helpers.ts'
import type { HostPools } from './pools.ts'
import {
  attemptQuery,
  cancelQuery,
  type HaQuery,
  type OwnAttempt,
  type PgQuery,
  type QueryHandler,
  streamsRows,
} from './query.ts'
import { createSlots, type Slot } from './reserve-slots.ts'

interface Reservation {
  slot: Slot | undefined
  inTransaction: boolean
  /** The open transaction's connection was lost: what every statement rejects with until it is ended. */
  lost: TransactionResolutionUnknownError | undefined
  released: boolean
  /** Statements on the chain, not settled yet: a statement after them must not overtake them on the lane. */
  chained: number
}

/** What {@link createReserve} needs from the client. */
export interface ReserveDeps {
  readonly executor: Executor
  readonly pools: HostPools
  /** The instance helpers and fragments are made with (see {@link makeSqlFunction}). */
  readonly base: postgres.Sql
  /** Runs a statement outside the reservation (after `release()`, as postgres.js does). */
  readonly fallback: QueryHandler
  isEnded(): boolean
  endedError(): Error
  /** postgres.js's `max` over pool statements and reservations. */
  readonly capacity: Capacity
  /** Count a statement as under way (so `sql.end()` waits for it, or rejects it), and as done. */
  enter(reject: (error: unknown) => void): void
  leave(reject: (error: unknown) => void): void
}

const RESERVE: ExecuteRequest = Object.freeze({ kind: 'statement', description: 'reserve' })
const OPENS = /^(BEGIN|START TRANSACTION)$/
const CLOSES = /^(COMMIT|ROLLBACK|PREPARE TRANSACTION|COMMIT PREPARED|ROLLBACK PREPARED)$/
const CLOSING_TEXT = /^\s*(commit|end|rollback|abort|prepare\s+transaction)\b(?!\s+to\b)/i
const ROLLBACK_TEXT = /^\s*(rollback|abort)\b(?!\s+to\b)/i

/** Makes `reserve()` and the function that ends every idle reserved connection. */
export function createReserve(deps: ReserveDeps): { reserve(): Promise<SqlFunction>; end(): Promise<void> } {
  const { executor, pools } = deps
  const { acquire, open, recycle, end: endSlots } = createSlots(pools, deps.isEnded)
  /** Statements that were running when their reservation's transaction was lost. */
  const lostBy = new WeakSet<HaQuery>()

  function attempt(r: Reservation, q: HaQuery, host: HostAddress, ctx: Parameters<typeof attemptQuery>[3]) {
    let slot = r.slot
    // A lost connection keeps no session: the reservation starts afresh on the host the core gave.
    if (slot && (slot.lost || !sameHost(slot.host, host))) {
      recycle(slot, false)
      slot = r.slot = undefined
    }
    if (!slot) slot = r.slot = acquire(host)
    const used = slot
    const inTransaction = r.inTransaction
    const drops = pools.drops(host)
    const run = () => attemptQuery(q, used.handler, used.canceller, ctx)
    return (used.live ? run() : open(used).then(run)).catch((raw: unknown) => {
      throw failedOn(r, q, used, inTransaction, pools.explain(host, drops, raw))
    })
  }

  /**
   * An attempt of `q` on `used` failed (`error`, explained by the pools: a drop by postgres-ha says
   * so, whatever postgres.js made of it): a lost connection is never used again, and takes the
   * transaction that was open on it (`inTransaction` when the attempt started) with it.
   */
  function failedOn(r: Reservation, q: HaQuery, used: Slot, inTransaction: boolean, error: unknown): unknown {
    const kind = classify(error)
    if (kind === 'connection-lost' || kind === 'connect-failed') {
      used.lost = true
      if (inTransaction && r.slot === used) {
        lose(r, used.host, error)
        lostBy.add(q)
      }
    }
    return error
  }

  /** The transaction open on `r` is gone with its connection. */
  function lose(r: Reservation, host: HostAddress, cause: unknown): void {
    r.inTransaction = false
    r.lost ??= new TransactionResolutionUnknownError(hostKey(host), undefined, { cause })
  }

  /** A statement on a reservation whose transaction was lost: only ending the transaction passes. */
  function refuseLost(r: Reservation, q: HaQuery): void {
    const lost = r.lost!
    const text = q.strings[0] ?? ''
    if (CLOSING_TEXT.test(text)) r.lost = undefined
    // The server rolled the transaction back when the connection went: ROLLBACK states a fact.
    if (CLOSING_TEXT.test(text) && ROLLBACK_TEXT.test(text))
      q.resolve(Object.assign([], { command: 'ROLLBACK', count: null, columns: [], state: undefined }))
    else q.reject(lost)
  }

  function settle(r: Reservation, q: HaQuery, value: unknown): void {
    const results = Array.isArray(value) && Array.isArray(value[0]) && !('command' in value) ? value : [value]
    for (const result of results) {
      const command = (result as { command?: unknown })?.command
      if (typeof command !== 'string') continue
      if (OPENS.test(command)) r.inTransaction = true
      else if (CLOSES.test(command)) r.inTransaction = false
    }
    q.resolve(value)
  }

  function fail(r: Reservation, q: HaQuery, error: unknown): void {
    if (lostBy.delete(q) && r.lost) {
      // Whatever the plugins made of the loss (none, or a failed failover), the transaction's fate
      // is unknown; every later statement rejects with this same error.
      if (error instanceof TransactionResolutionUnknownError) r.lost = error
      else if (error !== r.lost.cause)
        r.lost = new TransactionResolutionUnknownError(r.lost.fromHost, undefined, { cause: error })
      q.reject(r.lost)
      return
    }
    if (r.inTransaction && CLOSING_TEXT.test(q.strings[0] ?? '')) r.inTransaction = false
    q.reject(error)
  }

  /**
   * The first attempt of a reserved statement on the lane: `q` itself runs on the reserved
   * connection (see {@link OwnAttempt}); a failure carries on through the plugins, later attempts
   * as on the chain.
   */
  class ReservedAttempt implements OwnAttempt {
    done = false
    readonly ctx: Lane['ctx']
    readonly handler: QueryHandler
    readonly canceller: (q: PgQuery) => unknown
    readonly inTransaction: boolean
    readonly drops: number
    constructor(
      readonly r: Reservation,
      readonly slot: Slot,
      readonly lane: Lane,
      readonly reject: (error: unknown) => void,
    ) {
      this.ctx = lane.ctx
      this.handler = slot.handler as QueryHandler
      this.canceller = slot.canceller as (q: PgQuery) => unknown
      this.inTransaction = r.inTransaction
      this.drops = pools.drops(slot.host)
    }
    settled(q: HaQuery, value: unknown): void {
      this.lane.settled()
      deps.leave(this.reject)
      settle(this.r, q, value)
    }
    failed(q: HaQuery, raw: unknown): void {
      const { r, slot, reject } = this
      const error = failedOn(r, q, slot, this.inTransaction, pools.explain(slot.host, this.drops, raw))
      this.lane
        .failed(error, (host, ctx) => attempt(r, q, host, ctx))
        .then(
          (value) => {
            q.own = undefined
            deps.leave(reject)
            settle(r, q, value)
          },
          (failure) => {
            q.own = undefined
            deps.leave(reject)
            fail(r, q, failure)
          },
        )
    }
  }

  /** Runs `q` on reservation `r` (its `sql`'s handler). */
  function run(r: Reservation, q: HaQuery): void {
    if (r.released) {
      deps.fallback(q)
      return
    }
    if (deps.isEnded()) {
      q.reject(deps.endedError())
      return
    }
    const slot = r.slot
    // Closed while idle in a transaction (terminated, timed out, aborted by the tracker).
    if (r.inTransaction && slot?.lost)
      lose(r, slot.host, connectionError('CONNECTION_CLOSED', 'the reserved connection was closed'))
    if (r.lost) {
      refuseLost(r, q)
      return
    }
    const reject = q.reject
    deps.enter(reject)
    const request: ExecuteRequest = {
      kind: 'reserved',
      pinnedHost: slot && !slot.lost ? slot.host : undefined,
      inTransaction: r.inTransaction,
      description: q.strings[0] ?? '',
    }
    // A cursor, forEach or COPY hands rows over as they come: those take the chain.
    if (slot?.live && r.chained === 0 && !q.cancelled && !streamsRows(q)) {
      const lane = executor.lane?.(request)
      if (lane) {
        q.own = new ReservedAttempt(r, slot, lane, reject)
        // As in postgres.js, the query is active once the connection runs it.
        q.active = false
        ;(slot.handler as QueryHandler)(q)
        return
      }
    }
    q.active = true
    r.chained++
    executor
      .execute(request, (host, ctx) => attempt(r, q, host, ctx))
      .then(
        (value) => {
          r.chained--
          deps.leave(reject)
          settle(r, q, value)
        },
        (error) => {
          r.chained--
          deps.leave(reject)
          fail(r, q, error)
        },
      )
  }

  /** Pins `r` to an open connection on `host`; `undefined` when one was open already. */
  function pin(r: Reservation, host: HostAddress): Promise<void> | undefined {
    if (r.slot && !sameHost(r.slot.host, host)) {
      recycle(r.slot, false)
      r.slot = undefined
    }
    r.slot ??= acquire(host)
    return r.slot.live ? undefined : open(r.slot)
  }

  /** The attempt of a reservation: nothing is sent, so a connect failure on a writer that moved is retried on the new one. */
  const pinning =
    (r: Reservation): Attempt<void> =>
    async (host) => {
      await pin(r, host)
    }

  /** A reservation that could not be made gives its slot and its count back. */
  function unpin(r: Reservation): void {
    if (r.slot) recycle(r.slot, false)
    r.slot = undefined
    deps.capacity.unreserve()
  }

  async function viaChain(r: Reservation): Promise<SqlFunction> {
    try {
      await executor.execute(RESERVE, pinning(r))
    } catch (error) {
      unpin(r)
      throw error
    }
    return reservedSql(r)
  }

  /** The common case: an idle open connection on the writer is taken at once. */
  function onLane(r: Reservation, lane: Lane): Promise<SqlFunction> {
    let opening: Promise<void> | undefined
    try {
      opening = pin(r, lane.host)
    } catch (error) {
      opening = Promise.reject(error)
    }
    if (opening === undefined) {
      lane.settled()
      return Promise.resolve(reservedSql(r))
    }
    return opening
      .then(
        () => lane.settled(),
        (error: unknown) => lane.failed(error, pinning(r)),
      )
      .then(
        () => reservedSql(r),
        (error: unknown) => {
          unpin(r)
          throw error
        },
      )
  }

  function reserve(): Promise<SqlFunction> {
    if (deps.isEnded()) return Promise.reject(deps.endedError())
    const r: Reservation = {
      slot: undefined,
      inTransaction: false,
      lost: undefined,
      released: false,
      chained: 0,
    }
    if (!deps.capacity.tryReserve()) return deps.capacity.reserve().then(() => viaChain(r))
    const lane = executor.lane?.(RESERVE)
    return lane ? onLane(r, lane) : viaChain(r)
  }

  function reservedSql(r: Reservation): SqlFunction {
    const handler: QueryHandler = (q) => run(r, q as HaQuery)
    handler.debug = pools.options.debug
    const sql = makeSqlFunction(deps.base, handler, cancelQuery)
    Object.assign(sql, {
      options: pools.options,
      release() {
        if (r.released) return
        r.released = true
        r.lost = undefined
        if (r.slot) recycle(r.slot, !r.inTransaction)
        r.slot = undefined
        deps.capacity.unreserve()
      },
    })
    return sql
  }

  return { reserve, end: endSlots }
}
