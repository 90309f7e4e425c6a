/**
 * postgres.js fetches the array types (`fetch_types`, on by default) as the first statement of
 * every new connection, from inside its protocol handler, and drops the promise of that fetch
 * (porsager/postgres#1192, #1205, #1223, still open in 3.4.9). A connection lost while the fetch
 * runs (a failover: the old writer resets its sockets) rejects a promise nobody holds: an
 * unhandled rejection that ends the process on Node's defaults, Deno and Bun, and that no caller
 * can catch. Every statement of that connection still fails on its own, so the fetch's failure
 * carries nothing a caller needs: such a fetch settles as "no types", which is what postgres.js
 * already does for a connection whose fetch is off, and the next connection fetches them again.
 *
 * @module
 */

/** The postgres.js `Query` fields that tell its internal type fetch from every other query. */
interface QueryLike {
  readonly tagged: boolean
  readonly strings: readonly string[]
  readonly handler: unknown
  readonly canceller: unknown
}

type Then = (this: QueryLike, onFulfilled?: unknown, onRejected?: unknown) => Promise<unknown>

const guarded = new WeakSet<object>()

/**
 * Makes postgres.js's internal array-type fetch never reject (see the module doc). `Query` is
 * postgres.js's query class (one per module instance); guarding it twice does nothing.
 */
export function guardTypeFetch(Query: { prototype: object }): void {
  if (guarded.has(Query)) return
  guarded.add(Query)
  const proto = Query.prototype as { then: Then }
  const then = proto.then
  // A class method's own attributes (not enumerable), as `Query` defines it.
  Object.defineProperty(proto, 'then', {
    configurable: true,
    writable: true,
    value(this: QueryLike, onFulfilled?: unknown, onRejected?: unknown) {
      if (!isTypeFetch(this, Query)) return then.call(this, onFulfilled, onRejected)
      return then.call(this, onFulfilled, () => (typeof onFulfilled === 'function' ? onFulfilled([]) : []))
    },
  })
}

/**
 * The fetch is the one query postgres.js makes itself with a connection's own `execute` as its
 * handler: an untagged plain `Query` without a canceller, on the `pg_type` catalog. Queries of an
 * `sql` (tagged, `unsafe`, `file`) all get a canceller, and their handler carries `debug`.
 */
function isTypeFetch(q: QueryLike, Query: object): boolean {
  // Cheapest first: every query of an `sql` has a canceller, so most calls stop at the first test.
  return (
    q.canceller === undefined &&
    !q.tagged &&
    Object.getPrototypeOf(q) === (Query as { prototype: object }).prototype &&
    typeof q.handler === 'function' &&
    !('debug' in q.handler) &&
    typeof q.strings[0] === 'string' &&
    q.strings[0].includes('b.typarray')
  )
}
