/**
 * Keeps postgres.js from writing to a transaction's connection after it closed.
 *
 * postgres.js answers a failed transaction body with ROLLBACK (a failed savepoint body with
 * ROLLBACK TO SAVEPOINT, a finished body with COMMIT) on the transaction's connection even after
 * that connection closed; the write then throws a TypeError from a `setImmediate`, which crashes
 * the process. So once the connection is known lost, no body is allowed to settle: postgres.js
 * rejects `begin` by itself when the close arrives, and the abandoned scope is garbage collected.
 *
 * @module
 */
import type postgres from 'postgres'
import { classify } from './classify.ts'

/** How long a body whose statement lost its connection waits for postgres.js to see the close. */
const LOST_CLOSE_WAIT_MS = 2_000

const never = () => new Promise<never>(() => {})

/** The state of one `sql.begin`. */
export interface TransactionGuard {
  /** The first connection-lost error a statement of the transaction saw. */
  readonly lost: unknown
  /** Wraps the caller's body (and, inside it, every savepoint body). */
  body<T>(fn: (tx: postgres.TransactionSql) => T | Promise<T>): (tx: postgres.TransactionSql) => Promise<T>
  /** To call when `begin` itself settled with an error: every pending body is abandoned. */
  abandon(): void
}

/** Creates the guard of one transaction. */
export function transactionGuard(): TransactionGuard {
  let lost: unknown
  let abandoned = false
  const waiting = new Set<() => void>()

  const settleBody = <T>(result: T | Promise<T>): Promise<T> =>
    Promise.resolve(result).then(
      (value) => (abandoned ? never() : value),
      (error: unknown) => {
        if (abandoned) return never()
        if (classify(error) !== 'connection-lost') throw error
        lost ??= error
        // The close normally follows at once; if the connection turns out alive, let ROLLBACK run.
        return new Promise<never>((_, reject) => {
          const timer = setTimeout(() => {
            waiting.delete(stop)
            reject(error)
          }, LOST_CLOSE_WAIT_MS)
          const stop = () => clearTimeout(timer)
          waiting.add(stop)
        })
      },
    )

  const wrapSavepoint = (tx: postgres.TransactionSql) => {
    const original = tx.savepoint as (...args: unknown[]) => Promise<unknown>
    // The tagged-template form runs one statement in a savepoint; it has no body to guard.
    tx.savepoint = ((name: unknown, fn?: unknown) => {
      if (Array.isArray((name as { raw?: unknown })?.raw)) return original.apply(tx, [name, fn])
      if (fn === undefined)
        return original.call(tx, guardBody(name as (tx: postgres.TransactionSql) => unknown))
      return original.call(tx, name, guardBody(fn as (tx: postgres.TransactionSql) => unknown))
    }) as typeof tx.savepoint
  }

  const guardBody =
    <T>(fn: (tx: postgres.TransactionSql) => T | Promise<T>) =>
    (tx: postgres.TransactionSql): Promise<T> => {
      wrapSavepoint(tx)
      let result: T | Promise<T>
      try {
        const value = fn(tx)
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
    abandon() {
      abandoned = true
      for (const stop of waiting) stop()
      waiting.clear()
    },
  }
}
