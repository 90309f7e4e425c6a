/**
 * Which running statements have run longer than a grace period, without a timer per statement:
 * running statements are linked in start order, and one timer at a time is armed for the oldest one
 * that is not yet long. A statement that ends before its grace period costs a clock read, a small
 * object and its unlinking; the timer wakes at most once per grace period while statements keep
 * coming.
 *
 * An ended statement is unlinked at once, so nothing of it outlives its statement: entries kept
 * until the next sweep (up to a grace period, thousands of statements on a busy client) survived
 * the young generation's collections and were copied and promoted with every statement they
 * referenced.
 *
 * @module
 */
import type { Runtime } from '../../runtime/runtime.ts'
import type { TimerHandle } from '../../runtime/timers.ts'

/** One statement being tracked: what {@link LongStatements.track} returns, for {@link LongStatements.end}. */
export interface Tracked<T> {
  readonly item: T
  readonly startedMs: number
}

/** The tracker of one client's statements (see {@link longStatements}). */
export interface LongStatements<T> {
  /** Starts tracking; returns the function to call when the statement ends (once). */
  start(item: T): () => void
  /** Starts tracking, without a closure: hand the entry to {@link LongStatements.end} when it ends. */
  track(item: T): Tracked<T>
  /** The statement of `entry` ended (a second call does nothing). */
  end(entry: Tracked<T>): void
  /** Stops the timer and ends every long statement's watch. */
  close(): void
}

const RUNNING = 0
const LONG = 1
const ENDED = 2

/** A class, so that every entry has one shape. */
class Entry<T> implements Tracked<T> {
  /** Neighbours in start order, while running and not yet long. */
  prev: Entry<T> | undefined
  next: Entry<T> | undefined = undefined
  state: typeof RUNNING | typeof LONG | typeof ENDED = RUNNING
  /** Set once the statement became long: what to call when it ends. */
  stop: (() => void) | undefined = undefined
  constructor(
    readonly item: T,
    readonly startedMs: number,
    prev: Entry<T> | undefined,
  ) {
    this.prev = prev
  }
}

/**
 * Calls `onLong(item)` for each started item still running `graceMs` after its start (as a
 * per-statement timer would, give or take the timer's own lateness); the function `onLong`
 * returns, if any, is called when the item ends.
 *
 * @example
 * ```ts
 * const tracker = longStatements(200, systemRuntime, (ctx) => monitor.watch(ctx.host))
 * const done = tracker.start(ctx)
 * try { return await next() } finally { done() }
 * ```
 */
export function longStatements<T>(
  graceMs: number,
  runtime: Runtime,
  onLong: (item: T) => (() => void) | undefined,
): LongStatements<T> {
  // Running and not yet long, oldest first: the head is the next one to become long.
  let head: Entry<T> | undefined
  let tail: Entry<T> | undefined
  // Long and running (rare): `close()` ends their watches.
  const long = new Set<Entry<T>>()
  let timer: TimerHandle | undefined

  const arm = (delayMs: number) => {
    timer = runtime.startTimer(sweep, delayMs)
  }

  const unlink = (entry: Entry<T>) => {
    const { prev, next } = entry
    if (prev === undefined) head = next
    else prev.next = next
    if (next === undefined) tail = prev
    else next.prev = prev
    entry.prev = entry.next = undefined
  }

  function sweep(): void {
    timer = undefined
    const t = runtime.now()
    for (let entry = head; entry !== undefined; entry = head) {
      const age = t - entry.startedMs
      if (age < graceMs) {
        arm(graceMs - age)
        return
      }
      unlink(entry)
      entry.state = LONG
      long.add(entry)
      entry.stop = onLong(entry.item)
    }
  }

  const track = (item: T): Tracked<T> => {
    const entry = new Entry(item, runtime.now(), tail)
    if (tail === undefined) head = entry
    else tail.next = entry
    tail = entry
    // An armed timer is for an older statement; when it fires it re-arms for the next one.
    if (timer === undefined) arm(graceMs)
    return entry
  }
  const end = (tracked: Tracked<T>): void => {
    const entry = tracked as Entry<T>
    if (entry.state === RUNNING) {
      unlink(entry)
      entry.state = ENDED
      return
    }
    if (entry.state === ENDED) return
    entry.state = ENDED
    long.delete(entry)
    const stop = entry.stop
    entry.stop = undefined
    stop?.()
  }

  return {
    start(item) {
      const entry = track(item)
      return () => end(entry)
    },
    track,
    end,
    close() {
      runtime.stopTimer(timer)
      timer = undefined
      while (head !== undefined) {
        const entry = head
        unlink(entry)
        entry.state = ENDED
      }
      for (const entry of [...long]) end(entry)
    },
  }
}
