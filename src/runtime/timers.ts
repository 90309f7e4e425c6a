/**
 * Timers that never keep a process alive.
 *
 * A driver's background work (topology polling, host probes, retry back-off) must not stop an
 * application from exiting when it has nothing else to do. Node and Bun return timer objects with
 * `unref()`; Deno returns numeric ids that `Deno.unrefTimer` releases. Everything in the core that
 * waits goes through here so that the difference lives in one place.
 *
 * @module
 */

/** Opaque handle of a timer started with {@link startTimer} or {@link startInterval}. */
export type TimerHandle = { readonly id: unknown; readonly repeat: boolean }

/**
 * How a timer treats the process. Background work (polling, probes) never holds a process open;
 * a wait that a caller's pending query depends on (a failover back-off) must, or Node would exit
 * mid-failover with the caller's promise unsettled.
 */
export interface TimerOptions {
  /** Keep the process alive while this timer is pending (default `false`). */
  keepAlive?: boolean
}

interface DenoTimers {
  unrefTimer?: (id: number) => void
}

function unref(id: unknown): void {
  if (id !== null && typeof id === 'object' && typeof (id as { unref?: unknown }).unref === 'function') {
    ;(id as { unref: () => void }).unref()
    return
  }
  const deno = (globalThis as { Deno?: DenoTimers }).Deno
  if (typeof id === 'number' && deno?.unrefTimer) deno.unrefTimer(id)
}

/**
 * Runs `fn` once after `ms` milliseconds without holding the process open.
 *
 * @example
 * ```ts
 * const timer = startTimer(() => console.log('late'), 1000)
 * stopTimer(timer) // never fires
 * ```
 */
export function startTimer(fn: () => void, ms: number, options: TimerOptions = {}): TimerHandle {
  const id = setTimeout(fn, Math.max(0, ms))
  if (!options.keepAlive) unref(id)
  return { id, repeat: false }
}

/** Runs `fn` every `ms` milliseconds without holding the process open. */
export function startInterval(fn: () => void, ms: number): TimerHandle {
  const id = setInterval(fn, Math.max(1, ms))
  unref(id)
  return { id, repeat: true }
}

/** Stops a timer; stopping one twice, or `undefined`, is harmless. */
export function stopTimer(timer: TimerHandle | undefined | null): void {
  if (!timer) return
  if (timer.repeat) clearInterval(timer.id as ReturnType<typeof setInterval>)
  else clearTimeout(timer.id as ReturnType<typeof setTimeout>)
}

/** Options of {@link sleep}. */
export interface SleepOptions extends TimerOptions {
  /** Rejects the wait with `signal.reason` as soon as the signal aborts. */
  signal?: AbortSignal
}

/**
 * Resolves after `ms` milliseconds, or rejects with `signal.reason` as soon as `signal` aborts.
 * Unless `keepAlive` is set, the wait does not keep the process alive on its own.
 *
 * @example
 * ```ts
 * await sleep(100, { keepAlive: true })
 * ```
 */
export function sleep(ms: number, options: SleepOptions = {}): Promise<void> {
  return sleepOn({ startTimer, stopTimer }, ms, options)
}

/** The timer functions a {@link sleep} waits with (a runtime's own, real or fake). */
export interface TimerFunctions {
  startTimer(fn: () => void, ms: number, options?: TimerOptions): TimerHandle
  stopTimer(timer: TimerHandle | undefined | null): void
}

/** {@link sleep} on the given timer functions. */
export function sleepOn(timers: TimerFunctions, ms: number, options: SleepOptions = {}): Promise<void> {
  const { signal } = options
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = () => {
      timers.stopTimer(timer)
      reject(signal?.reason)
    }
    const timer = timers.startTimer(
      () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      },
      ms,
      options,
    )
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Keeps the process alive until `work` settles. The driver's own connections never hold a process
 * open, so work a caller is waiting for (the first topology read, a failover) holds it instead.
 *
 * @example
 * ```ts
 * const writer = await holdOpenUntil(searchWriter(input))
 * ```
 */
export function holdOpenUntil<T>(work: Promise<T>): Promise<T> {
  // An interval's only job here is to be a pending, ref'd handle; it never needs to fire.
  const handle = setInterval(() => {}, 1 << 30)
  return work.finally(() => clearInterval(handle))
}

/**
 * `work`, or the error `onTimeout()` makes once `ms` have passed (the timer is stopped as soon as
 * `work` settles; `work` itself goes on). Never keeps the process alive.
 *
 * @example
 * ```ts
 * const token = await settleWithin(signToken(), 2_000, () => new Error('no token within 2 s'))
 * ```
 */
export function settleWithin<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = startTimer(() => reject(onTimeout()), ms)
    work.then(
      (value) => {
        stopTimer(timer)
        resolve(value)
      },
      (error: unknown) => {
        stopTimer(timer)
        reject(error)
      },
    )
  })
}
