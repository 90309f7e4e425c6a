// A failover trial's write loops run until the trial stops them. They once ended by their own
// bound, counted from each loop's start, after a long warm-up: the suite's deno smoke run, on a
// lab whose first listed instance was a standby (postgres.js multi-host then writes only 25006
// errors, so the warm-up waited its full bound), reported postgres-ha with no write on the new
// writer — its loop had simply stopped writing half a second after the kill.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLedger } from '../bench/lib/ledger.ts'
import { describeTrial, runTrial, type TrialClient } from '../bench/lib/trial.ts'
import type { AnySql } from '../bench/lib/write-loop.ts'
import { postgresHa } from '../mod.ts'
import { labClientOptions } from './helpers/ha.ts'
import { client, sleep } from './helpers/lab.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('bench trial: a slow client and a long warm-up do not end the other loops before the cap', async () => {
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 100, endpointLagMs: 0 })
  const status = await lab.status()
  const reader = status.nodes.find((n) => n.role === 'reader')!.id
  await createLedger(lab.url('cluster'))
  const ha: TrialClient = {
    label: 'postgres-ha',
    async make() {
      const sql = postgresHa(lab.url('cluster'), labClientOptions())
      await sql`select 1`
      return { sql: sql as unknown as AnySql, end: () => sql.end({ timeout: 1 }) }
    },
  }
  // Slow to start, as any client on a loaded machine, and unable to write before the fault (its
  // one connection is to the standby, which the kill promotes): the warm-up waits its full bound.
  const onStandby: TrialClient = {
    label: 'on the standby',
    async make() {
      await sleep(3_000)
      const sql = client(lab.url(reader))
      await sql`select 1`
      return { sql: sql as unknown as AnySql, end: () => sql.end({ timeout: 1 }) }
    },
  }
  let id = 0
  const results = await runTrial({
    lab,
    scenario: 'kill',
    trial: 1,
    clients: [ha, onStandby],
    nextId: () => ++id,
    warmupWaitMs: 1_000,
    capMs: 2_000,
  })
  const [haResult] = results
  assert.ok(haResult, 'a result for postgres-ha')
  const line = describeTrial(haResult)
  assert.equal(haResult.endedEarly, null, `postgres-ha's loop ran until the trial stopped it: ${line}`)
  assert.equal(haResult.capped, false, `postgres-ha wrote on the new writer: ${line}`)
  assert.ok(haResult.firstWriteMs !== null && haResult.firstWriteMs > 0, line)
  assert.equal(haResult.ledger.lost, 0, line)
  assert.equal(haResult.ledger.duplicated, 0, line)
})
