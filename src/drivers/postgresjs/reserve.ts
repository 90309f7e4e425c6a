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
 * @module
 */
import type { Socket } from 'node:net'
import type postgres from 'postgres'
import { TransactionResolutionUnknownError } from '../../core/errors.ts'
import type { ExecuteRequest, Executor } from '../../core/executor.ts'
import { type HostAddress, hostKey, sameHost } from '../../core/host.ts'
import type { Capacity } from './capacity.ts'
import { classify } from './classify.ts'
import { connectionError } from './errors.ts'
import type { SqlFunction } from './helpers.ts'
import { makeSqlFunction } from './helpers.ts'
import type { Dedicated, HostPools } from './pools.ts'
import { attemptQuery, cancelQuery, type HaQuery, type QueryHandler, unrunQuery } from './query.ts'

/**
 * One dedicated connection, reusable by successive reservations on its host. It is held by a
 * postgres.js reservation of its own `max: 1` instance: open before a statement is given to it,
 * and opened again (a new reservation of that instance) after it was lost.
 */
interface Slot {
  readonly host: HostAddress
  readonly dedicated: Dedicated
  /** The handler and canceller of the instance's reservation, while it is open. */
  handler: unknown
  canceller: unknown
  /** The instance's reservation, open and not lost: statements may go to `handler`. */
  live: boolean
  opening: Promise<void> | undefined
  release: (() => void) | undefined
  main: Socket | undefined
  /** Its connection closed since it was last checked. */
  lost: boolean
}

interface Reservation {
  slot: Slot | undefined
  inTransaction: boolean
  /** The open transaction's connection was lost: what every statement rejects with until it is ended. */
  lost: TransactionResolutionUnknownError | undefined
  released: boolean
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

const OPENS = /^(BEGIN|START TRANSACTION)$/
const CLOSES = /^(COMMIT|ROLLBACK|PREPARE TRANSACTION|COMMIT PREPARED|ROLLBACK PREPARED)$/
const CLOSING_TEXT = /^\s*(commit|end|rollback|abort|prepare\s+transaction)\b(?!\s+to\b)/i
const ROLLBACK_TEXT = /^\s*(rollback|abort)\b(?!\s+to\b)/i

/** Makes `reserve()` and the function that ends every idle reserved connection. */
export function createReserve(deps: ReserveDeps): { reserve(): Promise<SqlFunction>; end(): Promise<void> } {
  const { executor, pools } = deps
  const idle = new Map<string, Slot[]>()
  const maxIdle = Math.max(1, Number(pools.options.max) || 1)
  /** Statements that were running when their reservation's transaction was lost. */
  const lostBy = new WeakSet<HaQuery>()

  function acquire(host: HostAddress): Slot {
    const list = idle.get(hostKey(host))
    let slot = list?.pop()
    while (slot?.lost) {
      endSlot(slot)
      slot = list?.pop()
    }
    if (slot) return slot
    const made: Partial<Slot> & { main?: Socket; lost: boolean } = {
      host,
      lost: false,
      live: false,
      main: undefined,
      opening: undefined,
      release: undefined,
    }
    const dedicated = pools.dedicated(
      host,
      {},
      {
        onSocketOpen(socket) {
          if (!made.main || made.main.destroyed) made.main = socket
        },
        onSocketClose(socket) {
          // A cancel request opens a socket of its own; only the connection's socket counts.
          if (socket === made.main) {
            made.main = undefined
            made.lost = true
            made.live = false
          }
        },
      },
    )
    return Object.assign(made, { dedicated }) as Slot
  }

  /** Opens the slot's connection: a postgres.js reservation of its instance (rejects as postgres.js's does). */
  function open(slot: Slot): Promise<void> {
    if (slot.live) return Promise.resolve()
    slot.opening ??= (async () => {
      const reservation = (await slot.dedicated.sql.reserve()) as unknown as postgres.ReservedSql
      const { handler, canceller } = unrunQuery(reservation as unknown as postgres.Sql)
      slot.handler = handler
      slot.canceller = canceller
      slot.release = () => reservation.release()
      slot.lost = false
      slot.live = true
    })().finally(() => {
      slot.opening = undefined
    })
    return slot.opening
  }

  function endSlot(slot: Slot): void {
    // A reservation of a live connection is handed back first: postgres.js's end() would
    // otherwise wait a second for it. A lost one was already dropped by postgres.js.
    if (slot.live) slot.release?.()
    slot.live = false
    void slot.dedicated.end()
  }

  function recycle(slot: Slot, reusable: boolean): void {
    const key = hostKey(slot.host)
    let list = idle.get(key)
    if (!list) idle.set(key, (list = []))
    if (reusable && !slot.lost && !deps.isEnded() && list.length < maxIdle) list.push(slot)
    else endSlot(slot)
  }

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
      // A drop by postgres-ha says so, whatever postgres.js made of it.
      const error = pools.explain(host, drops, raw)
      const kind = classify(error)
      if (kind === 'connection-lost' || kind === 'connect-failed') {
        used.lost = true
        if (inTransaction && r.slot === used) {
          lose(r, used.host, error)
          lostBy.add(q)
        }
      }
      throw error
    })
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

  async function reserve(): Promise<SqlFunction> {
    if (deps.isEnded()) throw deps.endedError()
    await deps.capacity.reserve()
    const r: Reservation = { slot: undefined, inTransaction: false, lost: undefined, released: false }
    try {
      // Nothing is sent yet: a connect failure on a writer that moved is retried on the new one.
      await executor.execute({ kind: 'statement', description: 'reserve' }, async (host) => {
        if (r.slot && !sameHost(r.slot.host, host)) {
          recycle(r.slot, false)
          r.slot = undefined
        }
        r.slot ??= acquire(host)
        await open(r.slot)
      })
    } catch (error) {
      if (r.slot) recycle(r.slot, false)
      deps.capacity.unreserve()
      throw error
    }
    const handler: QueryHandler = (q) => {
      if (r.released) return deps.fallback(q)
      if (deps.isEnded()) return q.reject(deps.endedError())
      // Closed while idle in a transaction (terminated, timed out, aborted by the tracker).
      if (r.inTransaction && r.slot?.lost)
        lose(r, r.slot.host, connectionError('CONNECTION_CLOSED', 'the reserved connection was closed'))
      if (r.lost) {
        refuseLost(r, q as HaQuery)
        return
      }
      q.active = true
      const reject = q.reject
      deps.enter(reject)
      const request: ExecuteRequest = {
        kind: 'reserved',
        pinnedHost: r.slot && !r.slot.lost ? r.slot.host : undefined,
        inTransaction: r.inTransaction,
        description: q.strings[0] ?? '',
      }
      executor
        .execute(request, (host, ctx) => attempt(r, q as HaQuery, host, ctx))
        .then(
          (value) => {
            deps.leave(reject)
            settle(r, q as HaQuery, value)
          },
          (error) => {
            deps.leave(reject)
            fail(r, q as HaQuery, error)
          },
        )
    }
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

  return {
    reserve,
    async end() {
      const all = [...idle.values()].flat()
      idle.clear()
      for (const s of all) if (s.live) s.release?.()
      await Promise.all(all.map((s) => s.dedicated.end()))
    },
  }
}
