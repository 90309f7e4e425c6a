/**
 * Which running statements have run longer than a grace period, without a timer per statement:
 * statements are kept in start order, and one timer at a time is armed for the oldest one that is
 * not yet long. A statement that ends before its grace period costs an array push and a flag;
 * the timer wakes at most once per grace period while statements keep coming.
 *
 * @module
 */
import type { Runtime } from '../../runtime/runtime.ts'
import type { TimerHandle } from '../../runtime/timers.ts'

/** One statement being tracked: what {@link LongStatements.track} returns, for {@link LongStatements.end}. */
export interface Tracked<T> {
  readonly item: T
  readonly startedMs: number
  /** Set once the statement became long: what to call when it ends. */
  end: (() => void) | undefined
  long: boolean
  ended: boolean
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
  // In start order: the first entry neither ended nor long is the next one to become long. An
  // ending statement only flags its entry (no hashing, no removal); each sweep drops the ended.
  let running: Tracked<T>[] = []
  let timer: TimerHandle | undefined

  const arm = (delayMs: number) => {
    timer = runtime.startTimer(sweep, delayMs)
  }

  function sweep(): void {
    timer = undefined
    const t = runtime.now()
    // Drops the ended in place: no new array and no callback per statement, every grace period.
    let kept = 0
    for (let i = 0; i < running.length; i++) {
      const entry = running[i]!
      if (!entry.ended) running[kept++] = entry
    }
    running.length = kept
    for (const entry of running) {
      if (entry.long) continue
      const age = t - entry.startedMs
      if (age < graceMs) {
        arm(graceMs - age)
        return
      }
      entry.long = true
      entry.end = onLong(entry.item)
    }
  }

  const track = (item: T): Tracked<T> => {
    const entry: Tracked<T> = { item, startedMs: runtime.now(), end: undefined, long: false, ended: false }
    running.push(entry)
    // An armed timer is for an older statement; when it fires it re-arms for the next one.
    if (timer === undefined) arm(graceMs)
    return entry
  }
  const end = (entry: Tracked<T>): void => {
    if (entry.ended) return
    entry.ended = true
    const stop = entry.end
    if (stop === undefined) return
    entry.end = undefined
    stop()
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
      const entries = running
      running = []
      for (const entry of entries) {
        if (entry.ended) continue
        entry.ended = true
        const end = entry.end
        entry.end = undefined
        end?.()
      }
    },
  }
}
