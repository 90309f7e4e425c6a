/**
 * The lab's event clock: epoch milliseconds with a fraction, comparable across processes — the lab
 * daemon, the tests and the benchmarks, on any runtime — to within a millisecond.
 *
 * `performance.timeOrigin + performance.now()` is not: a process fixes `timeOrigin` from the wall
 * clock once, at its start, and then counts on the monotonic clock, so two processes disagree by
 * however far the wall clock was slewed or stepped between their starts. On these machines it
 * drifted 100-220 ppm from the monotonic clock (while time synchronisation was correcting it): a
 * lab daemon a few minutes old, handed from test file to test file, stamped a fault it caused
 * 20-60 ms before the test's own "before", and the test waited for it in vain. The monotonic clock
 * is no common base either (Deno's and Bun's `process.hrtime` count from their own start). So the
 * reading follows the wall clock, which every process reads alike at any instant (`Date.now()`,
 * whole milliseconds), and the monotonic clock supplies the fraction in between.
 *
 * @module
 */

/**
 * How far apart two processes' readings of the same instant may be: each is within a millisecond
 * of the wall clock. Something caused after a reading in another process is stamped no earlier
 * than that reading minus this.
 */
export const CLOCK_SLACK_MS = 2

/**
 * Whether a time stamped by {@link nowMs} in one process (`atMs`) may be at or after `afterMs`,
 * read in another: the one comparison of lab times across processes, with the clocks' slack.
 */
export function atOrAfter(atMs: number, afterMs: number): boolean {
  return atMs >= afterMs - CLOCK_SLACK_MS
}

/** A reading function over the given wall clock (whole ms) and monotonic clock (ms); see {@link nowMs}. */
export function epochClock(wall: () => number, monotonic: () => number): () => number {
  let offset = wall() - monotonic()
  let last = Number.NEGATIVE_INFINITY
  return () => {
    const w = wall()
    const m = monotonic()
    let t = m + offset
    // The wall clock's reading is the current time rounded down: outside [w, w + 1) we drifted.
    if (t < w || t >= w + 1) {
      offset = w + 0.5 - m
      t = w + 0.5
    }
    // Never backwards within a process (a re-anchoring, or a wall clock stepped back).
    if (t < last) t = last
    last = t
    return t
  }
}

/**
 * Epoch milliseconds with a fraction, comparable across processes within {@link CLOCK_SLACK_MS}.
 *
 * @example
 * ```ts
 * const before = nowMs()
 * await lab.kill('writer')
 * const fault = await lab.waitForEvent('fault', { afterMs: before })
 * ```
 */
export const nowMs: () => number = epochClock(
  () => Date.now(),
  () => performance.now(),
)
