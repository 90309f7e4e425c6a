// The lab's event clock must agree across processes: the lab daemon stamps events, tests and
// benchmarks compare them with their own readings. Each process's reading stays within a
// millisecond of the wall clock however the wall clock drifts from the monotonic one — the fault a
// test caused was stamped 20-60 ms before the test's "before" by a daemon whose clock was fixed at
// its start, while the machine's wall clock drifted 100-220 ppm.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CLOCK_SLACK_MS, epochClock, nowMs } from '../lab/clock.ts'
import { EventLog } from '../lab/events.ts'

/** A wall clock (whole ms, like Date.now()) and a monotonic clock, both driven by the test. */
function clocks(startWallMs: number) {
  const state = { wall: startWallMs, monotonic: 1_000 }
  return {
    state,
    wall: () => Math.floor(state.wall),
    monotonic: () => state.monotonic,
  }
}

test('lab clock: follows a wall clock that runs 1000 ppm fast, never more than a millisecond off', () => {
  const c = clocks(1_800_000_000_000.25)
  const read = epochClock(c.wall, c.monotonic)
  let worst = 0
  let previous = read()
  // 20 s in steps of 7 ms; the wall clock gains 1 ms per second on the monotonic clock.
  for (let i = 0; i < 20_000 / 7; i++) {
    c.state.monotonic += 7
    c.state.wall += 7 * 1.001
    const t = read()
    assert.ok(t >= previous, 'went backwards')
    previous = t
    worst = Math.max(worst, Math.abs(t - c.state.wall))
  }
  // An origin fixed at the start (timeOrigin + performance.now()) would be 20 ms behind by now.
  assert.ok(worst < 1, `${worst.toFixed(3)} ms from the wall clock`)
})

test('lab clock: a wall clock stepped back holds the reading instead of going backwards, then follows again', () => {
  const c = clocks(1_800_000_000_000)
  const read = epochClock(c.wall, c.monotonic)
  c.state.monotonic += 100
  c.state.wall += 100
  const before = read()
  c.state.wall -= 50
  c.state.monotonic += 10
  assert.equal(read(), before, 'held while the wall clock is behind the last reading')
  c.state.monotonic += 100
  c.state.wall += 100
  const after = read()
  assert.ok(after > before && Math.abs(after - c.state.wall) < 1, `${after} against ${c.state.wall}`)
})

test('lab clock: a reading is within a millisecond of the wall clock, with a fraction', () => {
  const fractions = new Set<number>()
  for (let i = 0; i < 200; i++) {
    // Bracketed by the wall clock read before and after, so that a pause in between cannot fail it.
    const wallBefore = Date.now()
    const t = nowMs()
    const wallAfter = Date.now()
    assert.ok(t >= wallBefore && t < wallAfter + 1, `${t} against Date.now() ${wallBefore}..${wallAfter}`)
    fractions.add(t % 1)
  }
  assert.ok(fractions.size > 1, 'no sub-millisecond fraction')
})

test('lab clock: an event stamped within the slack before a waiter\'s "after" still matches it', async () => {
  const log = new EventLog()
  const before = nowMs()
  // Another process's clock may be up to CLOCK_SLACK_MS behind this one.
  log.events.push({ type: 'fault', atMs: before - CLOCK_SLACK_MS + 0.5, node: 'a' })
  const seen = await log.wait({ type: 'fault', afterMs: before, timeoutMs: 100 })
  assert.equal(seen.node, 'a')
  // An event well before the waiter's time is not the one it waits for.
  log.events.length = 0
  log.events.push({ type: 'fault', atMs: before - 50, node: 'old' })
  await assert.rejects(log.wait({ type: 'fault', afterMs: before, timeoutMs: 50 }), /no "fault" event/)
})
