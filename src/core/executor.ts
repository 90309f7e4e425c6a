/**
 * The contract between a driver's `sql` surface and the core: the driver describes what it is about
 * to run, and the core runs it through the plugin pipeline on the host it chooses.
 *
 * @module
 */
import type { HostAddress, TargetRole } from './host.ts'
import type { ExecuteContext, ExecuteKind } from './plugin.ts'

/** What the driver tells the core about a unit of work before running it. */
export interface ExecuteRequest {
  readonly kind: ExecuteKind
  /** Default: the client's `targetRole`. */
  readonly targetRole?: TargetRole
  /** Run on exactly this host (a reserved connection); failover may still replace it. */
  readonly pinnedHost?: HostAddress
  /** True inside `sql.begin` or on a reserved connection with an open transaction. */
  readonly inTransaction?: boolean
  /** From `sql.ha.reader`: `readerFallback` and read-your-writes apply. */
  readonly forReader?: boolean
  /** Statement text for logs, without parameters. */
  readonly description?: string
  /**
   * The driver can run {@link ExecuteContext.precheck} before this work on the same connection, and
   * nothing of its result reaches the caller before the work settles (no cursor, no `forEach`): a
   * result the core throws away was never seen.
   */
  readonly discardable?: boolean
}

/**
 * One try at running the work on `host`. The driver must set `ctx.sent = true` as soon as anything
 * may have reached the server, and `ctx.delivered = true` once part of a result was handed to the
 * caller, so that plugins never replay work that may have run.
 */
export type Attempt<T> = (host: HostAddress, ctx: ExecuteContext) => Promise<T>

/**
 * Runs work through the plugins. Transparent retries call `attempt` again, possibly on another host.
 *
 * @example
 * ```ts
 * const rows = await executor.execute({ kind: 'statement', description: 'select 1' }, (host, ctx) => {
 *   const q = poolFor(host)`select 1`
 *   ctx.sent = true
 *   return q
 * })
 * ```
 */
export interface Executor {
  execute<T>(request: ExecuteRequest, attempt: Attempt<T>): Promise<T>
  /**
   * The fast path: when the common case holds for `request` (see core/execute-lane.ts), a lane on
   * which the driver runs the first attempt itself, with no promise of the core's; otherwise
   * `undefined`, and the work goes through {@link Executor.execute}.
   */
  lane?(request: ExecuteRequest): Lane | undefined
}

/**
 * A unit of work on the fast path. The driver runs its first attempt on `host`, sets `ctx.sent`
 * (and `ctx.delivered`) as an {@link Attempt} would, and then reports the outcome once: `settled()`
 * after a success, or `failed(error, attempt)`, which carries on through the plugins exactly as
 * {@link Executor.execute} would have after that attempt failed (a retry calls `attempt`).
 */
export interface Lane {
  /** Where the first attempt runs. */
  readonly host: HostAddress
  readonly ctx: ExecuteContext
  settled(): void
  failed<T>(error: unknown, attempt: Attempt<T>): Promise<T>
}
