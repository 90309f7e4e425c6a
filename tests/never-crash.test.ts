// When postgres-ha drops a host's connections (host monitoring declared it down, the writer
// moved), nothing is left unhandled: no unhandled rejection, no uncaught exception — with Node's
// defaults either would end the application. A statement whose connection postgres-ha dropped
// rejects with a postgres-ha error that says why, never postgres.js's bare CONNECTION_DESTROYED.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Lab } from '../lab/mod.ts'
import { HaError, postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { labClientOptions, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
const crashes = watchCrashes()

before(async () => {
  lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, probeTimeoutMs: 500, endpointLagMs: 60_000 })
})

after(async () => {
  await lab?.down()
  crashes.stop()
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})

async function restore(old: string): Promise<void> {
  await lab.heal(old)
  const node = (await lab.status()).nodes.find((n) => n.id === old)!
  if (node.state !== 'running') await lab.start(old)
  await lab.waitForWriter({ timeoutMs: 30_000 })
}

test('host monitoring alone drops a frozen host: the statement rejects with a postgres-ha error saying why', async () => {
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ plugins: 'hostMonitoring' }))
  const old = (await lab.status()).writer!
  try {
    await sql`select 1`
    const running = settle(sql`select pg_sleep(10)`)
    await new Promise((r) => setTimeout(r, 100))
    await lab.freeze(old)
    const result = await running
    assert.equal(result.ok, false)
    if (result.ok) return
    assert.ok(
      result.error instanceof HaError,
      `got ${result.error?.name} ${result.error?.code}: ${result.error}`,
    )
    assert.equal(result.error.code, 'CONNECTION_DROPPED')
    assert.match(result.error.message, /postgres-ha/)
    assert.match(result.error.message, /probes/)
    await new Promise((r) => setTimeout(r, 1_500))
    assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
  } finally {
    await sql.end({ timeout: 1 })
    await restore(old)
  }
})

test('a frozen writer with a busy pool, a transaction and a reserved connection: every drop is handled', async () => {
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ max: 3 }))
  const old = (await lab.status()).writer!
  try {
    await sql`select 1`
    const reserved = await sql.reserve()
    // 3 s statements: those on the frozen writer never end before it is dropped (about 1.2 s), and
    // the one queued behind them runs on the new writer — 10 s ones kept the test waiting 10 s for it.
    const work = [
      settle(sql`select pg_sleep(3)`),
      settle(sql`select pg_sleep(3)`),
      settle(
        sql.begin(async (tx) => {
          await tx`select 1`
          await tx`select pg_sleep(3)`
        }),
      ),
      settle(reserved`select pg_sleep(3)`),
    ]
    await new Promise((r) => setTimeout(r, 150))
    await lab.freeze(old)
    const results = await Promise.all(work)
    // A statement still queued when the writer froze never reached it: it runs on the new writer.
    // Every other one rejects with a postgres-ha error.
    assert.ok(results.some((r) => !r.ok))
    for (const r of results)
      if (!r.ok) assert.ok(r.error instanceof HaError, `got ${r.error?.name} ${r.error?.code}: ${r.error}`)
    reserved.release()
    // Late rejections (a pool ended with a timeout, a transaction's ROLLBACK) would show up here.
    await new Promise((r) => setTimeout(r, 2_000))
    assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
  } finally {
    await sql.end({ timeout: 1 })
    await restore(old)
  }
})
