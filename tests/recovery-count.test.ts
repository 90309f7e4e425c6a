// Downtime ends with the first write the NEW writer acknowledged, in the demo and in every
// benchmark: a write in flight on the old writer and acknowledged just after the fault (the demo
// once printed "postgres.js downtime 2 ms" because of one) is never counted as recovery.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLedger } from '../bench/lib/ledger.ts'
import { firstRecoveryWrite, isRecoveryWrite } from '../bench/lib/recovery.ts'
import { startWriteLoop as startBenchLoop } from '../bench/lib/write-loop.ts'
import { createDemoTable, startWriteLoop as startDemoLoop } from '../demo/write-loop.ts'
import { nowMs } from '../lab/mod.ts'
import { postgresHa } from '../mod.ts'
import { eventually, labClientOptions } from './helpers/ha.ts'
import { client, sleep } from './helpers/lab.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('recovery: only an acknowledgement by another instance after the fault counts', () => {
  const fault = { oldWriter: 'w1', faultMs: 1_000 }
  const records = [
    { endMs: 990, inst: 'w1' }, // before the fault
    { endMs: 1_002, inst: 'w1' }, // in flight at the fault, acknowledged by the old writer
    { endMs: 1_005 }, // failed, or acknowledged with no instance (a duplicate-key re-run)
    { endMs: undefined, inst: undefined }, // still pending
    { endMs: 1_300, inst: 'w2' },
    { endMs: 1_310, inst: 'w1' },
  ]
  assert.equal(isRecoveryWrite(records[1]!, fault), false)
  assert.equal(firstRecoveryWrite(records, fault), records[4])
  assert.equal(firstRecoveryWrite(records, { ...fault, newWriter: 'w3' }), undefined)
  assert.equal(firstRecoveryWrite(records.slice(0, 4), fault), undefined)
})

test('recovery: demo and bench loops never count a write in flight at the kill', async () => {
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 100, endpointLagMs: 0 })
  const oldWriter = (await lab.status()).writer!
  const admin = client(lab.url(oldWriter))
  const locker = client(lab.url(oldWriter))
  const demoSql = client(lab.url('cluster'), { connect_timeout: 2 })
  // As in the failover benchmark: postgres-ha writes, plain postgres.js in the demo.
  const benchSql = postgresHa(lab.url('cluster'), labClientOptions())
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  let holding: Promise<unknown> | undefined
  const loops: Array<{ stop(): Promise<void> }> = []
  try {
    await createDemoTable(admin, 'demo_t')
    await createLedger(lab.url(oldWriter))
    // Both tables locked: each loop's next insert waits on the old writer, in flight.
    let locked!: () => void
    const isLocked = new Promise<void>((r) => (locked = r))
    holding = locker.begin(async (tx) => {
      await tx`lock table demo_t, bench_writes in exclusive mode`
      locked()
      await released
    })
    await isLocked
    let id = 0
    const demo = startDemoLoop(demoSql, 'demo_t')
    const bench = startBenchLoop({
      sql: benchSql as any,
      trial: 1,
      client: 'test',
      nextId: () => ++id,
      maxMs: 60_000,
    })
    loops.push(demo, bench)
    await eventually(
      async () => {
        const [row] = await admin`select count(*)::int as n from pg_stat_activity
          where wait_event_type = 'Lock' and query like 'insert into%'`
        return row!.n === 2
      },
      10_000,
      'both inserts waiting on the lock',
    )
    // The moment a naive demo took as "the kill": both writes are still in flight on the old writer.
    const faultMs = nowMs()
    release()
    await holding
    const ackedAfter = (acks: ReadonlyArray<{ endMs?: number; inst?: string }>) =>
      acks.find((a) => a.endMs !== undefined && a.endMs >= faultMs && a.inst !== undefined)
    await eventually(
      () => Boolean(ackedAfter(demo.stats.acks) && ackedAfter(bench.records)),
      10_000,
      'both in-flight writes acknowledged',
    )
    await sleep(10)
    for (const acks of [demo.stats.acks, bench.records]) {
      // The naive "first acknowledgement after the fault" is the old writer's: the case under test.
      assert.equal(ackedAfter(acks)?.inst, oldWriter)
    }

    const before = nowMs()
    await lab.kill(oldWriter)
    const killMs = (await lab.waitForEvent('fault', { afterMs: before, timeoutMs: 10_000 })).atMs
    const ready = await lab.waitForEvent('writer-ready', { afterMs: killMs, timeoutMs: 30_000 })
    assert.notEqual(ready.node, oldWriter)
    const fault = { oldWriter, faultMs }
    await eventually(
      () => Boolean(demo.firstRecovery(fault) && firstRecoveryWrite(bench.records, fault)),
      20_000,
      'a write of each loop on the new writer',
    ).catch(() => {})
    for (const first of [demo.firstRecovery(fault), firstRecoveryWrite(bench.records, fault)]) {
      assert.ok(
        first,
        `each loop wrote on the new writer: ${JSON.stringify([...demo.stats.errors])} ${JSON.stringify(bench.records.slice(-3))} ${JSON.stringify(demo.stats.acks.slice(-3))}`,
      )
      assert.equal(first.inst, ready.node)
      assert.ok(first.endMs! > killMs, 'recovery comes after the real kill')
    }
  } finally {
    release()
    await holding?.catch(() => {})
    await Promise.all(loops.map((l) => l.stop()))
    await Promise.all([admin, locker, demoSql, benchSql].map((s) => s.end({ timeout: 1 })))
  }
})
