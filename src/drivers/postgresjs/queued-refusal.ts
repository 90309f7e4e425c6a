/**
 * Settling the statements postgres.js still held in a connection's own queue when it closed: the
 * queue of a transaction (`sql.begin`) or of a reservation (`sql.reserve()`). Such a statement
 * goes to that queue, not to the connection, while the connection is "full" (as many statements in
 * flight as it pipelines, or a parameterised statement not yet described); postgres.js hands them
 * to the connection one by one as it frees, through `c.reserved`. On a close it rejects those the
 * connection had and drops `c.reserved`, so the queued ones would never settle.
 *
 * @module
 */

/** A list of connections of a postgres.js pool (its `Queue`). */
interface ConnectionList {
  push(c: QueuedConnection): unknown
  remove(c: QueuedConnection): unknown
}

/** The fields of a postgres.js connection the refusal uses. */
export interface QueuedConnection {
  reserved?: (() => unknown) | null
  queue: ConnectionList
  /** Takes a statement of postgres.js's; `never`: {@link refuseQueued} puts one of its own in place. */
  execute: (q: never) => unknown
}

/** More than any connection's queue holds; a bound on {@link refuseQueued}'s loop, never reached. */
const MAX_QUEUED = 1e8

/**
 * Runs the queue of the closed connection `c` through `next` (its `c.reserved` as it was before
 * the close) against an `execute` of ours that hands each statement to `refuse` instead of writing
 * it; with the queue empty, `next` moves `c` to the pool's reserved list, from which it goes back
 * to the list the close put it on. To call inside the pool's handling of the close (`c.onclose`:
 * after it moved `c` to its closed list, before anything can reconnect `c`). Never throws.
 */
export function refuseQueued<Q>(c: QueuedConnection, next: () => unknown, refuse: (q: Q) => void): void {
  const home = c.queue
  const execute = c.execute
  c.execute = (q: Q) => {
    try {
      refuse(q)
    } catch {
      // One statement's settling may not keep the rest of the queue from theirs.
    }
    return true
  }
  try {
    for (let i = 0; i < MAX_QUEUED && next() === true; i++);
  } catch {
    // Runs inside postgres.js's handling of a close: nothing may throw from here.
  } finally {
    c.execute = execute
    if (c.queue !== home) {
      c.queue.remove(c)
      home.push(c)
      c.queue = home
    }
  }
}
