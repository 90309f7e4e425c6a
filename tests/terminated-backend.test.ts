// One backend of a healthy writer ended by the server (pg_terminate_backend: FATAL 57P01 on that
// one connection) is no lost writer: no failover, no writer search, no hostDown. A statement that
// was running rejects as it does with postgres.js alone (CONNECTION_CLOSED: postgres.js keeps the
// FATAL message of a running statement for a ReadyForQuery that never comes); work that provably
// never reached the server runs on the same writer unnoticed.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import type { Lab } from '../lab/mod.ts'
import { HaError, type PostgresHaSql, postgresHa, TransactionResolutionUnknownError } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { asLabAdmin, eventually, labClientOptions, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

/** postgres.js's own errors for a connection the server closed. */
const LOST = new Set(['CONNECTION_CLOSED', 'ECONNRESET', 'EPIPE'])

let lab: Lab
let sql: PostgresHaSql
let admin: postgres.Sql
const alarms: string[] = []
const crashes = watchCrashes()

before(async () => {
  lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const writer = (await lab.status()).writer!
  admin = postgres(asLabAdmin(lab.url(writer)), { max: 1, onnotice: () => {} })
  sql = postgresHa(lab.url('cluster'), labClientOptions({ max: 2 }))
  for (const event of ['failoverStart', 'failover', 'hostDown', 'writerChanged'] as const)
    sql.ha.on(event, () => alarms.push(event))
  await sql`select 1`
})

after(async () => {
  await sql?.end()
  await admin?.end()
  await lab?.down()
  crashes.stop()
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})

/** Terminates the backend running `marker` once it shows in pg_stat_activity. */
async function terminateRunning(marker: string): Promise<void> {
  let pid: number | undefined
  await eventually(
    async () => {
      const rows = await admin`
        select pid from pg_stat_activity where query like ${`%${marker}%`} and pid <> pg_backend_pid()`
      pid = rows[0]?.pid as number | undefined
      return pid !== undefined
    },
    10_000,
    `the statement ${marker} to run`,
  )
  const [row] = await admin`select pg_terminate_backend(${pid!}) as ok`
  assert.equal(row!.ok, true)
}

test('a running statement whose backend is terminated rejects as with postgres.js alone — no failover', async () => {
  alarms.length = 0
  const writer = sql.ha.topology()!.writer!.host
  const running = settle(sql`select pg_sleep(10), 'terminated-running' as marker`)
  await terminateRunning('terminated-running')
  const result = await running
  assert.equal(result.ok, false)
  if (result.ok) return
  assert.ok(!(result.error instanceof HaError), `got ${result.error?.name}: ${result.error}`)
  assert.equal(result.error.code, 'CONNECTION_CLOSED')
  // The writer is still the writer, and serves the next statement.
  assert.equal((await sql`select 1 as x`)[0]!.x, 1)
  assert.equal(sql.ha.topology()!.writer!.host, writer)
  assert.deepEqual(alarms, [])
})

test('a terminated backend inside a transaction: TransactionResolutionUnknownError with the lost connection as cause — no failover', async () => {
  alarms.length = 0
  const running = settle(
    sql.begin(async (tx) => {
      await tx`select 1`
      await tx`select pg_sleep(10), 'terminated-in-tx' as marker`
    }),
  )
  await terminateRunning('terminated-in-tx')
  const result = await running
  assert.equal(result.ok, false)
  if (result.ok) return
  // The statement-fate contract (tests/transaction-body-loss.test.ts): a transaction whose
  // connection is lost rejects with TransactionResolutionUnknownError, failover or not.
  assert.ok(
    result.error instanceof TransactionResolutionUnknownError,
    `got ${result.error?.name} ${result.error?.code}: ${result.error}`,
  )
  assert.equal(result.error.toHost, undefined, 'no switch: the writer is alive')
  assert.equal((result.error.cause as { code?: string } | undefined)?.code, 'CONNECTION_CLOSED')
  assert.equal((await sql`select 1 as x`)[0]!.x, 1)
  assert.deepEqual(alarms, [])
})

test('idle connections terminated by the server: the next statements run on the same writer — no failover', async () => {
  alarms.length = 0
  await Promise.all([sql`select pg_sleep(0.05)`, sql`select pg_sleep(0.05)`])
  await admin`
    select pg_terminate_backend(pid) from pg_stat_activity
    where usename = ${new URL(lab.url('cluster')).username} and backend_type = 'client backend'`
  // A statement written before postgres.js read the server's goodbye fails as it would without
  // postgres-ha (CONNECTION_CLOSED, or ECONNRESET writing after the server's FIN); one that met a connection known closed runs again, unnoticed.
  for (let i = 0; i < 4; i++) {
    const r = await settle(sql`select 1 as x`)
    if (!r.ok)
      assert.ok(LOST.has(r.error?.code) && !(r.error instanceof HaError), `statement ${i}: ${r.error}`)
  }
  assert.equal((await sql`select 1 as x`)[0]!.x, 1)
  assert.deepEqual(alarms, [])
})
