/**
 * The runtime as everything that waits sees it: time (a {@link Clock}) and timers, in one object
 * handed to the client, its monitors and its plugins. The real one is {@link systemRuntime}; a
 * unit test passes a fake that it moves by hand, so the failover state machines run in
 * microseconds without a database.
 *
 * @module
 */
import { type Clock, systemClock } from './clock.ts'
import {
  holdOpenUntil,
  type SleepOptions,
  sleep,
  startTimer,
  stopTimer,
  type TimerHandle,
  type TimerOptions,
} from './timers.ts'

/**
 * Time and timers. Timers never hold the process open unless `keepAlive` is set;
 * {@link Runtime.holdOpenUntil} keeps it alive while a caller waits for background work.
 *
 * @example
 * ```ts
 * const started = runtime.now()
 * await runtime.sleep(20, { keepAlive: true })
 * const timer = runtime.startTimer(() => poll(), 1000)
 * runtime.stopTimer(timer)
 * ```
 */
export interface Runtime extends Clock {
  /** Runs `fn` once after `ms` milliseconds. */
  startTimer(fn: () => void, ms: number, options?: TimerOptions): TimerHandle
  /** Stops a timer; stopping one twice, or `undefined`, is harmless. */
  stopTimer(timer: TimerHandle | undefined | null): void
  /** Resolves after `ms` milliseconds, or rejects with `signal.reason` as soon as the signal aborts. */
  sleep(ms: number, options?: SleepOptions): Promise<void>
  /** Keeps the process alive until `work` settles. */
  holdOpenUntil<T>(work: Promise<T>): Promise<T>
}

/**
 * The real runtime: `performance.now()`, `Date.now()` and the runtime's timers.
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { runtime: systemRuntime }) // the default
 * ```
 */
export const systemRuntime: Runtime = Object.freeze({
  now: systemClock.now,
  wallNow: systemClock.wallNow,
  startTimer,
  stopTimer,
  sleep,
  holdOpenUntil,
})

/**
 * `runtime` reading time from `clock` (the `clock` option: a test freezes or moves time) while
 * its timers stay the runtime's own, as they were before the runtime object existed.
 *
 * @example
 * ```ts
 * const runtime = runtimeWithClock(systemRuntime, { now: () => 0, wallNow: () => 0 })
 * ```
 */
export function runtimeWithClock(runtime: Runtime, clock: Clock): Runtime {
  return Object.freeze({ ...runtime, now: () => clock.now(), wallNow: () => clock.wallNow() })
}
