/**
 * Time as the core sees it: a monotonic clock for durations and a wall clock for event stamps.
 * Injected wherever a unit test needs to control time.
 *
 * @module
 */

/** A source of time. `now()` is monotonic milliseconds (for durations); `wallNow()` is epoch ms. */
export interface Clock {
  /** Monotonic milliseconds since an arbitrary origin; never goes backwards. */
  now(): number
  /** Milliseconds since the Unix epoch, for timestamps shown to people. */
  wallNow(): number
}

/**
 * The real clock: `performance.now()` and `Date.now()`, available on Node, Deno and Bun.
 *
 * @example
 * ```ts
 * const started = systemClock.now()
 * const tookMs = systemClock.now() - started
 * ```
 */
export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  wallNow: () => Date.now(),
})
