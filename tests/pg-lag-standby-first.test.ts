// The pg dialect's replica lag when a standby is listed first. Its topology connection goes to the
// first listed host that answers; after a failover that is often the old writer, back as a
// standby, whose pg_stat_replication is empty. Lag must still come from the writer, or
// maxReplicaLagMs and lowestLag go blind exactly after a failover.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type postgres from 'postgres'
import type { Lab, LabStatus } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { allInstancesUrl, eventually, labClientOptions } from './helpers/ha.ts'
import { labAdmins, lagPassed } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let status: LabStatus
let admin: (id: string) => postgres.Sql
let endAdmins: (() => Promise<void>) | undefined
let sql: PostgresHaSql | undefined

const WHO = "select current_setting('pgha_lab.instance_id') as id"

before(async () => {
  lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 0 })
  status = await lab.status()
  ;({ admin, end: endAdmins } = labAdmins(lab))
  await admin(status.writer!)`create table lag_first_ticks (id serial primary key)`
})

after(async () => {
  await sql?.end({ timeout: 1 })
  for (const n of status?.nodes ?? [])
    if (n.role === 'reader') await admin(n.id)`select pg_wal_replay_resume()`.catch(() => {})
  await endAdmins?.()
  await lab?.down()
})

test('pg dialect: with a standby listed first, each reader still has its lag, and a reader over maxReplicaLagMs gets no reads', async () => {
  const readers = status.nodes.filter((n) => n.role === 'reader').map((n) => n.id) as [string, string]
  const standbyFirst = {
    ...status,
    nodes: [...status.nodes].sort((a, b) => Number(a.role === 'writer') - Number(b.role === 'writer')),
  }
  assert.notEqual(standbyFirst.nodes[0]!.role, 'writer')
  const client = postgresHa(
    allInstancesUrl(lab, standbyFirst),
    labClientOptions({ dialect: 'pg', maxReplicaLagMs: 500 }),
  )
  sql = client
  await client.ha.reader.unsafe(WHO)
  const lagOf = (id: string) => client.ha.topology()?.readers.find((h) => h.host === id)?.lagMs
  await eventually(() => readers.every((id) => lagOf(id) !== undefined), 5_000, 'a lag for each reader')

  const [paused, healthy] = readers
  const writer = admin(status.writer!)
  let writing = true
  const writes = (async () => {
    for (let i = 0; writing && i < 1_000; i++) {
      await writer`insert into lag_first_ticks default values`
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  try {
    await admin(paused)`select pg_wal_replay_pause()`
    await lagPassed(writer, paused, 500)
    await eventually(() => (lagOf(paused) ?? 0) > 500, 3_000, 'the client learns the lag')
    for (let i = 0; i < 20; i++) {
      const [row] = await client.ha.reader.unsafe(WHO)
      assert.equal(row!.id, healthy, 'a reader over maxReplicaLagMs gets no reads')
    }
  } finally {
    writing = false
    await writes
    await admin(paused)`select pg_wal_replay_resume()`
  }
})
