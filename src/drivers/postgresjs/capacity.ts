/**
 * postgres.js's `max` over a client's pool statements and reserved connections together. In
 * postgres.js a reservation takes one of the `max` connections, so with `max: 1` a statement
 * waits until the reservation is released. postgres-ha runs reservations on connections of their
 * own (see `reserve.ts`), so it keeps the count here: a reservation waits while `max`
 * connections are busy; while reservations are held, pool statements (a transaction counts as
 * one) run at most `max - reserved` at a time; without reservations the pool is postgres.js's
 * own, nothing waits here and pipelining is unchanged. One queue, first come first served.
 *
 * @module
 */

/** The count of one client (see the module doc). */
export interface Capacity {
  /** Runs `start` now, or once a connection would be free for it; call {@link done} after. */
  statement(start: () => void): void
  /** Counts a statement that may start now and returns true; false (nothing counted) if it would wait. */
  tryStatement(): boolean
  /** A statement (or transaction) started by {@link statement} settled. */
  done(): void
  /** Resolves once a connection may be reserved; it counts until {@link unreserve}. */
  reserve(): Promise<void>
  /** Counts a reservation that may start now and returns true; false (nothing counted) if it would wait. */
  tryReserve(): boolean
  unreserve(): void
}

interface Waiter {
  readonly reserve: boolean
  readonly go: () => void
}

/** Creates the count for a client whose postgres.js `max` is `max`. */
export function createCapacity(max: number): Capacity {
  let running = 0
  let reserved = 0
  const queue: Waiter[] = []
  const fits = (w: Waiter) => (w.reserve ? reserved + running < max : running < max - reserved)

  function pump(): void {
    while (queue.length > 0 && fits(queue[0]!)) {
      const w = queue.shift()!
      if (w.reserve) reserved++
      else running++
      w.go()
    }
  }

  return {
    statement(start) {
      if (this.tryStatement()) start()
      else queue.push({ reserve: false, go: start })
    },
    tryStatement() {
      if (queue.length > 0 || (reserved > 0 && running >= max - reserved)) return false
      running++
      return true
    },
    done() {
      running--
      if (queue.length > 0) pump()
    },
    reserve() {
      if (this.tryReserve()) return Promise.resolve()
      return new Promise<void>((resolve) => queue.push({ reserve: true, go: resolve }))
    },
    tryReserve() {
      if (queue.length > 0 || reserved + running >= max) return false
      reserved++
      return true
    },
    unreserve() {
      reserved--
      pump()
    },
  }
}
