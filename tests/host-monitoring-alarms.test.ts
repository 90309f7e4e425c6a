// Host monitoring tells "cannot connect" and "connected and silent" from "slow": a writer behind a
// 100 ms network, or saturated by other sessions, answers its probes late but answers; it is not
// declared down and nothing fails over. Default detection settings throughout.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import type { Lab } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { eventually, labClientOptions, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
const crashes = watchCrashes()

before(async () => {
  // The lab's own failure detector must not take the busy writer for a dead one either.
  lab = await sharedLab({ nodes: 2, promoteAfterMs: 1_000, probeTimeoutMs: 10_000, endpointLagMs: 60_000 })
})

after(async () => {
  await lab?.down()
  crashes.stop()
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})

function alarmsOf(sql: PostgresHaSql): string[] {
  const alarms: string[] = []
  const note = (event: string, e: unknown) => alarms.push(`${event} ${JSON.stringify(e)}`)
  sql.ha.on('failoverStart', (e) => note('failoverStart', e))
  sql.ha.on('hostDown', (e) => note('hostDown', e))
  // The first writer the client learns is no change.
  sql.ha.on('writerChanged', (e) => e.from && note('writerChanged', e))
  return alarms
}

test('a writer behind 100 ms of latency each way, running a 2 s statement, is not declared down', async () => {
  const writer = (await lab.status()).writer!
  await lab.latency(writer, 100)
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ connectTimeoutMs: 10_000 }))
  const alarms = alarmsOf(sql)
  try {
    await sql`select 1`
    const result = await settle(sql`select pg_sleep(2) as slept`)
    assert.ok(result.ok, result.ok ? '' : `got ${result.error}`)
    assert.deepEqual(alarms, [])
  } finally {
    await sql.end()
    await lab.heal(writer)
  }
})

test('a busy writer (CPU saturated by other sessions throughout) running a 6 s statement: 0 hostDown, 0 failovers', async () => {
  const writer = (await lab.status()).writer!
  const sql = postgresHa(lab.url('cluster'), labClientOptions())
  const alarms = alarmsOf(sql)
  const burners = Array.from({ length: 6 }, () => postgres(lab.url(writer), { max: 1, onnotice: () => {} }))
  const watcher = postgres(lab.url(writer), { max: 1, onnotice: () => {} })
  const BURN = 'select count(*) from generate_series(1, 1e12)'
  try {
    await sql`select 1`
    // The burn covers the statement, from the moment all six burners run on the writer until the
    // statement has ended, and then stops: it takes both of this machine's CPUs (~10 s of CPU per
    // run), so none of it outlasts the statement. statement_timeout only bounds a failed test's.
    const queries = burners.map((b) => b.unsafe(`set statement_timeout = 15000; ${BURN}`))
    const burning = queries.map((q) => settle(q))
    await eventually(
      async () => {
        const [row] = await watcher`select count(*)::int as n from pg_stat_activity
          where state = 'active' and query like ${`%${BURN}%`} and pid <> pg_backend_pid()`
        return row!.n === burners.length
      },
      5_000,
      'the six burners to run',
    )
    const result = await settle(sql`select pg_sleep(6) as slept`)
    for (const q of queries) q.cancel()
    assert.ok(result.ok, result.ok ? '' : `got ${result.error}`)
    await Promise.all(burning)
    assert.deepEqual(alarms, [])
  } finally {
    await Promise.all([...burners, watcher].map((b) => b.end({ timeout: 1 })))
    await sql.end()
  }
})

/** Blocks this process's event loop: a long synchronous task, or a machine too busy to run it. */
function stall(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // Spinning on purpose: nothing else in this process may run.
  }
}

test('a client whose own event loop stalls while probes are in flight does not declare a healthy writer down', async () => {
  const writer = (await lab.status()).writer!
  // Each probe's answer comes back ~100 ms after it was sent: while this process is stalled.
  await lab.latency(writer, 50)
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ connectTimeoutMs: 10_000 }))
  const alarms = alarmsOf(sql)
  try {
    await sql`select 1`
    const result = settle(sql`select pg_sleep(3) as slept`)
    // Stalls longer than a probe's 500 ms deadline, with short breaks in which probes go out:
    // the deadline's timer then fires before the answer waiting in the socket is read.
    const until = performance.now() + 2_500
    for (let i = 0; i < 10 && performance.now() < until; i++) {
      stall(600)
      await new Promise((r) => setTimeout(r, 5))
    }
    const settled = await result
    assert.ok(settled.ok, settled.ok ? '' : `got ${settled.error}`)
    assert.deepEqual(alarms, [])
  } finally {
    await sql.end()
    await lab.heal(writer)
  }
})
