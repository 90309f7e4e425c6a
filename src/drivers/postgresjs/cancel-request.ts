/**
 * Which connection postgres.js opens for a CancelRequest. It opens that connection through the
 * instance's `socket` function, with nothing that tells it from a connection for statements; it
 * does so synchronously within a query's `cancel()`, so marking that call is enough.
 *
 * @module
 */

let cancelling = false
/** Set for the CancelRequest of a piped statement, until the socket function reads it (see below). */
let deferred = false

/**
 * Runs `cancel` (a postgres.js query's `cancel()`) so that the connection it opens for the
 * CancelRequest gets a plain socket (see {@link isCancelRequest}).
 */
export function asCancelRequest<T>(cancel: () => T): T {
  cancelling = true
  try {
    return cancel()
  } finally {
    cancelling = false
  }
}

/**
 * Whether the `socket` function is being called for a CancelRequest. Such a connection must not
 * log in through the connect plugins: the request carries no credentials and takes no connection
 * slot, so it needs no IAM signing or Secrets Manager read (which may be down), no free slot under
 * `max_connections` (full is when one cancels), and no session opened only to be closed.
 */
export function isCancelRequest(): boolean {
  if (deferred) {
    deferred = false
    return true
  }
  return cancelling
}

/**
 * Marks the CancelRequest of `q` that postgres.js sends later: a statement cancelled while it waits
 * behind another in a connection's pipeline keeps `{ resolve, reject }` in `cancelled`, and the
 * connection sends the request once the statement starts, reading `resolve` as an argument of the
 * call that opens the request's connection (synchronously, down to the `socket` function). That
 * read marks the call; the mark lasts until the socket function reads it, at most until the next
 * microtask. Call right after the query's `cancel()`; anything else in `cancelled` is left as it is.
 */
export function markDeferredCancelRequest(q: { cancelled: unknown }): void {
  const pending = q.cancelled as { resolve?: unknown; reject?: unknown } | null
  if (pending === null || typeof pending !== 'object' || typeof pending.resolve !== 'function') return
  const { resolve, reject } = pending
  q.cancelled = {
    get resolve() {
      deferred = true
      queueMicrotask(() => {
        deferred = false
      })
      return resolve
    },
    reject,
  }
}
