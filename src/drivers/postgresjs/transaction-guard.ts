/**
 * Keeps postgres.js from writing to a transaction's connection after it closed.
 *
 * postgres.js answers a failed transaction body with ROLLBACK (a failed savepoint body with
 * ROLLBACK TO SAVEPOINT, a finished body with COMMIT) on the transaction's connection even after
 * that connection closed, and runs any statement the body still makes on it; the write then throws
 * a TypeError from a `setImmediate`, which crashes the process. So once the connection is known
 * lost, no body is allowed to settle (postgres.js rejects `begin` by itself when the close arrives,
 * and the abandoned scope is garbage collected), and every statement the body still makes — it may
 * have caught the error and carried on — rejects with `TransactionResolutionUnknownError` instead
 * of reaching postgres.js.
 *
 * @module
 */
import type postgres from 'postgres'
import { TransactionResolutionUnknownError } from '../../core/errors.ts'
import { type HostAddress, hostKey } from '../../core/host.ts'
import { classify } from './classify.ts'

/** How long a body whose statement lost its connection waits for postgres.js to see the close. */
const LOST_CLOSE_WAIT_MS = 2_000

const never = () => new Promise<never>(() => {})

/** The fields of a postgres.js query the guard takes over. */
interface GuardedQuery {
  handler: (q: GuardedQuery) => void
  reject: (error: unknown) => void
  /** The query's own `reject`, called by the guard's (one function per transaction, not per query). */
  pgHaOwnReject?: (error: unknown) => void
}

/** The state of one `sql.begin`. */
export interface TransactionGuard {
  /** The first connection-lost error a statement of the transaction saw. */
  readonly lost: unknown
  /** Wraps the caller's body (and, inside it, every savepoint body). */
  body<T>(fn: (tx: postgres.TransactionSql) => T | Promise<T>): (tx: postgres.TransactionSql) => Promise<T>
  /** To call when `begin` itself settled with an error: every pending body is abandoned. */
  abandon(error?: unknown): void
}

/** Creates the guard of one transaction on `host` (named in its errors). */
export function transactionGuard(host?: HostAddress): TransactionGuard {
  let lost: unknown
  let abandoned = false
  let refusal: TransactionResolutionUnknownError | undefined
  const waiting = new Set<() => void>()

  /** What a statement made after the loss rejects with. */
  const refuse = () => {
    refusal ??= new TransactionResolutionUnknownError(host && hostKey(host), undefined, { cause: lost })
    return refusal
  }

  const onLost = (error: unknown) => {
    lost ??= error
  }

  /** Waits for postgres.js to see the close; if the connection turns out alive, `error` lets ROLLBACK run. */
  const awaitClose = (error: unknown) =>
    new Promise<never>((_, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(stop)
        reject(error)
      }, LOST_CLOSE_WAIT_MS)
      const stop = () => clearTimeout(timer)
      waiting.add(stop)
    })

  const settleBody = <T>(result: T | Promise<T>): Promise<T> =>
    Promise.resolve(result).then(
      (value) => {
        if (abandoned) return never()
        // A body that caught the loss and returned: COMMIT must not go to the dead connection.
        return lost === undefined ? value : awaitClose(lost)
      },
      (error: unknown) => {
        if (abandoned) return never()
        if (classify(error) !== 'connection-lost' && lost === undefined) throw error
        onLost(error)
        return awaitClose(lost)
      },
    )

  // postgres.js rejects the statements of a closing connection before it tells `begin`. It calls
  // `query.reject(error)` as a method, so one function serves every query of the transaction.
  function rejectNoticingLoss(this: GuardedQuery, error: unknown): void {
    if (classify(error) === 'connection-lost') onLost(error)
    this.pgHaOwnReject!(error)
  }

  const wrapTx = (tx: postgres.TransactionSql): postgres.TransactionSql => {
    wrapSavepoint(tx)
    // Every query of one scope (the transaction, or a savepoint's body) has the scope's handler:
    // its guarded version is made once per scope, not once per query.
    let original: GuardedQuery['handler'] | undefined
    let guarded: GuardedQuery['handler'] | undefined
    /** Takes over a postgres.js query of the transaction: it sees the loss, and is refused after it. */
    const guardQuery = <Q>(made: Q): Q => {
      const q = made as unknown as GuardedQuery
      if (!(made instanceof Promise) || typeof q.handler !== 'function') return made
      if (q.handler !== original) {
        const handler = q.handler
        original = handler
        guarded = (query) => {
          if (lost !== undefined || abandoned) query.reject(refuse())
          else handler(query)
        }
      }
      q.handler = guarded!
      q.pgHaOwnReject = q.reject
      q.reject = rejectNoticingLoss
      return made
    }
    return new Proxy(tx, {
      apply: (target, self, args) => guardQuery(Reflect.apply(target, self, args)),
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver)
        if ((key === 'unsafe' || key === 'file') && typeof value === 'function')
          return (...args: unknown[]) => guardQuery(value.apply(target, args))
        return value
      },
    })
  }

  const wrapSavepoint = (tx: postgres.TransactionSql) => {
    const original = tx.savepoint as (...args: unknown[]) => Promise<unknown>
    // The tagged-template form runs one statement in a savepoint; it has no body to guard.
    tx.savepoint = ((name: unknown, fn?: unknown) => {
      if (lost !== undefined || abandoned) return Promise.reject(refuse())
      if (Array.isArray((name as { raw?: unknown })?.raw)) return original.apply(tx, [name, fn])
      if (fn === undefined)
        return original.call(tx, guardBody(name as (tx: postgres.TransactionSql) => unknown))
      return original.call(tx, name, guardBody(fn as (tx: postgres.TransactionSql) => unknown))
    }) as typeof tx.savepoint
  }

  const guardBody =
    <T>(fn: (tx: postgres.TransactionSql) => T | Promise<T>) =>
    (tx: postgres.TransactionSql): Promise<T> => {
      let result: T | Promise<T>
      try {
        const value = fn(wrapTx(tx))
        // postgres.js runs an array of queries returned by the body (`begin(sql => [sql`...`])`).
        result = (Array.isArray(value) ? Promise.all(value) : value) as T | Promise<T>
      } catch (error) {
        result = Promise.reject(error)
      }
      return settleBody(result)
    }

  return {
    get lost() {
      return lost
    },
    body: guardBody,
    abandon(error?: unknown) {
      abandoned = true
      if (error !== undefined && classify(error) === 'connection-lost') onLost(error)
      for (const stop of waiting) stop()
      waiting.clear()
    },
  }
}
