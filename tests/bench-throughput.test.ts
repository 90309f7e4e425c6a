// The recovery benchmark's incremental check (bench/lib/throughput.ts): asked while the loops
// write, it reads only what is new, and finds the very time recoveredAt finds over everything.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { recoveredAt, recoveryWatch } from '../bench/lib/throughput.ts'

type Rec = { endMs?: number; counts: boolean }

/** Three loops writing from t = 0: slow until 300 ms, then fast; every fifth write does not count. */
function scenario(): Rec[][] {
  const loops: Rec[][] = [[], [], []]
  loops.forEach((records, i) => {
    let t = i
    for (let n = 0; t < 1_000; n++) {
      t += t < 300 ? 40 : 4
      records.push({ endMs: t, counts: n % 5 !== 0 })
    }
  })
  return loops
}

test('recoveryWatch: polled as the records arrive, it finds what recoveredAt finds over all of them', () => {
  const full = scenario()
  const options = { baselinePerSecond: 500, fromMs: 50, windowMs: 100 }
  const expected = recoveredAt(
    full.flatMap((r) => r.filter((x) => x.counts).map((x) => x.endMs!)),
    options,
  )
  assert.ok(expected !== undefined && expected > 300, `expected ${expected}`)
  // The loops as they grow: at each poll, the records ended by then, and a pending one per loop.
  const live: Rec[][] = full.map(() => [])
  let clock = 0
  const watch = recoveryWatch(
    live,
    (r) => r.counts,
    options,
    () => clock,
  )
  let found: number | undefined
  for (clock = 0; clock <= 1_000 && found === undefined; clock += 20) {
    full.forEach((records, i) => {
      const done = records.filter((r) => r.endMs! <= clock)
      live[i]!.length = 0
      live[i]!.push(...done, { counts: true }) // the write still pending
    })
    found = watch()
  }
  assert.equal(found, expected)
  assert.equal(watch(), expected)
})

test('recoveryWatch: never recovered stays undefined', () => {
  const records: Rec[] = [
    { endMs: 10, counts: true },
    { endMs: 20, counts: false },
  ]
  const watch = recoveryWatch([records], (r) => r.counts, {
    baselinePerSecond: 1_000,
    fromMs: 0,
    windowMs: 100,
  })
  assert.equal(watch(), undefined)
  records.push({ endMs: 30, counts: true })
  assert.equal(watch(), undefined)
})
