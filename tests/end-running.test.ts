// sql.end() while statements run: destroying them on timeout is not a lost writer, and end()
// waits no longer than its timeout (or, without one, than the statements it waits for).
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Lab } from '../lab/mod.ts'
import { postgresHa } from '../mod.ts'
import { labClientOptions, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab

before(async () => {
  lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
})

after(async () => {
  await lab?.down()
})

function client() {
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ failoverTimeoutMs: 20_000 }))
  const events: string[] = []
  for (const name of ['failoverStart', 'failover', 'hostDown'] as const)
    sql.ha.on(name, () => events.push(name))
  // The first topology read names the writer (from nothing): only a change of writer counts.
  sql.ha.on('writerChanged', (e) => e.from && events.push('writerChanged'))
  return { sql, events }
}

test('end({ timeout }) while statements and a transaction run: no failover, no hostDown, bounded by the timeout', async () => {
  const { sql, events } = client()
  await sql`select 1`
  const statement = settle(sql`select pg_sleep(5)`)
  const transaction = settle(sql.begin((tx) => tx`select pg_sleep(5)`))
  await new Promise((r) => setTimeout(r, 300))
  const t0 = performance.now()
  await sql.end({ timeout: 0.2 })
  const took = performance.now() - t0
  const [s, t] = [await statement, await transaction]
  assert.ok(took < 1_500, `end({ timeout: 0.2 }) took ${Math.round(took)} ms`)
  assert.equal(s.ok, false)
  assert.equal(t.ok, false)
  // Settled at once, not after a failover search.
  assert.ok(
    s.ms < 2_500 && t.ms < 2_500,
    `statements settled after ${Math.round(s.ms)} / ${Math.round(t.ms)} ms`,
  )
  assert.deepEqual(events, [], 'end() is not a lost writer')
})

test('end() without a timeout waits for the statements, and no longer', async () => {
  const { sql, events } = client()
  await sql`select 1`
  const statement = settle(sql`select pg_sleep(0.5)`)
  await new Promise((r) => setTimeout(r, 100))
  const t0 = performance.now()
  await sql.end()
  const took = performance.now() - t0
  const s = await statement
  assert.equal(s.ok, true, `the statement finished: ${!s.ok && s.error}`)
  assert.ok(took < 2_000, `end() took ${Math.round(took)} ms for a 0.5 s statement`)
  assert.deepEqual(events, [])
})
