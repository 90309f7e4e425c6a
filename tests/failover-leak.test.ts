// Many real failovers (lab switchovers, each followed by statements on the new writer) leave
// nothing behind: the client's connections on the servers stay within its pools, and the sockets
// and timers the runtime reports (node, deno) are what they were, give or take the moment's probes.
// test-runner: heavy
import assert from 'node:assert/strict'
import process from 'node:process'
import { test } from 'node:test'
import postgres from 'postgres'
import { startLab } from '../lab/mod.ts'
import { postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { asLabAdmin, eventually, labClientOptions, settle } from './helpers/ha.ts'
import { activeResources, assertNoneAccumulated } from './helpers/resources.ts'

const APP = 'failover-leak-test'
const ROUNDS = Number(process.env.FAILOVER_LEAK_ROUNDS) || 100

test(`${ROUNDS} failovers leave no connection, socket or timer behind`, { timeout: 540_000 }, async () => {
  const crashes = watchCrashes()
  await using lab = await startLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 0 })
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({ max: 2, connection: { application_name: APP } }),
  )
  let failovers = 0
  sql.ha.on('writerChanged', () => failovers++)
  // A write: a read would be answered by the old writer, a reader again, until the next refresh.
  const onWriter = async () => (await settle(sql`insert into leak values (1)`)).ok
  try {
    await sql`create table leak (x int)`
    await Promise.all([sql`select 1`, sql`select 1`])
    const before = activeResources()
    for (let round = 0; round < ROUNDS; round++) {
      await lab.switchover()
      await eventually(onWriter, 20_000, `round ${round}: statements on the new writer`)
    }
    assert.ok(failovers >= ROUNDS, `${failovers} writer changes in ${ROUNDS} rounds`)
    // Each server holds at most one pool of this client (max: 2); the cluster one topology
    // connection (its statements name aurora_replica_status).
    const nodes = (await lab.status()).nodes.filter((n) => n.state === 'running')
    let seen = ''
    const settled = async () => {
      const pools: number[] = []
      let topology = 0
      seen = ''
      for (const n of nodes) {
        const admin = postgres(asLabAdmin(lab.url(n.id)), { max: 1, onnotice: () => {} })
        try {
          const rows = await admin`
            select state, left(query, 40) as query, query like '%aurora_replica_status%' as topology
            from pg_stat_activity where application_name = ${APP}`
          seen += `\n${n.id}: ${JSON.stringify(rows)}`
          const reads = rows.filter((r) => r.topology === true).length
          topology += reads
          pools.push(rows.length - reads)
        } finally {
          await admin.end()
        }
      }
      return pools.every((n) => n <= 2) && topology <= 1
    }
    await eventually(settled, 10_000, 'one pool per server, one topology connection').catch(() =>
      assert.fail(`connections after ${ROUNDS} failovers:${seen}`),
    )
    assertNoneAccumulated(before, activeResources())
  } finally {
    await sql.end()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})
