/**
 * Keeps postgres.js from writing to a transaction's connection after it closed.
 *
 * postgres.js answers a failed transaction body with ROLLBACK (a failed savepoint body with
 * ROLLBACK TO SAVEPOINT, a finished body with COMMIT) on the transaction's connection even after
 * that connection closed, and runs any statement the body still makes on it: the write then throws
 * a TypeError from a `setImmediate`, which crashes the process, or, once postgres.js reconnected
 * that connection, runs on a new session (another transaction's, maybe). So once the connection is
 * lost, every statement of the transaction — those the body still makes (it may have caught the
 * error and carried on), and postgres.js's own ROLLBACK or COMMIT — rejects with
 * `TransactionResolutionUnknownError` instead of reaching the connection.
 *
 * Nothing stands between the body and postgres.js while the connection lives: the body gets
 * postgres.js's own transaction `sql`, and its statements take postgres.js's own path. The guard
 * learns of the loss from the connection itself (see {@link beginGuarded}): postgres.js tells
 * `begin` that the transaction's connection closed through `connection.onclose`, synchronously
 * inside the close and before any statement's rejection reaches the body. Only then are the
 * transaction's scopes (the body's `sql`, and each savepoint's) marked, and postgres.js's query
 * dispatch (`Query.prototype.handle`, see {@link refuseStatementsOfLostTransactions}) refuses the
 * statements of a marked scope. A close is an I/O event, never a microtask, so a statement whose
 * dispatch began before the mark reaches the connection within the same turn, before postgres.js
 * hears of the close; each one after it is refused, and so is each statement postgres.js still held
 * in the transaction's queue (see {@link refuseQueuedOf}). A `file` statement is checked twice: at its
 * dispatch, which starts the file's read, and once the file is read, before the statement goes to
 * the connection (the loss may come while the read is in flight).
 *
 * @module
 */
import { type PathLike, readFile } from 'node:fs'
import type postgres from 'postgres'
import { TransactionResolutionUnknownError } from '../../core/errors.ts'
import { type HostAddress, hostKey } from '../../core/host.ts'
import { classify } from './classify.ts'
import { type QueuedConnection, refuseQueued } from './queued-refusal.ts'
import { socketClosingError } from './socket.ts'

/** Where a scope's query handler (or a `file` query's) carries the guard of its transaction. */
const GUARD = 'pgHaTransactionGuard'

type Tagged = { [GUARD]?: TransactionGuard }

/** The fields of a postgres.js query the refusal reads and writes. */
interface DispatchedQuery {
  readonly handler: Tagged & ((q: DispatchedQuery) => unknown)
  executed: boolean
  reject(error: unknown): void
}

/** What postgres.js calls with a statement to run (a scope's handler, or a `file` statement's). */
type Handler = Tagged & ((q: FileQuery) => unknown)

/** The fields of a postgres.js `file` statement the guard reads and writes. */
interface FileQuery {
  strings: string[]
  handler: Handler
  reject(error: unknown): void
}

type Scope = postgres.TransactionSql

/**
 * The state of one `sql.begin`: a class, made once per transaction (an object literal with a
 * getter and closures cost microseconds per transaction on Node).
 */
export class TransactionGuard {
  /** The connection-lost error that ended the transaction, once it is known lost. */
  lost: unknown = undefined
  /**
   * postgres.js's `reserved` of the transaction's connection: hands the connection the next
   * statement of the transaction's queue (see {@link refuseQueuedOf}).
   */
  next: (() => unknown) | undefined = undefined
  #abandoned = false
  #marked = false
  #refusal: TransactionResolutionUnknownError | undefined = undefined
  /** The body's `sql`, then those of savepoint bodies (what {@link TransactionGuard.#mark} marks). */
  #scope: Scope | undefined = undefined
  #savepoints: Scope[] | undefined = undefined
  readonly #host: HostAddress | undefined

  constructor(host?: HostAddress) {
    this.#host = host
  }

  /** Whether statements of the transaction must be refused now. */
  get closed(): boolean {
    return this.lost !== undefined || this.#abandoned
  }

  /**
   * To call with the `sql` postgres.js gives the transaction's body, and each savepoint body,
   * before the body runs: the scope is remembered for {@link TransactionGuard.lose}, and its
   * `savepoint` and `file` (whose statements do not carry the scope's handler) check the guard.
   */
  enter(tx: Scope): void {
    if (this.#scope === undefined) this.#scope = tx
    else (this.#savepoints ??= []).push(tx)
    if (this.#marked) markScope(tx, this)
    const savepoint = tx.savepoint as (...args: unknown[]) => Promise<unknown>
    // The tagged-template form runs one statement in a savepoint: its scope never reaches a body.
    // A savepoint made after the loss would open a scope nobody marked: refused here.
    tx.savepoint = ((name: unknown, fn?: unknown) => {
      if (this.closed) return Promise.reject(this.refusal())
      if (Array.isArray((name as { raw?: unknown })?.raw)) return savepoint.apply(tx, [name, fn])
      const body = (fn ?? name) as (sp: Scope) => unknown
      const entered = (sp: Scope) => {
        this.enter(sp)
        return body(sp)
      }
      return fn === undefined ? savepoint.call(tx, entered) : savepoint.call(tx, name, entered)
    }) as typeof tx.savepoint
    // A `file` statement runs through a handler of its own, which reads the file and then calls
    // the scope's: ours (see `readThenDispatch`) also refuses it once read if the loss came while
    // the read was in flight.
    const file = tx.file as unknown as (...args: unknown[]) => FileQuery
    tx.file = ((...args: unknown[]) => {
      const q = file.apply(tx, args)
      const dispatch = scopeHandler(tx)
      if (dispatch === undefined) q.handler[GUARD] = this
      else q.handler = readThenDispatch(this, args[0] as PathLike, dispatch)
      return q
    }) as unknown as typeof tx.file
  }

  /** To call when the transaction's connection closed (or was lost): every scope refuses from now on. */
  lose(error: unknown): void {
    this.lost ??= error
    this.#mark()
  }

  /** To call when `begin` itself settled with an error: no statement of the transaction runs after it. */
  abandon(error?: unknown): void {
    this.#abandoned = true
    if (error !== undefined && classify(error) === 'connection-lost') this.lost ??= error
    this.#mark()
  }

  /** What a statement made after the loss rejects with. */
  refusal(): TransactionResolutionUnknownError {
    const host = this.#host
    this.#refusal ??= new TransactionResolutionUnknownError(host && hostKey(host), undefined, {
      cause: this.lost,
    })
    return this.#refusal
  }

  #mark(): void {
    if (this.#marked) return
    this.#marked = true
    if (this.#scope !== undefined) markScope(this.#scope, this)
    if (this.#savepoints !== undefined) for (const sp of this.#savepoints) markScope(sp, this)
  }
}

/**
 * The query handler of a scope, which every statement of the scope (tagged, `unsafe`, and
 * postgres.js's own ROLLBACK and COMMIT) carries: a scope's `sql` does not expose it, a query made
 * (never run) does. Undefined if postgres.js's queries no longer carry it.
 */
function scopeHandler(tx: Scope): Handler | undefined {
  const made = (tx.unsafe as unknown as (text: string) => { handler?: unknown })('')
  return typeof made.handler === 'function' ? (made.handler as Handler) : undefined
}

/** Puts the guard on the query handler of a scope (see {@link scopeHandler}). */
function markScope(tx: Scope, guard: TransactionGuard): void {
  // Runs inside postgres.js's handling of a close: nothing may throw from here.
  try {
    const handler = scopeHandler(tx)
    if (handler !== undefined) handler[GUARD] = guard
  } catch {}
}

/**
 * The handler of a `file` statement of a guarded scope, in place of postgres.js's: it reads the
 * file as postgres.js does (utf8; a read error rejects the statement, as does a path that is
 * none), then hands the statement to the scope's handler — unless the transaction was lost while
 * the file was read, when it refuses it as the patched dispatch does. postgres.js's handler would hand it to the scope regardless, which
 * writes it to the closed connection, or to the new session postgres.js reconnected it to.
 * It carries the guard too, so that the dispatch refuses the statement before any read once the
 * transaction is lost.
 */
function readThenDispatch(guard: TransactionGuard, path: PathLike, dispatch: Handler): Handler {
  const read: Handler = (q) => {
    try {
      readFile(path, 'utf8', (error, text) => {
        if (error) return q.reject(error)
        q.strings = [text]
        if (guard.closed) q.reject(guard.refusal())
        else dispatch(q)
      })
    } catch (error) {
      // Not a path (ERR_INVALID_ARG_TYPE, thrown at once): postgres.js's handler let it escape its
      // dispatch as an unhandled rejection and the statement never settled.
      q.reject(error)
    }
  }
  read[GUARD] = guard
  return read
}

/** Creates the guard of one transaction on `host` (named in its errors). */
export function transactionGuard(host?: HostAddress): TransactionGuard {
  return new TransactionGuard(host)
}

const patched = new WeakSet<object>()

/**
 * Makes postgres.js's query dispatch refuse the statements of a lost transaction (see the module
 * doc). `Query` is postgres.js's query class (one per module instance); patching it twice does
 * nothing. Every other statement pays one property read.
 */
export function refuseStatementsOfLostTransactions(Query: { prototype: object }): void {
  if (patched.has(Query)) return
  patched.add(Query)
  const proto = Query.prototype as { handle: (this: DispatchedQuery) => unknown }
  const handle = proto.handle
  Object.defineProperty(proto, 'handle', {
    configurable: true,
    writable: true,
    value(this: DispatchedQuery) {
      const guard = this.handler[GUARD]
      if (guard === undefined || this.executed || !guard.closed) return handle.call(this)
      this.executed = true
      this.reject(guard.refusal())
      return Promise.resolve()
    },
  })
}

/** The fields of a postgres.js connection the guard uses. */
interface Connection extends QueuedConnection {
  onclose?: ((error: unknown) => void) | null
  [GUARD]?: TransactionGuard | undefined
}

/** A pool's `unsafe`, once {@link beginGuarded} took it over. */
type Unsafe = ((
  text: unknown,
  args?: unknown,
  options?: unknown,
) => { options?: { onexecute?: (c: Connection) => unknown } }) & {
  [GUARD]?: true
}

/** The guard of the `begin` being called now: postgres.js makes its BEGIN inside that call. */
let beginning: TransactionGuard | undefined

/**
 * `sql.begin(mode, fn)` on the postgres.js pool `sql`, its connection watched for `guard`.
 *
 * postgres.js's `begin` makes its BEGIN with the pool's own `unsafe` (looked up on the pool's
 * `sql` at every call), passing an `onexecute` that receives the connection the transaction runs
 * on; it then hands that connection the rejection of `begin` as `connection.onclose`, which the
 * pool calls, synchronously, when the connection closes. The pool's `unsafe` is taken over once
 * to see that connection; the connection's `onclose` once, to mark the guard it carries lost
 * before passing the close on.
 */
export function beginGuarded(
  sql: postgres.Sql,
  guard: TransactionGuard,
  mode: string,
  fn: (tx: Scope) => unknown,
): Promise<unknown> {
  const own = sql as unknown as { unsafe: Unsafe }
  if (own.unsafe[GUARD] !== true) own.unsafe = watchingUnsafe(own.unsafe)
  beginning = guard
  try {
    return sql.begin(mode, fn as (tx: Scope) => Promise<unknown>)
  } finally {
    beginning = undefined
  }
}

function watchingUnsafe(unsafe: Unsafe): Unsafe {
  // postgres.js's `unsafe` takes up to three arguments, the last two defaulted when undefined, and
  // reads two as (text, options): passed on with the same count, without a rest array and spread.
  const watching: Unsafe = function (text, args, options) {
    // biome-ignore lint/complexity/noArguments: the count is what postgres.js reads
    const q = arguments.length === 2 ? unsafe(text, args) : unsafe(text, args, options)
    const guard = beginning
    const made = q.options
    const onexecute = made?.onexecute
    if (guard === undefined || onexecute === undefined) return q
    beginning = undefined
    made!.onexecute = (c) => {
      bind(c, guard)
      const result = onexecute(c)
      // postgres.js's `onexecute` just set it: the transaction's queue, drained one by one.
      guard.next = c.reserved ?? undefined
      return result
    }
    return q
  }
  watching[GUARD] = true
  return watching
}

function bind(c: Connection, guard: TransactionGuard): void {
  if (!(GUARD in c)) watchClose(c)
  c[GUARD] = guard
}

/**
 * Takes over `c.onclose` (postgres.js's pool calls it, if set, with the close's error): the guard
 * of the transaction on `c` is marked lost first, with the socket's own error when there was one
 * (what the statements in flight rejected with), then `begin` is told.
 */
function watchClose(c: Connection): void {
  let onclose = c.onclose
  const closed = (error: unknown) => {
    const guard = c[GUARD]
    c[GUARD] = undefined
    if (guard !== undefined) {
      guard.lose(socketClosingError() ?? error)
      refuseQueuedOf(c, guard)
    }
    onclose?.(error)
  }
  c[GUARD] = undefined
  Object.defineProperty(c, 'onclose', {
    configurable: true,
    enumerable: true,
    // Also while BEGIN runs (the guard is set, `begin` has not handed over its rejection yet).
    get: () => (onclose || c[GUARD] !== undefined ? closed : onclose),
    set: (value: Connection['onclose']) => {
      onclose = value
    },
  })
}

/**
 * Settles the statements postgres.js still held in the transaction's own queue when `c` closed
 * (see queued-refusal.ts): each rejects with the guard's refusal. It costs nothing before a loss.
 */
function refuseQueuedOf(c: Connection, guard: TransactionGuard): void {
  const next = guard.next
  guard.next = undefined
  if (next === undefined) return
  const refusal = guard.refusal()
  refuseQueued(c, next, (q: DispatchedQuery) => q.reject(refusal))
}
