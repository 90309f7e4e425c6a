/**
 * What the runtime itself says is keeping the process busy, for tests that check that nothing
 * accumulates (sockets, timers) over many failovers or topology changes.
 */
import assert from 'node:assert/strict'
import process from 'node:process'

/** Open sockets and timers; undefined where the runtime reports none (bun). */
export interface ActiveResources {
  readonly sockets: number
  readonly timers: number
}

/** The sockets and timers `process.getActiveResourcesInfo()` lists (node, deno). */
export function activeResources(): ActiveResources | undefined {
  const info = (process as { getActiveResourcesInfo?: () => string[] }).getActiveResourcesInfo?.()
  if (!info || info.length === 0) return undefined
  return {
    sockets: info.filter((r) => r.startsWith('TCP')).length,
    timers: info.filter((r) => r === 'Timeout').length,
  }
}

/**
 * Asserts `after` holds about what `before` did: a few sockets and timers more are the
 * connections and probes of the moment, not an accumulation. No-op where the runtime reports none.
 */
export function assertNoneAccumulated(
  before: ActiveResources | undefined,
  after: ActiveResources | undefined,
): void {
  if (!before || !after) return
  assert.ok(after.sockets <= before.sockets + 4, `sockets ${before.sockets} -> ${after.sockets}`)
  assert.ok(after.timers <= before.timers + 10, `timers ${before.timers} -> ${after.timers}`)
}
