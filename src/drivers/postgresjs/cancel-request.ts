/**
 * Which connection postgres.js opens for a CancelRequest. It opens that connection through the
 * instance's `socket` function, with nothing that tells it from a connection for statements; it
 * does so synchronously within a query's `cancel()`, so marking that call is enough.
 *
 * @module
 */

let cancelling = false

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
  return cancelling
}
