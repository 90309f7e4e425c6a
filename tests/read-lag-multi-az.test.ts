// maxReplicaLagMs on an RDS Multi-AZ DB cluster (the lab's emulation: rds_tools.show_topology(),
// which carries no lag): each standby's lag comes from the writer's pg_stat_replication, matched to
// the standby by what it calls itself. Replay paused on one reader: within about a second of its lag
// passing the limit it gets no reads; resumed, it gets reads again.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type postgres from 'postgres'
import type { Lab, LabStatus } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { monitorOf } from '../src/core/monitor-registry.ts'
import { eventually, labClientOptions } from './helpers/ha.ts'
import { labAdmins, lagPassed } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let status: LabStatus
let readers: string[]

const WHO = "select current_setting('pgha_lab.instance_id') as id"

let admin: (id: string) => postgres.Sql
let endAdmins: () => Promise<void>

before(async () => {
  lab = await sharedLab({ nodes: 3, dialect: 'rds-multi-az-pg', endpointLagMs: 0 })
  status = await lab.status()
  ;({ admin, end: endAdmins } = labAdmins(lab))
  readers = status.nodes.filter((n) => n.role === 'reader').map((n) => n.id)
  await admin(status.writer!)`create table lag_ticks (id serial primary key, at timestamptz default now())`
})

after(async () => {
  await endAdmins?.()
  await lab?.down()
})

test('read-lag-multi-az: a paused standby gets no reads within ~1 s of its lag passing maxReplicaLagMs; back once it catches up', async () => {
  const [paused, healthy] = readers as [string, string]
  const sql: PostgresHaSql = postgresHa(
    lab.url('cluster'),
    labClientOptions({ maxReplicaLagMs: 500, clusterInstanceHostPattern: status.instanceHostPattern }),
  )
  const lagOf = (id: string) => sql.ha.topology()?.readers.find((h) => h.host === id)?.lagMs
  const w = admin(status.writer!)
  let writing = true
  // Lag grows only while the writer writes.
  const writes = (async () => {
    while (writing) {
      await w`insert into lag_ticks default values`
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  try {
    await sql.ha.reader.unsafe(WHO)
    assert.equal(monitorOf(sql.ha.clusterId)?.dialect?.name, 'rds-multi-az-pg')
    await eventually(() => readers.every((id) => lagOf(id) !== undefined), 5_000, 'the lag of both standbys')
    // Both standbys get reads while they keep up.
    const seen = new Set<string>()
    await eventually(
      async () => {
        seen.add(String((await sql.ha.reader.unsafe(WHO))[0]!.id))
        return seen.size === 2
      },
      5_000,
      'reads on both standbys',
    )
    await admin(paused)`select pg_wal_replay_pause()`
    const crossedAt = await lagPassed(w, paused, 500)
    await eventually(() => (lagOf(paused) ?? 0) > 500, 1_500, 'the client learns the lag')
    assert.ok(
      performance.now() - crossedAt < 1_500,
      `lag known ${performance.now() - crossedAt} ms after it crossed`,
    )
    for (let i = 0; i < 20; i++)
      assert.equal(
        (await sql.ha.reader.unsafe(WHO))[0]!.id,
        healthy,
        'a standby over maxReplicaLagMs gets no reads',
      )
  } finally {
    await admin(paused)`select pg_wal_replay_resume()`
    writing = false
    await writes
  }
  try {
    await eventually(
      async () => (await sql.ha.reader.unsafe(WHO))[0]!.id === paused,
      10_000,
      'the caught-up standby gets reads again',
    )
  } finally {
    await sql.end({ timeout: 1 })
  }
})

test("read-lag-multi-az: a client given a standby's URL still gets each standby's lag, from the writer", async () => {
  // The topology connection goes to the standby given; its own pg_stat_replication is empty.
  const sql = postgresHa(
    lab.url(readers[0]!),
    labClientOptions({ maxReplicaLagMs: 500, clusterInstanceHostPattern: status.instanceHostPattern }),
  )
  try {
    await sql.ha.reader.unsafe(WHO)
    assert.equal(monitorOf(sql.ha.clusterId)?.dialect?.name, 'rds-multi-az-pg')
    const lagOf = (id: string) => sql.ha.topology()?.readers.find((h) => h.host === id)?.lagMs
    await eventually(() => readers.every((id) => lagOf(id) !== undefined), 5_000, 'the lag of both standbys')
  } finally {
    await sql.end()
  }
})
