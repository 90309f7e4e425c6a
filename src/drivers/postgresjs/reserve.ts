/**
 * `sql.reserve()`: a connection pinned to one host. Each reservation runs on a dedicated
 * `max: 1` postgres.js instance (recycled between reservations) rather than postgres.js's own
 * `reserve()`, whose connection can be closed and reused by the pool behind the reservation's back
 * (porsager/postgres#1208, #925). The reservation tracks whether a transaction is open on it; after
 * its connection was lost, its next statement runs on whatever host the core then gives.
 *
 * @module
 */
import type { Socket } from 'node:net'
import type postgres from 'postgres'
import type { ExecuteRequest, Executor } from '../../core/executor.ts'
import { type HostAddress, hostKey, sameHost } from '../../core/host.ts'
import { classify } from './classify.ts'
import { connectionError } from './errors.ts'
import type { SqlFunction } from './helpers.ts'
import { makeSqlFunction } from './helpers.ts'
import type { Dedicated, HostPools } from './pools.ts'
import { attemptQuery, cancelQuery, type HaQuery, type PgQuery, type QueryHandler } from './query.ts'

/** One dedicated connection, reusable by successive reservations on its host. */
interface Slot {
  readonly host: HostAddress
  readonly dedicated: Dedicated
  readonly handler: unknown
  readonly canceller: unknown
  main: Socket | undefined
  /** Its connection closed since it was last checked. */
  lost: boolean
}

interface Reservation {
  slot: Slot | undefined
  inTransaction: boolean
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
  /** Count a statement as under way (so `sql.end()` waits for it), and as done. */
  enter(): void
  leave(): void
}

const OPENS = /^(BEGIN|START TRANSACTION)$/
const CLOSES = /^(COMMIT|ROLLBACK|PREPARE TRANSACTION|COMMIT PREPARED|ROLLBACK PREPARED)$/
const CLOSING_TEXT = /^\s*(commit|end|rollback|abort|prepare\s+transaction)\b/i

/** Makes `reserve()` and the function that ends every idle reserved connection. */
export function createReserve(deps: ReserveDeps): { reserve(): Promise<SqlFunction>; end(): Promise<void> } {
  const { executor, pools } = deps
  const idle = new Map<string, Slot[]>()
  const maxIdle = Math.max(1, Number(pools.options.max) || 1)

  function acquire(host: HostAddress): Slot {
    const list = idle.get(hostKey(host))
    let slot = list?.pop()
    while (slot?.lost) {
      void slot.dedicated.end()
      slot = list?.pop()
    }
    if (slot) return slot
    const made: Partial<Slot> & { main?: Socket; lost: boolean } = { host, lost: false, main: undefined }
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
          }
        },
      },
    )
    const probe = (dedicated.sql as unknown as (s: TemplateStringsArray) => PgQuery)(
      Object.assign([''], { raw: [''] }) as unknown as TemplateStringsArray,
    )
    return Object.assign(made, { dedicated, handler: probe.handler, canceller: probe.canceller }) as Slot
  }

  function recycle(slot: Slot, reusable: boolean): void {
    const key = hostKey(slot.host)
    let list = idle.get(key)
    if (!list) idle.set(key, (list = []))
    if (reusable && !slot.lost && !deps.isEnded() && list.length < maxIdle) list.push(slot)
    else void slot.dedicated.end()
  }

  function attempt(r: Reservation, q: HaQuery, host: HostAddress, ctx: Parameters<typeof attemptQuery>[3]) {
    let slot = r.slot
    if (!slot || !sameHost(slot.host, host) || slot.lost) {
      const lostTransaction = r.inTransaction && slot !== undefined
      if (slot && !sameHost(slot.host, host)) {
        recycle(slot, false)
        slot = r.slot = undefined
      }
      if (slot?.lost) slot.lost = false
      r.inTransaction = false
      if (lostTransaction) {
        const where = hostKey(host)
        return Promise.reject(
          connectionError('CONNECTION_CLOSED', `the reserved connection's transaction was lost (${where})`),
        )
      }
      if (!slot) slot = r.slot = acquire(host)
    }
    return attemptQuery(q, slot.handler, slot.canceller, ctx)
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
    const kind = classify(error)
    if (kind === 'connection-lost' || kind === 'connect-failed') {
      if (r.slot) r.slot.lost = true
      r.inTransaction = false
    } else if (r.inTransaction && CLOSING_TEXT.test(q.strings[0] ?? '')) r.inTransaction = false
    q.reject(error)
  }

  async function reserve(): Promise<SqlFunction> {
    if (deps.isEnded()) throw deps.endedError()
    const r: Reservation = { slot: undefined, inTransaction: false, released: false }
    const handler: QueryHandler = (q) => {
      if (r.released) return deps.fallback(q)
      if (deps.isEnded()) return q.reject(deps.endedError())
      q.active = true
      deps.enter()
      const request: ExecuteRequest = {
        kind: 'reserved',
        pinnedHost: r.slot?.host,
        inTransaction: r.inTransaction,
        description: q.strings[0] ?? '',
      }
      executor
        .execute(request, (host, ctx) => attempt(r, q as HaQuery, host, ctx))
        .then(
          (value) => {
            deps.leave()
            settle(r, q as HaQuery, value)
          },
          (error) => {
            deps.leave()
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
        if (r.slot) recycle(r.slot, !r.inTransaction)
        r.slot = undefined
      },
    })
    return sql
  }

  return {
    reserve,
    async end() {
      const all = [...idle.values()].flat()
      idle.clear()
      await Promise.all(all.map((s) => s.dedicated.end()))
    },
  }
}
