// Host monitoring finds statements that run past failureDetectionTime with one shared timer, not a
// timer per statement: short statements cost no timer, long ones are watched at their own grace.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { longStatements } from '../src/plugins/host-monitoring/long-statements.ts'
import { systemRuntime } from '../src/runtime/runtime.ts'
import { sleep } from './helpers/lab.ts'

/** Counts `setTimeout` calls while `fn` runs. */
async function countTimers(fn: () => Promise<void> | void): Promise<number> {
  const g = globalThis as { setTimeout: typeof setTimeout }
  const original = g.setTimeout
  let n = 0
  g.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    n++
    return original(...args)
  }) as typeof setTimeout
  try {
    await fn()
  } finally {
    g.setTimeout = original
  }
  return n
}

test('long statements: a thousand short statements arm one timer between them', async () => {
  const long: number[] = []
  const tracker = longStatements<number>(50, systemRuntime, (i) => {
    long.push(i)
    return undefined
  })
  const timers = await countTimers(() => {
    for (let i = 0; i < 1_000; i++) tracker.start(i)()
  })
  assert.equal(timers, 1)
  await sleep(80)
  assert.deepEqual(long, [])
  tracker.close()
})

test('long statements: each running statement is watched once its own grace has passed, until it ends', async () => {
  const events: Array<{ what: string; name: string; ageMs: number }> = []
  const started = new Map<string, number>()
  const age = (name: string) => performance.now() - started.get(name)!
  const tracker = longStatements<string>(60, systemRuntime, (name) => {
    events.push({ what: 'long', name, ageMs: age(name) })
    return () => events.push({ what: 'end', name, ageMs: age(name) })
  })
  const begin = (name: string) => {
    started.set(name, performance.now())
    return tracker.start(name)
  }
  const a = begin('a')
  begin('short')() // ends at once: never long
  await sleep(30)
  const b = begin('b')
  const seen = (what: string, name: string) => events.some((e) => e.what === what && e.name === name)
  for (let i = 0; i < 200 && !seen('long', 'a'); i++) await sleep(5)
  a()
  for (let i = 0; i < 200 && !seen('long', 'b'); i++) await sleep(5)
  tracker.close()
  b()
  assert.deepEqual(
    events.map((e) => `${e.what} ${e.name}`),
    ['long a', 'end a', 'long b', 'end b'],
  )
  for (const e of events.filter((e) => e.what === 'long'))
    assert.ok(e.ageMs >= 59, `${e.name} long at ${e.ageMs} ms`)
})

test('long statements: statements ending out of order leave the others watched at their own grace, and close ends the watches', async () => {
  const events: string[] = []
  const tracker = longStatements<number>(40, systemRuntime, (i) => {
    events.push(`long ${i}`)
    return () => events.push(`end ${i}`)
  })
  const done = [0, 1, 2, 3, 4, 5].map((i) => tracker.start(i))
  // The oldest, one in the middle and the newest end early; 1, 3 and 4 run on.
  done[0]!()
  done[2]!()
  done[5]!()
  done[2]!()
  for (let i = 0; i < 200 && events.length < 3; i++) await sleep(5)
  assert.deepEqual(events, ['long 1', 'long 3', 'long 4'])
  done[3]!()
  const again = tracker.start(6)
  tracker.close()
  // After close, late ends call nothing twice and a statement started before close is never long.
  done[1]!()
  done[3]!()
  again()
  await sleep(60)
  assert.deepEqual(events, ['long 1', 'long 3', 'long 4', 'end 3', 'end 1', 'end 4'])
})
