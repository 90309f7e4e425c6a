// A connection-class SQLSTATE on a connection that is still open is an ordinary error: the server
// raised it (PL/pgSQL `raise`, dblink or postgres_fdw relaying a remote error) with severity ERROR
// and kept the session. No hostDown, no failover, no connection dropped: the statement rejects
// with the server's own error. Too many connections (53300) when a pool grows means busy, not down.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import type { Lab } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { asLabAdmin, labClientOptions, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let sql: PostgresHaSql
const alarms: string[] = []
const crashes = watchCrashes()

before(async () => {
  lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  sql = postgresHa(lab.url('cluster'), labClientOptions({ max: 2 }))
  for (const event of ['failoverStart', 'failover', 'hostDown', 'writerChanged'] as const)
    sql.ha.on(event, () => alarms.push(event))
  await sql`select 1`
})

after(async () => {
  await sql?.end()
  await lab?.down()
  crashes.stop()
  assert.deepEqual(crashes.seen.length, 0, describeCrashes(crashes.seen))
})

for (const code of ['08006', '08001', '08003', '57P01', '57P02', '57P03', '53300']) {
  test(`a ${code} raised by the server on a live connection is the server's error, not a failover`, async () => {
    alarms.length = 0
    const [before] = await sql`select pg_backend_pid() as pid`
    const raised = await settle(
      sql.unsafe(`do $$ begin raise exception 'relayed from elsewhere' using errcode = '${code}'; end $$`),
    )
    assert.equal(raised.ok, false)
    if (raised.ok) return
    assert.ok(raised.error instanceof postgres.PostgresError, `got ${raised.error}`)
    assert.equal(raised.error.code, code)
    assert.equal(raised.error.message, 'relayed from elsewhere')
    // The connections survived: the same backend answers (max: 2, both idle).
    const pids = new Set<number>()
    for (let i = 0; i < 4; i++) pids.add((await sql`select pg_backend_pid() as pid`)[0]!.pid as number)
    assert.ok(pids.has(before!.pid as number), 'the connection that got the error is still in the pool')
    assert.deepEqual(alarms, [])
  })
}

test('inside a transaction, a raised 08006 rolls back like any error and alarms nobody', async () => {
  alarms.length = 0
  const result = await settle(
    sql.begin(async (tx) => {
      await tx`select 1`
      await tx.unsafe(`do $$ begin raise exception 'remote gone' using errcode = '08006'; end $$`)
    }),
  )
  assert.equal(result.ok, false)
  if (result.ok) return
  assert.ok(result.error instanceof postgres.PostgresError, `got ${result.error}`)
  assert.equal(result.error.code, '08006')
  assert.deepEqual(alarms, [])
})

test('too many connections (53300) while the pool grows: busy, not down — no hostDown, no failover', async () => {
  const status = await lab.status()
  const admin = postgres(asLabAdmin(lab.url(status.writer!)), {
    max: 1,
    onnotice: () => {},
  })
  const client = postgresHa(lab.url('cluster'), labClientOptions({ max: 4 }))
  const seen: string[] = []
  for (const event of ['failoverStart', 'hostDown', 'writerChanged'] as const)
    client.ha.on(event, () => seen.push(event))
  try {
    await client`select 1`
    const [{ n }] =
      (await admin`select count(*)::int as n from pg_stat_activity where usename = 'lab_app'`) as any
    // Room for exactly one more lab_app connection than exist now: the client's second one fits,
    // its third and fourth are refused with 53300.
    await admin.unsafe(`alter role lab_app connection limit ${n + 1}`)
    const results = await Promise.all(
      [1, 2, 3, 4].map(() => settle(client`select pg_sleep(0.3), pg_backend_pid() as pid`)),
    )
    assert.ok(
      results.some((r) => r.ok),
      'the connections that exist keep serving',
    )
    for (const r of results)
      if (!r.ok) assert.equal((r.error as { code?: string }).code, '53300', `got ${r.error}`)
    assert.deepEqual(seen, [])
    await admin.unsafe('alter role lab_app connection limit -1')
    const after = await Promise.all([1, 2, 3, 4].map(() => settle(client`select pg_sleep(0.1)`)))
    assert.ok(after.every((r) => r.ok))
    assert.deepEqual(seen, [])
  } finally {
    await admin.unsafe('alter role lab_app connection limit -1').catch(() => {})
    await admin.end()
    await client.end()
  }
})
