/**
 * The dedicated connections of reserved connections (see `reserve.ts`): one `max: 1` postgres.js
 * instance each, held by a postgres.js reservation of its own, and kept idle per host between
 * reservations (at most `max` per host) so that a reservation usually finds one open.
 *
 * @module
 */
import type { Socket } from 'node:net'
import type postgres from 'postgres'
import { type HostAddress, hostKey } from '../../core/host.ts'
import type { Dedicated, HostPools } from './pools.ts'
import { countAsSent, type PgQuery, unrunQuery } from './query.ts'
import { type QueuedConnection, refuseQueued } from './queued-refusal.ts'
import { socketClosingError } from './socket.ts'

/**
 * One dedicated connection, reusable by successive reservations on its host. It is held by a
 * postgres.js reservation of its own `max: 1` instance: open before a statement is given to it,
 * and opened again (a new reservation of that instance) after it was lost.
 */
export interface Slot {
  readonly host: HostAddress
  /** `hostKey(host)`, made once. */
  readonly key: string
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
  /**
   * postgres.js's `reserved` of the reservation's connection, while it is open: hands the
   * connection the next statement of the reservation's own queue (see {@link watchQueue}).
   */
  next: (() => unknown) | undefined
}

/** The slots of one client: taken by {@link Slots.acquire}, handed back by {@link Slots.recycle}. */
export interface Slots {
  /** An idle slot on `host` (open unless its connection was lost meanwhile), or a new one, not open yet. */
  acquire(host: HostAddress): Slot
  /** Opens the slot's connection: a postgres.js reservation of its instance (rejects as postgres.js's does). */
  open(slot: Slot): Promise<void>
  /** Keeps the slot idle for the next reservation (if `reusable` and there is room), or ends it. */
  recycle(slot: Slot, reusable: boolean): void
  /** Ends every idle slot. */
  end(): Promise<void>
}

/** Makes the slots of a client over its `pools`; none is kept once `isEnded()`. */
export function createSlots(pools: HostPools, isEnded: () => boolean): Slots {
  const idle = new Map<string, Slot[]>()
  const maxIdle = Math.max(1, Number(pools.options.max) || 1)

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
      key: hostKey(host),
      lost: false,
      live: false,
      main: undefined,
      opening: undefined,
      release: undefined,
      next: undefined,
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

  function open(slot: Slot): Promise<void> {
    if (slot.live) return Promise.resolve()
    slot.opening ??= (async () => {
      const reservation = (await slot.dedicated.sql.reserve()) as unknown as postgres.ReservedSql
      const { handler, canceller } = unrunQuery(reservation as unknown as postgres.Sql)
      watchQueue(slot, reservation)
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
    slot.next = undefined
    void slot.dedicated.end()
  }

  function recycle(slot: Slot, reusable: boolean): void {
    let list = idle.get(slot.key)
    if (!list) idle.set(slot.key, (list = []))
    if (reusable && !slot.lost && !isEnded() && list.length < maxIdle) list.push(slot)
    else endSlot(slot)
  }

  return {
    acquire,
    open,
    recycle,
    async end() {
      const all = [...idle.values()].flat()
      idle.clear()
      for (const s of all) {
        if (s.live) s.release?.()
        s.next = undefined
      }
      await Promise.all(all.map((s) => s.dedicated.end()))
    },
  }
}

/** The fields of the reservation's postgres.js connection {@link watchQueue} uses. */
interface Connection extends QueuedConnection {
  onclose?: ((error: unknown) => void) | null
}

/**
 * The statements postgres.js held in the reservation's own queue when its connection closed reject
 * as those it had sent (see queued-refusal.ts): with the socket's error, or postgres.js's
 * CONNECTION_CLOSED. Each counts as sent: it was given to a session that is gone, and must not run
 * on another one (a BEGIN before it may have been in flight, not yet known to the reservation).
 *
 * postgres.js's reservation does not expose its connection: one empty statement (no work for the
 * server), sent as the slot opens, once per connection, reaches it through `onexecute`, called
 * synchronously as the connection takes the statement. It keeps `c.reserved` (the queue, drained
 * one by one) and sets `c.onclose`, which the pool calls once, inside its handling of the close.
 * It is not awaited: the first statements pipeline behind it; its failure is that of the
 * connection, which they see.
 */
function watchQueue(slot: Slot, reservation: postgres.ReservedSql): void {
  const onexecute = (c: Connection) => {
    slot.next = c.reserved ?? undefined
    c.onclose = (error) => {
      const next = slot.next
      slot.next = undefined
      if (next === undefined) return
      const lost = socketClosingError() ?? error
      refuseQueued(c, next, (q: PgQuery) => {
        countAsSent(q)
        q.reject(lost)
      })
    }
    // What the connection's `execute` returns: it may take more statements.
    return true
  }
  const probe = reservation.unsafe('', [], { onexecute } as postgres.UnsafeQueryOptions)
  probe.catch(() => {})
}
