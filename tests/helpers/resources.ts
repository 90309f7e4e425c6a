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

/**
 * Asserts that sockets and timers do not grow with the rounds of a repeated operation: the
 * least-squares slope of each over `samples` (one per round, taken at the same point of each
 * round) stays under `maxPerRound`. A slope, not a first-to-last difference, so that a leak of one
 * every few rounds shows over a few dozen rounds even though each sample is give or take the
 * moment's connections and probes. No-op with fewer than 10 samples (bun reports none).
 */
export function assertNoGrowth(samples: readonly ActiveResources[], maxPerRound: number): void {
  if (samples.length < 10) return
  const slope = (ys: number[]) => {
    const n = ys.length
    const mx = (n - 1) / 2
    const my = ys.reduce((a, b) => a + b, 0) / n
    let num = 0
    let den = 0
    ys.forEach((y, x) => {
      num += (x - mx) * (y - my)
      den += (x - mx) ** 2
    })
    return num / den
  }
  for (const kind of ['sockets', 'timers'] as const) {
    const ys = samples.map((s) => s[kind])
    const perRound = slope(ys)
    assert.ok(
      perRound < maxPerRound,
      `${kind} grow by ${perRound.toFixed(3)} a round (at most ${maxPerRound}): ${ys.join(' ')}`,
    )
  }
}
