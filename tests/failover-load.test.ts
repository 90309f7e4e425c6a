// Failover under load: a bank-transfer invariant across consecutive failovers of mixed kinds,
// 100 concurrent statements through one failover, and no connection left behind afterwards.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { nowMs } from '../lab/mod.ts'
import { FailoverSuccessError, postgresHa, TransactionResolutionUnknownError } from '../mod.ts'
import { appBackends, noneLeft } from './helpers/backends.ts'
import { eventually, labClientOptions, SILENT_WRITER_LAB, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const ACCOUNTS = 10
const START_BALANCE = 1_000

test('failover: bank transfers keep their invariant across five failovers of mixed kinds', async () => {
  await using lab = await sharedLab(SILENT_WRITER_LAB)
  const baseline = await appBackends(lab)
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ max: 4 }))
  await sql`create table accounts (id int primary key, balance int not null)`
  await sql`create table transfers (id int primary key, src int not null, dst int not null, amount int not null)`
  await sql`insert into accounts ${sql(Array.from({ length: ACCOUNTS }, (_, i) => ({ id: i + 1, balance: START_BALANCE })))}`

  const acknowledged = new Set<number>()
  const unknown = new Set<number>()
  const errors: Record<string, number> = {}
  let nextId = 1
  let stop = false
  // Closed while the lab brings the old writer back (no failover then): the ~1,500 transfers of
  // those seconds cost ~3 s of the file's ~10 s of CPU and met no fault. Each fault below still
  // meets transfers under way (20 acknowledged since the last recovery, more in flight).
  let paused: Promise<void> | undefined
  let resume = () => {}
  const worker = async () => {
    while (!stop && nextId < 100_000) {
      if (paused) await paused
      const id = nextId++
      const src = 1 + (id % ACCOUNTS)
      const dst = 1 + ((id * 7 + 3) % ACCOUNTS)
      if (src === dst) continue
      const amount = 1 + (id % 50)
      try {
        await sql.begin(async (tx) => {
          // Rows locked in id order, as a real ledger does, so transfers never deadlock each other.
          const [first, second] = src < dst ? [src, -amount] : [dst, amount]
          const other = src < dst ? dst : src
          await tx`update accounts set balance = balance + ${second} where id = ${first}`
          await tx`update accounts set balance = balance - ${second} where id = ${other}`
          await tx`insert into transfers values (${id}, ${src}, ${dst}, ${amount})`
        })
        acknowledged.add(id)
      } catch (error) {
        const name = (error as Error).constructor.name
        errors[name] = (errors[name] ?? 0) + 1
        assert.ok(
          error instanceof TransactionResolutionUnknownError || error instanceof FailoverSuccessError,
          `unexpected error: ${error}`,
        )
        unknown.add(id)
      }
    }
  }
  const workers = Array.from({ length: 4 }, worker)

  const faults = ['kill', 'switchover', 'blackhole', 'kill', 'freeze'] as const
  for (const [i, fault] of faults.entries()) {
    // Transfers under way when the fault hits: some acknowledged since the last recovery (a fixed
    // 400 ms here only kept the load, and the CPU it takes, running longer).
    const running = acknowledged.size
    await eventually(() => acknowledged.size >= running + 20, 15_000, `transfers before ${fault}`)
    const old = (await lab.status()).writer!
    const before = acknowledged.size
    const faultAt = nowMs()
    if (fault === 'switchover') await lab.switchover()
    else await lab[fault](old)
    await lab.waitForEvent('writer-ready', { afterMs: faultAt, timeoutMs: 20_000 })
    // Transfers resume on the new writer.
    await eventually(() => acknowledged.size > before + 5, 15_000, `transfers to resume after ${fault}`)
    // The load has gone through the last fault: the old writer's return needs none.
    if (i === faults.length - 1) {
      stop = true
      await Promise.all(workers)
    }
    paused ??= new Promise((r) => (resume = r))
    try {
      if (fault !== 'switchover') {
        await lab.heal(old)
        const node = (await lab.status()).nodes.find((n) => n.id === old)!
        if (node.state !== 'running') await lab.start(old)
      }
      await lab.waitForWriter({ timeoutMs: 20_000 })
    } finally {
      paused = undefined
      resume()
    }
  }

  const [{ total }] = (await sql`select sum(balance)::int as total from accounts`) as unknown as [
    { total: number },
  ]
  assert.equal(total, ACCOUNTS * START_BALANCE, 'money was neither created nor destroyed')
  const stored = await sql`select id, src, dst, amount from transfers`
  const storedIds = new Set(stored.map((r) => r.id as number))
  for (const id of acknowledged) assert.ok(storedIds.has(id), `acknowledged transfer ${id} is missing`)
  for (const id of storedIds)
    assert.ok(acknowledged.has(id) || unknown.has(id), `transfer ${id} came from nowhere`)
  // Every balance is exactly what the recorded transfers make it: no transaction applied in part.
  const expected = new Map<number, number>(Array.from({ length: ACCOUNTS }, (_, i) => [i + 1, START_BALANCE]))
  for (const r of stored) {
    expected.set(r.src as number, expected.get(r.src as number)! - (r.amount as number))
    expected.set(r.dst as number, expected.get(r.dst as number)! + (r.amount as number))
  }
  for (const r of await sql`select id, balance from accounts`)
    assert.equal(r.balance, expected.get(r.id as number))
  assert.ok(acknowledged.size > 50, `only ${acknowledged.size} transfers went through`)

  await sql.end()
  let left: Record<string, string[]> = {}
  await eventually(
    async () => noneLeft((left = await appBackends(lab))),
    5_000,
    'every connection of the client to be closed',
  ).catch((error) => {
    throw new Error(`${(error as Error).message}; still open: ${JSON.stringify(left)}`)
  })
  assert.ok(noneLeft(baseline), `connections before the test: ${JSON.stringify(baseline)}`)
})

test('failover: 100 concurrent statements through one failover all settle, none hangs, none runs twice', async () => {
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ max: 10 }))
  await sql`create table c (i int primary key)`
  const t0 = performance.now()
  const pending = Array.from({ length: 100 }, (_, i) =>
    settle(i % 2 ? sql`select pg_sleep(0.3), ${i}::int as i` : sql`insert into c values (${i}) returning i`),
  )
  await new Promise((r) => setTimeout(r, 100))
  await lab.kill('writer')
  const results = await Promise.all(pending)
  const took = performance.now() - t0
  assert.ok(took < 20_000, `took ${Math.round(took)} ms`)
  const failed = results.filter((r) => !r.ok)
  for (const r of failed)
    assert.ok(!r.ok && r.error instanceof FailoverSuccessError, `got ${!r.ok && r.error}`)
  const inserted = new Set((await sql`select i from c`).map((r) => r.i as number))
  results.forEach((r, i) => {
    if (i % 2 === 0 && r.ok) assert.ok(inserted.has(i), `acknowledged insert ${i} is missing`)
  })
  // The failover was shared: one event, whatever the number of failed statements.
  const [{ n }] = (await sql`select 1 as n`) as unknown as [{ n: number }]
  assert.equal(n, 1)
  await sql.end()
})
