// sql.listen() on an existing listen connection, and unlisten(), when the writer goes silent
// (black-holed network, frozen server): bounded like any statement (host monitoring notices the
// host, failover follows), never a hang; listen moves to the new writer, and nothing is left as an
// unhandled rejection.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Lab } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import {
  eventually,
  FAST_DETECTION,
  labClientOptions,
  restoreNode,
  SILENT_WRITER_LAB,
  settle,
} from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let sql: PostgresHaSql
const crashes = watchCrashes()

// Detection with these settings: 200 ms grace + 2 probes of 500 ms, then the lab's promotion
// (probe timeout 500 ms + 200 ms): as in failover-silent, a bound no healthy run comes near.
const BOUND_MS = 6_000

before(async () => {
  lab = await sharedLab(SILENT_WRITER_LAB)
  sql = postgresHa(lab.url('cluster'), labClientOptions(FAST_DETECTION))
  await sql`select 1`
})

after(async () => {
  await sql?.end({ timeout: 1 })
  await lab?.down()
  crashes.stop()
})

/** Sends NOTIFY on `channel` until `heard()` (the listen may still be moving), bounded. */
async function notifyUntil(channel: string, heard: () => boolean): Promise<void> {
  await eventually(
    async () => {
      if (heard()) return true
      await sql.notify(channel, 'ping').catch(() => {})
      await new Promise((r) => setTimeout(r, 100))
      return heard()
    },
    10_000,
    `a notification on ${channel}`,
  )
}

/** `p` settled, or 'hung' after `ms`. */
async function within<T>(p: Promise<T>, ms: number) {
  let timer: ReturnType<typeof setTimeout> | undefined
  const hung = new Promise<'hung'>((r) => {
    timer = setTimeout(() => r('hung'), ms)
  })
  try {
    return await Promise.race([settle(p), hung])
  } finally {
    clearTimeout(timer)
  }
}

let n = 0
for (const fault of ['blackhole', 'freeze'] as const) {
  test(`listen: a new channel on the listen connection of a ${fault} writer settles in time and moves`, async () => {
    const first = `first_${fault}_${++n}`
    const second = `second_${fault}_${n}`
    const got: string[] = []
    await sql.listen(first, (p) => got.push(`${first}:${p}`))
    const old = (await lab.status()).writer!
    await lab[fault](old)
    const t0 = performance.now()
    const result = await within(
      sql.listen(second, (p) => got.push(`${second}:${p}`)),
      BOUND_MS * 2,
    )
    const took = performance.now() - t0
    assert.notEqual(result, 'hung', `listen() on a ${fault} writer did not settle within ${BOUND_MS * 2} ms`)
    assert.ok(took < BOUND_MS, `listen() took ${Math.round(took)} ms`)
    if (result !== 'hung' && !result.ok) assert.fail(`listen() rejected: ${result.error}`)
    // Both channels are listened to on the new writer.
    await notifyUntil(second, () => got.includes(`${second}:ping`))
    await notifyUntil(first, () => got.includes(`${first}:ping`))
    await restoreNode(lab, old)
    assert.deepEqual(crashes.seen, [], describeCrashes(crashes.seen))
  })

  test(`listen: unlisten() on the listen connection of a ${fault} writer settles in time`, async () => {
    const channel = `gone_${fault}_${++n}`
    const got: string[] = []
    const keep = `kept_${fault}_${n}`
    await sql.listen(keep, (p) => got.push(`${keep}:${p}`))
    const listening = await sql.listen(channel, (p) => got.push(`${channel}:${p}`))
    const old = (await lab.status()).writer!
    await lab[fault](old)
    const t0 = performance.now()
    const result = await within(listening.unlisten(), BOUND_MS * 2)
    const took = performance.now() - t0
    assert.notEqual(
      result,
      'hung',
      `unlisten() on a ${fault} writer did not settle within ${BOUND_MS * 2} ms`,
    )
    assert.ok(took < BOUND_MS, `unlisten() took ${Math.round(took)} ms`)
    if (result !== 'hung' && !result.ok) assert.fail(`unlisten() rejected: ${result.error}`)
    // The kept channel follows the writer; the unlistened one is not listened to again.
    await notifyUntil(keep, () => got.includes(`${keep}:ping`))
    await sql.notify(channel, 'late')
    await sql`select pg_sleep(0.2)`
    assert.ok(!got.includes(`${channel}:late`), 'the unlistened channel was listened to again')
    await restoreNode(lab, old)
    assert.deepEqual(crashes.seen, [], describeCrashes(crashes.seen))
  })
}
