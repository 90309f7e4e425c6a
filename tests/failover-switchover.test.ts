// Graceful switchover, all hosts down, and reader failover.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { nowMs } from '../lab/mod.ts'
import { FailoverFailedError, FailoverSuccessError, postgresHa } from '../mod.ts'
import { labClientOptions, settle } from './helpers/ha.ts'
import { labAdmins, runningOn } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const instanceId = 'select pg_catalog.aurora_db_instance_identifier() as id, pg_is_in_recovery() as reader'

test('failover: switchover while writing — every write lands once, later writes go to the new writer', async () => {
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const sql = postgresHa(lab.url('cluster'), labClientOptions())
  try {
    await sql`create table w (id int primary key)`
    const old = (await lab.status()).writer!
    const acknowledged: number[] = []
    const unknown: number[] = []
    let stop = false
    const loop = (async () => {
      for (let id = 1; !stop && id < 5_000; id++) {
        try {
          await sql`insert into w values (${id})`
          acknowledged.push(id)
        } catch (error) {
          assert.ok(error instanceof FailoverSuccessError, `unexpected ${error}`)
          unknown.push(id)
        }
        await new Promise((r) => setTimeout(r, 5))
      }
    })()
    await new Promise((r) => setTimeout(r, 200))
    await lab.switchover()
    await lab.waitForWriter({ timeoutMs: 20_000 })
    await new Promise((r) => setTimeout(r, 300))
    stop = true
    await loop
    const [row] = await sql.unsafe(instanceId)
    assert.notEqual(row!.id, old, 'statements now go to the new writer')
    assert.equal(row!.reader, false)
    const stored = new Set((await sql`select id from w`).map((r) => r.id as number))
    for (const id of acknowledged) assert.ok(stored.has(id), `acknowledged write ${id} is missing`)
    assert.ok(unknown.length <= 3, `${unknown.length} writes needed a re-run`)
    assert.ok(acknowledged.length > 20)
  } finally {
    await sql.end()
  }
})

test('failover: a write refused as read-only (25006) by a demoted writer fails over to the new one', async () => {
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  // Slow topology polling: the client will not notice the switchover by itself.
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ topologyRefreshMs: 60_000 }))
  try {
    await sql`create table w (id int primary key)`
    const old = (await lab.status()).writer!
    const before = nowMs()
    await lab.switchover()
    // The old writer comes back as a reader; the client's routing still points at it.
    await lab.waitForEvent('reader-rejoined', { afterMs: before, node: old, timeoutMs: 20_000 })
    await lab.waitForWriter({ timeoutMs: 20_000 })
    const first = await settle(sql`insert into w values (1)`)
    if (!first.ok) {
      assert.ok(first.error instanceof FailoverSuccessError, `got ${first.error}`)
      await sql`insert into w values (1)`
    }
    const [row] = await sql.unsafe(instanceId)
    assert.notEqual(row!.id, old)
    assert.equal((await sql`select id from w`).length, 1)
  } finally {
    await sql.end()
  }
})

test('failover: all hosts down — every pending statement fails in time, and the client recovers after', async () => {
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ failoverTimeoutMs: 2_000 }))
  try {
    await sql`select 1`
    const ids = (await lab.status()).nodes.map((n) => n.id)
    await Promise.all(ids.map((id) => lab.kill(id)))
    const t0 = performance.now()
    const results = await Promise.all(Array.from({ length: 5 }, () => settle(sql`select 1`)))
    const took = performance.now() - t0
    for (const r of results) {
      assert.equal(r.ok, false)
      if (!r.ok) assert.ok(r.error instanceof FailoverFailedError, `got ${r.error}`)
    }
    assert.ok(took < 4_000, `settled after ${Math.round(took)} ms with failoverTimeoutMs 2000`)
    for (const id of ids) await lab.start(id)
    await lab.waitForWriter({ timeoutMs: 30_000 })
    // No restart of the client: the next statement finds the writer.
    let recovered = await settle(sql.unsafe(instanceId))
    if (!recovered.ok && recovered.error instanceof FailoverSuccessError)
      recovered = await settle(sql.unsafe(instanceId))
    assert.ok(recovered.ok, `not recovered: ${!recovered.ok && recovered.error}`)
    if (recovered.ok) assert.equal(recovered.value[0]!.reader, false)
  } finally {
    await sql.end()
  }
})

test('failover: a reader client moves to another reader when its reader dies', async () => {
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const status = await lab.status()
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ targetRole: 'reader' }))
  try {
    const seen = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const [row] = await sql.unsafe(instanceId)
      assert.equal(row!.reader, true, 'reader clients read from readers')
      seen.add(row!.id as string)
    }
    assert.ok(!seen.has(status.writer!))
    // A reserved connection tells which reader the next long statement runs on.
    const reserved = await sql.reserve()
    const [{ id: victim }] = (await reserved.unsafe(instanceId)) as unknown as Array<{ id: string }>
    const pending = settle(reserved`select pg_sleep(5)`)
    // Killed once the statement runs on the reader, not after a fixed pause.
    const admins = labAdmins(lab)
    try {
      await runningOn([admins.admin(victim!)], 'select pg_sleep(5)')
    } finally {
      await admins.end()
    }
    await lab.kill(victim!)
    const result = await pending
    assert.equal(result.ok, false)
    if (!result.ok) assert.ok(result.error instanceof FailoverSuccessError, `got ${result.error}`)
    reserved.release()
    // Later reads avoid the dead reader, without errors.
    for (let i = 0; i < 10; i++) {
      const [row] = await sql.unsafe(instanceId)
      assert.notEqual(row!.id, victim)
    }
  } finally {
    await sql.end()
  }
})
