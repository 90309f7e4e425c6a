/**
 * Read-your-writes on replicas: a read through `sql.ha.reader` that follows a committed write of
 * the same client waits until the chosen reader has replayed that write, by comparing WAL
 * positions — the writer's `pg_current_wal_lsn()` taken after the write against the reader's
 * `pg_last_wal_replay_lsn()` — for at most `readYourWritesTimeoutMs`; then the read runs on the
 * writer. Writes cost nothing (a counter); the writer's position is asked for lazily, by the first
 * read after a write, in parallel with the reader's, which the driver pipelines with the read
 * itself on the read's connection ({@link readAfterWrite}): a read on a caught-up reader costs no
 * extra round trip.
 *
 * @module
 */

import type { Runtime } from '../runtime/runtime.ts'
import type { ConnectionFactory, DbConnection } from './connection-factory.ts'
import { type HostAddress, hostKey } from './host.ts'
import type { ExecuteContext, Precheck } from './plugin.ts'

/** The writer's WAL position. On PostgreSQL 10+ (and Aurora). */
export const WRITER_LSN_QUERY = 'select pg_catalog.pg_current_wal_lsn()::text as lsn'
/** The last WAL position a standby replayed; null on a primary. */
export const REPLAY_LSN_QUERY = 'select pg_catalog.pg_last_wal_replay_lsn()::text as lsn'

/**
 * Interval between checks of a reader that is behind: replay usually trails a synchronous commit
 * by a millisecond or two, so the first checks come quickly, then at most every 5 ms.
 */
const pollMs = (tries: number) => Math.min(5, 1 + (tries >> 1))

/** Parses a `pg_lsn` (`16/B374D848`) into a comparable number. */
export function parseLsn(text: string | null | undefined): bigint | undefined {
  if (!text) return undefined
  const slash = text.indexOf('/')
  if (slash < 0) return undefined
  return (BigInt(`0x${text.slice(0, slash)}`) << 32n) | BigInt(`0x${text.slice(slash + 1)}`)
}

/** What {@link ReadYourWrites} needs from the client. */
export interface ReadYourWritesDeps {
  /** Opens internal connections (through the connect plugins). */
  readonly factory: ConnectionFactory
  /** The host writes go to now. */
  writer(): HostAddress | undefined
  readonly timeoutMs: number
  readonly probeTimeoutMs: number
  /** Time and timers of the client. */
  readonly runtime: Runtime
  readonly signal: AbortSignal
}

/**
 * Tracks the client's writes and tells whether a reader has replayed them.
 *
 * @example
 * ```ts
 * const ryw = new ReadYourWrites(deps)
 * ryw.noteWrite() // after each statement on the writer settles
 * const onReader = await ryw.caughtUp(reader) // false: run the read on the writer
 * ```
 */
export class ReadYourWrites {
  readonly #deps: ReadYourWritesDeps
  /** Writer statements settled so far. */
  #writes = 0
  /** How many writes {@link #target} covers, and the writer's position after them. */
  #covered = 0
  #target = 0n
  #fetch: { from: number; promise: Promise<bigint | undefined> } | undefined
  /** The highest replay position each reader was seen at. */
  readonly #replayed = new Map<string, bigint>()
  readonly #conns = new Map<string, Promise<DbConnection>>()
  /** Extra statements sent, for the benchmark. */
  statements = 0

  constructor(deps: ReadYourWritesDeps) {
    this.#deps = deps
  }

  /** Records that a statement settled on the writer: it may have committed a write. */
  noteWrite(): void {
    this.#writes++
  }

  /** Whether `host` is known, without asking anyone, to have replayed every write noted so far. */
  known(host: HostAddress): boolean {
    if (this.#writes === 0) return true
    const seen = this.#replayed.get(hostKey(host))
    return this.#covered === this.#writes && seen !== undefined && seen >= this.#target
  }

  /**
   * `true` when `host` has replayed every write noted so far (synchronously when already known),
   * `false` when it did not within the timeout or could not be asked.
   */
  caughtUp(host: HostAddress): boolean | Promise<boolean> {
    return this.known(host) || this.#wait(host)
  }

  /**
   * The writer's position after every write noted so far, asked once for all the reads that
   * follow the same writes; `undefined` when the writer cannot say.
   */
  target(): Promise<bigint | undefined> {
    return this.#targetFor(this.#writes).catch(() => undefined)
  }

  /**
   * Records the replay position `host` reported (`pg_last_wal_replay_lsn()` as text, run by the
   * driver right before a read on the read's own connection); whether it covers `target`.
   */
  covers(host: HostAddress, replayed: unknown, target: bigint | undefined): boolean {
    this.statements++
    const lsn = parseLsn(typeof replayed === 'string' ? replayed : undefined)
    if (lsn === undefined) return false
    const key = hostKey(host)
    if (lsn > (this.#replayed.get(key) ?? -1n)) this.#replayed.set(key, lsn)
    return target !== undefined && lsn >= target
  }

  async #wait(host: HostAddress): Promise<boolean> {
    const deadline = this.#deps.runtime.now() + this.#deps.timeoutMs
    try {
      const needed = this.#writes
      const [target, first] = await Promise.all([this.#targetFor(needed), this.#replay(host)])
      if (target === undefined) return false
      for (let replayed = first, tries = 0; ; replayed = await this.#replay(host), tries++) {
        if (replayed !== undefined && replayed >= target) return true
        const wait = pollMs(tries)
        if (this.#deps.runtime.now() + wait > deadline || this.#deps.signal.aborted) return false
        await this.#deps.runtime.sleep(wait)
      }
    } catch {
      // A reader that cannot say how far it is cannot promise the write: the writer can.
      return false
    }
  }

  /** The writer's position after the first `needed` writes; reads after the same writes share one ask. */
  #targetFor(needed: number): Promise<bigint | undefined> {
    if (this.#covered >= needed) return Promise.resolve(this.#target)
    if (this.#fetch && this.#fetch.from >= needed) return this.#fetch.promise
    const from = this.#writes
    const writer = this.#deps.writer()
    if (!writer) return Promise.resolve(undefined)
    const promise = this.#ask(writer, WRITER_LSN_QUERY).then((lsn) => {
      if (lsn !== undefined && from > this.#covered) {
        this.#covered = from
        this.#target = lsn
      }
      return lsn
    })
    const fetch = { from, promise }
    this.#fetch = fetch
    void promise.finally(() => {
      if (this.#fetch === fetch) this.#fetch = undefined
    })
    return promise
  }

  async #replay(host: HostAddress): Promise<bigint | undefined> {
    const lsn = await this.#ask(host, REPLAY_LSN_QUERY)
    const key = hostKey(host)
    if (lsn !== undefined && lsn > (this.#replayed.get(key) ?? -1n)) this.#replayed.set(key, lsn)
    return lsn
  }

  async #ask(host: HostAddress, text: string): Promise<bigint | undefined> {
    const key = hostKey(host)
    let pending = this.#conns.get(key)
    if (!pending) {
      pending = this.#deps.factory.connect({ host, purpose: 'probe', timeoutMs: this.#deps.probeTimeoutMs })
      this.#conns.set(key, pending)
    }
    try {
      const conn = await pending
      if (this.#deps.signal.aborted) conn.abort()
      if (conn.closed) throw new Error('closed')
      this.statements++
      const [row] = await conn.query<{ lsn: string | null }>(text, [], {
        timeoutMs: this.#deps.probeTimeoutMs,
      })
      return parseLsn(row?.lsn)
    } catch (error) {
      if (this.#conns.get(key) === pending) this.#conns.delete(key)
      void pending.then((c) => c.abort()).catch(() => {})
      throw error
    }
  }

  /** Closes the connections it opened. */
  end(): void {
    for (const pending of this.#conns.values()) void pending.then((c) => c.abort()).catch(() => {})
    this.#conns.clear()
  }
}

/**
 * A read through `sql.ha.reader` after a write, on a reader not yet known to have replayed it, in
 * one round trip: the reader's `pg_last_wal_replay_lsn()` runs on the read's own connection right
 * before the read (pipelined by the driver; the read's snapshot is taken after it), while the
 * writer is asked for its position in parallel. Caught up, the read's result stands. Behind (or
 * unable to tell), that result may predate the write: it is thrown away — nothing of it reached the
 * caller, and a standby changed nothing — and the read runs again once the reader has caught up
 * (within `readYourWritesTimeoutMs`), else on the writer. A lost connection is left to the plugins.
 *
 * @example
 * ```ts
 * const rows = await readAfterWrite(ryw, reader, ctx, (h) => runOn(h), () => runOn(writer), isLost)
 * ```
 */
export async function readAfterWrite<T>(
  ryw: ReadYourWrites,
  host: HostAddress,
  ctx: ExecuteContext,
  run: (host: HostAddress) => Promise<T>,
  onWriter: () => Promise<T>,
  lostConnection: (error: unknown) => boolean,
): Promise<T> {
  const precheck: Precheck = { text: REPLAY_LSN_QUERY }
  const target = ryw.target()
  // The driver reads it when the attempt starts, synchronously.
  ctx.precheck = precheck
  let work: Promise<T>
  try {
    work = run(host)
  } finally {
    ctx.precheck = undefined
  }
  const outcome = await work.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  )
  const replayed = await precheck.value?.catch(() => undefined)
  if (ryw.covers(host, replayed, await target)) {
    if (outcome.ok) return outcome.value
    throw outcome.error
  }
  if (!outcome.ok && lostConnection(outcome.error)) throw outcome.error
  return (await ryw.caughtUp(host)) ? run(host) : onWriter()
}
