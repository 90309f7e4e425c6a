/**
 * The benchmark process's own share of a stall: a timer due every `everyMs` records how late it
 * fired (event-loop lag: the process was busy, collecting garbage, or not scheduled) and the CPU
 * the process used since the last tick. A gap in acknowledgements with the server idle and the
 * lag high is the client's process (or the machine); with the lag low, it is elsewhere.
 *
 * @module
 */
import { nowMs } from './report.ts'

/** One tick: epoch ms, how late it fired, CPU ms used since the previous tick. */
export interface LagTick {
  atMs: number
  lateMs: number
  cpuMs: number
}

/** A running monitor. */
export interface LoopLag {
  readonly ticks: readonly LagTick[]
  stop(): void
}

/**
 * Starts the monitor; it stops by itself after `maxMs`.
 *
 * @example
 * ```ts
 * const lag = startLoopLag({ everyMs: 5, maxMs: 20_000 })
 * lag.stop()
 * ```
 */
export function startLoopLag(options: { everyMs: number; maxMs: number }): LoopLag {
  const ticks: LagTick[] = []
  const until = performance.now() + options.maxMs
  let timer: ReturnType<typeof setTimeout> | undefined
  let cpu = process.cpuUsage()
  const tick = (due: number) => {
    const now = performance.now()
    const used = process.cpuUsage(cpu)
    cpu = process.cpuUsage()
    ticks.push({
      atMs: nowMs(),
      lateMs: Math.round((now - due) * 10) / 10,
      cpuMs: Math.round((used.user + used.system) / 100) / 10,
    })
    if (now < until) timer = setTimeout(tick, options.everyMs, now + options.everyMs)
  }
  timer = setTimeout(tick, options.everyMs, performance.now() + options.everyMs)
  return {
    ticks,
    stop: () => clearTimeout(timer),
  }
}
