import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  readEnv,
  runtimeName,
  sleep,
  startInterval,
  startTimer,
  stopTimer,
  systemClock,
} from '../src/runtime/mod.ts'
import { runScript } from './helpers/spawn-runtime.ts'

test('runtime: knows which runtime it runs on', () => {
  const expected = (globalThis as any).Bun ? 'bun' : (globalThis as any).Deno ? 'deno' : 'node'
  assert.equal(runtimeName(), expected)
})

test('runtime: fires a timer once and can stop another before it fires', async () => {
  let fired = 0
  let stopped = 0
  startTimer(() => fired++, 5)
  const t = startTimer(() => stopped++, 5)
  stopTimer(t)
  stopTimer(t)
  await new Promise((r) => setTimeout(r, 40))
  assert.equal(fired, 1)
  assert.equal(stopped, 0)
})

test('runtime: repeats an interval until stopped', async () => {
  let ticks = 0
  const t = startInterval(() => ticks++, 5)
  // Until two ticks came (bounded), not a fixed 60 ms: a process the busy machine left off the CPU
  // that long came back to both timers due, and the interval ticked once before the pause ended.
  const deadline = performance.now() + 5_000
  while (ticks < 2 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  stopTimer(t)
  const atStop = ticks
  await new Promise((r) => setTimeout(r, 30))
  assert.ok(atStop >= 2, `expected at least 2 ticks, got ${atStop}`)
  assert.equal(ticks, atStop)
})

test('runtime: sleeps for at least the time asked and can be aborted', async () => {
  const t0 = systemClock.now()
  await sleep(20, { keepAlive: true })
  assert.ok(systemClock.now() - t0 >= 18)
  const controller = new AbortController()
  const pending = sleep(10_000, { signal: controller.signal })
  controller.abort(new Error('stop waiting'))
  await assert.rejects(pending, /stop waiting/)
})

test('runtime: has a monotonic clock and a wall clock', () => {
  const a = systemClock.now()
  const b = systemClock.now()
  assert.ok(b >= a)
  assert.ok(Math.abs(systemClock.wallNow() - Date.now()) < 1000)
})

test('runtime: reads environment variables and returns undefined for unset ones', () => {
  assert.equal(readEnv('POSTGRES_HA_SURELY_UNSET_VARIABLE'), undefined)
  assert.equal(typeof readEnv('PATH'), 'string')
})

test('runtime: lets a process that holds only its timers exit by itself', async () => {
  const script = fileURLToPath(new URL('./fixtures/unref-timer.ts', import.meta.url))
  const result = await runScript(script, 20_000)
  assert.equal(result.timedOut, false, `process was kept alive; stderr: ${result.stderr}`)
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stdout, /armed/)
  assert.doesNotMatch(result.stdout, /kept alive/)
})
