/**
 * Counts the timers a process holds, on every runtime: `setTimeout`/`setInterval` are wrapped so
 * that each live timer is known, and whether it would keep the process alive (`hasRef()` on Node
 * and Bun timer objects; `Deno.unrefTimer` on Deno's numeric ids). Install it before the code
 * under test creates its timers; it only observes.
 *
 * @module
 */

/** Who created a timer: the first frame of its creation stack in postgres-ha or postgres.js. */
export type TimerOrigin = 'postgres-ha' | 'postgres.js' | 'other'

/** Live timers, and how many of them keep the process alive. */
export interface TimerTally {
  live: number
  refed: number
}

/** Live timers now, in all and by origin. */
export interface TimerCount extends TimerTally {
  byOrigin: Record<TimerOrigin, TimerTally>
}

/** The census, once installed. */
export interface TimerCensus {
  count(): TimerCount
}

let installed: TimerCensus | undefined

/** `a − b`, field by field. */
export function timerDelta(a: TimerCount, b: TimerCount): TimerCount {
  const sub = (x: TimerTally, y: TimerTally): TimerTally => ({
    live: x.live - y.live,
    refed: x.refed - y.refed,
  })
  return {
    ...sub(a, b),
    byOrigin: {
      'postgres-ha': sub(a.byOrigin['postgres-ha'], b.byOrigin['postgres-ha']),
      'postgres.js': sub(a.byOrigin['postgres.js'], b.byOrigin['postgres.js']),
      other: sub(a.byOrigin.other, b.byOrigin.other),
    },
  }
}

/**
 * Wraps the global timer functions (once per process) and returns the census.
 *
 * @example
 * ```ts
 * const census = installTimerCensus()
 * const before = census.count()
 * ```
 */
export function installTimerCensus(): TimerCensus {
  if (installed) return installed
  const g = globalThis as any
  const live = new Map<unknown, TimerOrigin>()
  const unrefed = new Set<unknown>()
  const { setTimeout: st, clearTimeout: ct, setInterval: si, clearInterval: ci } = g
  g.setTimeout = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const id = st.call(
      globalThis,
      (...a: unknown[]) => {
        live.delete(id)
        fn(...a)
      },
      ms,
      ...args,
    )
    live.set(id, originOf(new Error().stack))
    return id
  }
  g.clearTimeout = (id: unknown) => {
    live.delete(id)
    return ct.call(globalThis, id)
  }
  g.setInterval = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const id = si.call(globalThis, fn, ms, ...args)
    live.set(id, originOf(new Error().stack))
    return id
  }
  g.clearInterval = (id: unknown) => {
    live.delete(id)
    return ci.call(globalThis, id)
  }
  const deno = g.Deno
  if (deno && typeof deno.unrefTimer === 'function') {
    const unref = deno.unrefTimer
    try {
      deno.unrefTimer = (id: number) => {
        unrefed.add(id)
        return unref.call(deno, id)
      }
    } catch {
      // A read-only Deno namespace: numeric timers then all count as refed.
    }
  }
  installed = {
    count() {
      const total: TimerTally = { live: 0, refed: 0 }
      const byOrigin: Record<TimerOrigin, TimerTally> = {
        'postgres-ha': { live: 0, refed: 0 },
        'postgres.js': { live: 0, refed: 0 },
        other: { live: 0, refed: 0 },
      }
      for (const [id, origin] of live) {
        const hasRef = (id as { hasRef?: () => boolean } | null)?.hasRef
        const refed = typeof hasRef === 'function' ? hasRef.call(id) : !unrefed.has(id)
        for (const tally of [total, byOrigin[origin]]) {
          tally.live++
          if (refed) tally.refed++
        }
      }
      for (const id of unrefed) if (!live.has(id)) unrefed.delete(id)
      return { ...total, byOrigin }
    },
  }
  return installed
}

function originOf(stack: string | undefined): TimerOrigin {
  for (const line of (stack ?? '').split('\n').slice(1)) {
    if (line.includes('timer-census')) continue
    if (/node_modules[\\/]postgres[\\/]/.test(line)) return 'postgres.js'
    if (/[\\/]src[\\/]/.test(line) && !line.includes('node_modules')) return 'postgres-ha'
  }
  return 'other'
}
