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

/**
 * The state of one `sql.begin`. A class, made once per transaction: the object literal with a
 * `lost` getter and nine closures it replaces cost about 6 µs to make on Node (measured on the
 * built bundle), more than the rest of a transaction's overhead together.
 */
export class TransactionGuard {
  /** The first connection-lost error a statement of the transaction saw. */
  lost: unknown = undefined
  #abandoned = false
  #refusal: TransactionResolutionUnknownError | undefined = undefined
  /** Stops the waits of bodies that saw the loss (made on the first such wait). */
  #waiting: Set<() => void> | undefined = undefined
  readonly #host: HostAddress | undefined

  constructor(host?: HostAddress) {
    this.#host = host
  }

  /** Wraps the caller's body (and, inside it, every savepoint body). */
  body<T>(fn: (tx: postgres.TransactionSql) => T | Promise<T>): (tx: postgres.TransactionSql) => Promise<T> {
    return (tx) => {
      let result: T | Promise<T>
      try {
        const value = fn(this.#wrapTx(tx))
        // postgres.js runs an array of queries returned by the body (`begin(sql => [sql`...`])`).
        result = (Array.isArray(value) ? Promise.all(value) : value) as T | Promise<T>
      } catch (error) {
        result = Promise.reject(error)
      }
      return this.#settleBody(result)
    }
  }

  /** To call when `begin` itself settled with an error: every pending body is abandoned. */
  abandon(error?: unknown): void {
    this.#abandoned = true
    if (error !== undefined && classify(error) === 'connection-lost') this.#onLost(error)
    const waiting = this.#waiting
    if (waiting === undefined) return
    for (const stop of waiting) stop()
    waiting.clear()
  }

  /** Whether statements of the transaction must be refused now. */
  #closed(): boolean {
    return this.lost !== undefined || this.#abandoned
  }

  /** What a statement made after the loss rejects with. */
  #refuse(): TransactionResolutionUnknownError {
    const host = this.#host
    this.#refusal ??= new TransactionResolutionUnknownError(host && hostKey(host), undefined, {
      cause: this.lost,
    })
    return this.#refusal
  }

  #onLost(error: unknown): void {
    this.lost ??= error
  }

  /** Waits for postgres.js to see the close; if the connection turns out alive, `error` lets ROLLBACK run. */
  #awaitClose(error: unknown): Promise<never> {
    const waiting = (this.#waiting ??= new Set())
    return new Promise<never>((_, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(stop)
        reject(error)
      }, LOST_CLOSE_WAIT_MS)
      const stop = () => clearTimeout(timer)
      waiting.add(stop)
    })
  }

  #settleBody<T>(result: T | Promise<T>): Promise<T> {
    return Promise.resolve(result).then(
      (value) => {
        if (this.#abandoned) return never()
        // A body that caught the loss and returned: COMMIT must not go to the dead connection.
        return this.lost === undefined ? value : this.#awaitClose(this.lost)
      },
      (error: unknown) => {
        if (this.#abandoned) return never()
        if (classify(error) !== 'connection-lost' && this.lost === undefined) throw error
        this.#onLost(error)
        return this.#awaitClose(this.lost)
      },
    )
  }

  /**
   * postgres.js rejects the statements of a closing connection before it tells `begin`. It calls
   * `query.reject(error)` as a method, so one function serves every query of the transaction.
   */
  #rejectNoticingLoss: ((this: GuardedQuery, error: unknown) => void) | undefined = undefined
  #noticingLoss(): (this: GuardedQuery, error: unknown) => void {
    if (this.#rejectNoticingLoss) return this.#rejectNoticingLoss
    const guard = this
    this.#rejectNoticingLoss = function (this: GuardedQuery, error: unknown): void {
      if (classify(error) === 'connection-lost') guard.#onLost(error)
      this.pgHaOwnReject!(error)
    }
    return this.#rejectNoticingLoss
  }

  #wrapTx(tx: postgres.TransactionSql): postgres.TransactionSql {
    this.#wrapSavepoint(tx)
    const reject = this.#noticingLoss()
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
          if (this.#closed()) query.reject(this.#refuse())
          else handler(query)
        }
      }
      q.handler = guarded!
      q.pgHaOwnReject = q.reject
      q.reject = reject
      return made
    }
    if (hasKnownMembers(tx)) {
      // A plain function with the same members instead of a Proxy: on Bun (JavaScriptCore) the
      // Proxy cost ~2 µs of CPU per transaction statement against a real server; copying the nine
      // members one by one costs ~30 ns a transaction (Object.assign would cost ~1 µs).
      const scope = tx as unknown as Record<string, unknown>
      const unsafe = tx.unsafe as (...args: unknown[]) => unknown
      const file = tx.file as (...args: unknown[]) => unknown
      const sql = function sql(strings: unknown, ...args: unknown[]) {
        return guardQuery((tx as unknown as (...a: unknown[]) => unknown)(strings, ...args))
      } as unknown as Record<string, unknown>
      sql.types = scope.types
      sql.typed = scope.typed
      sql.unsafe = (...args: unknown[]) => guardQuery(unsafe.apply(tx, args))
      sql.notify = scope.notify
      sql.array = scope.array
      sql.json = scope.json
      sql.file = (...args: unknown[]) => guardQuery(file.apply(tx, args))
      sql.savepoint = scope.savepoint
      sql.prepare = scope.prepare
      return sql as unknown as postgres.TransactionSql
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

  #wrapSavepoint(tx: postgres.TransactionSql): void {
    const original = tx.savepoint as (...args: unknown[]) => Promise<unknown>
    // The tagged-template form runs one statement in a savepoint; it has no body to guard.
    tx.savepoint = ((name: unknown, fn?: unknown) => {
      if (this.#closed()) return Promise.reject(this.#refuse())
      if (Array.isArray((name as { raw?: unknown })?.raw)) return original.apply(tx, [name, fn])
      if (fn === undefined)
        return original.call(tx, this.body(name as (tx: postgres.TransactionSql) => unknown))
      return original.call(tx, name, this.body(fn as (tx: postgres.TransactionSql) => unknown))
    }) as typeof tx.savepoint
  }
}

/** The members postgres.js (3.4) gives the `sql` of a transaction or savepoint, in its order. */
const TX_MEMBERS = 'types,typed,unsafe,notify,array,json,file,savepoint,prepare'
let knownMembers: boolean | undefined

/**
 * Whether a transaction's `sql` has exactly the members {@link TX_MEMBERS} names, so that a plain
 * function copying them stands in for it; another postgres.js version gets a Proxy, which passes
 * on whatever it has. Asked once: every transaction `sql` is made by the same postgres.js code.
 */
function hasKnownMembers(tx: postgres.TransactionSql): boolean {
  knownMembers ??= typeof tx === 'function' && Object.keys(tx).join(',') === TX_MEMBERS
  return knownMembers
}

/** Creates the guard of one transaction on `host` (named in its errors). */
export function transactionGuard(host?: HostAddress): TransactionGuard {
  return new TransactionGuard(host)
}
