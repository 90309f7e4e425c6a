/**
 * A {@link Runtime} whose time moves only when a test says so. Timers fire in order of due time
 * as `advance()` passes them, and every promise chain they start settles before the next fires,
 * so a state machine that waits (a writer search, a monitor's polling) runs in microseconds and
 * always the same way.
 *
 * @example
 * ```ts
 * const rt = fakeRuntime()
 * const done = searchWriter({ runtime: rt, ... })
 * await rt.advance(100)
 * ```
 *
 * @module
 */

import type { Runtime } from '../../src/runtime/runtime.ts'
import { type SleepOptions, sleepOn, type TimerHandle, type TimerOptions } from '../../src/runtime/timers.ts'

/** A runtime moved by hand. */
export interface FakeRuntime extends Runtime {
  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): Promise<void>
  /** Moves time in steps of `stepMs` until `done()` holds or `maxMs` passed; returns whether it held. */
  advanceUntil(done: () => boolean, maxMs: number, stepMs?: number): Promise<boolean>
  /** Moves time forward at once, firing no timer (a token's age, a cache's expiry). */
  jump(ms: number): void
  /** Lets every promise chain that can move, move (without moving time). */
  settle(): Promise<void>
  /** Timers pending, with their delay from now (keep-alive ones flagged). */
  pending(): Array<{ inMs: number; keepAlive: boolean }>
}

interface FakeTimer {
  readonly at: number
  readonly seq: number
  readonly fn: () => void
  readonly keepAlive: boolean
}

const macrotask: (fn: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (fn) => (globalThis as unknown as { setImmediate(f: () => void): void }).setImmediate(fn)
    : (fn) => setTimeout(fn, 0)

/** Creates a fake runtime whose monotonic clock starts at `start` ms. */
export function fakeRuntime(start = 1_000_000): FakeRuntime {
  let now = start
  let seq = 0
  const timers = new Map<number, FakeTimer>()
  // Wall time starts at the real one (tokens and secrets are stamped with it) and moves with `now`.
  const wallStart = Date.now()

  // A macrotask runs only once the microtask queue is empty: every chain that can settle has.
  const settle = async () => {
    for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => macrotask(resolve))
  }

  function startTimer(fn: () => void, ms: number, options: TimerOptions = {}): TimerHandle {
    const id = ++seq
    timers.set(id, { at: now + Math.max(0, ms), seq: id, fn, keepAlive: options.keepAlive === true })
    return { id, repeat: false }
  }

  function stopTimer(timer: TimerHandle | undefined | null): void {
    if (timer) timers.delete(timer.id as number)
  }

  const sleep = (ms: number, options?: SleepOptions) => sleepOn({ startTimer, stopTimer }, ms, options)

  function next(until: number): FakeTimer | undefined {
    let best: FakeTimer | undefined
    for (const t of timers.values())
      if (t.at <= until && (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq))) best = t
    return best
  }

  async function advance(ms: number): Promise<void> {
    const target = now + ms
    await settle()
    // Bounded: a timer that re-arms itself at 0 ms must not spin forever.
    for (let fired = 0; fired < 100_000; fired++) {
      const t = next(target)
      if (!t) break
      timers.delete(t.seq)
      now = Math.max(now, t.at)
      t.fn()
      await settle()
    }
    now = target
    await settle()
  }

  return {
    now: () => now,
    wallNow: () => wallStart + now - start,
    startTimer,
    stopTimer,
    sleep,
    holdOpenUntil: (work) => work,
    advance,
    async advanceUntil(done, maxMs, stepMs = 10) {
      for (let passed = 0; passed <= maxMs; passed += stepMs) {
        await settle()
        if (done()) return true
        await advance(stepMs)
      }
      return done()
    },
    settle,
    jump: (ms) => void (now += ms),
    pending: () => [...timers.values()].map((t) => ({ inMs: t.at - now, keepAlive: t.keepAlive })),
  }
}
