// Split brain on the `pg` dialect: a standby is promoted while the old primary still runs, unfenced
// (a partition, or an old primary restarted without pg_rewind). Both answer as primary. The writer
// is the one the evidence names — the promoted one, on the newer timeline — never the first host
// listed; the other is left out of the topology and the choice is logged once.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import postgres from 'postgres'
import { postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { asLabAdmin, eventually, labClientOptions, warnCapture } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('pg dialect, two primaries: the one on the newer timeline is the writer, not the first listed', async () => {
  const crashes = watchCrashes()
  // No automatic promotion: the lab must not react to the second primary while the test looks.
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 600_000, endpointLagMs: 60_000 })
  const status = await lab.status()
  const old = status.writer!
  const oldNode = status.nodes.find((n) => n.id === old)!
  const promoted = status.nodes.find((n) => n.id !== old)!
  // The old primary first: list order alone would pick it.
  const base = new URL(lab.url('cluster'))
  const url = `postgres://${base.username}:${base.password}@${oldNode.host}:${oldNode.port},${promoted.host}:${promoted.port}${base.pathname}`
  const { lines, logger } = warnCapture()
  const sql = postgresHa(url, labClientOptions({ dialect: 'pg', logger, topologyFastRefreshMs: 50 }))
  const admin = postgres(asLabAdmin(lab.url(promoted.id)), { max: 1, onnotice: () => {} })
  const where = async () => (await sql`select current_setting('pgha_lab.instance_id') as id`)[0]!.id as string
  try {
    assert.equal(await where(), old)
    const [row] = await admin`select pg_promote(true, 30) as ok`
    assert.equal(row!.ok, true)
    await eventually(
      async () => {
        await sql.ha.refreshTopology()
        return sql.ha.topology()?.writer?.host === promoted.host
      },
      15_000,
      `the topology to name ${promoted.id} (promoted, newer timeline) the writer`,
    )
    const hosts = sql.ha.topology()!.hosts.map((h) => h.host)
    assert.ok(!hosts.includes(oldNode.host), `the old primary is still in the topology: ${hosts}`)
    // Statements follow (the old primary's connections are dropped by the writer change).
    await eventually(
      async () => (await where()) === promoted.id,
      10_000,
      'statements to reach the new primary',
    )
    const said = lines.filter((l) => l.includes('split brain'))
    assert.equal(said.length, 1, lines.join('\n'))
    assert.match(said[0]!, /timeline/)
    // Read again: still the same choice, not logged again.
    await sql.ha.refreshTopology()
    assert.equal(sql.ha.topology()?.writer?.host, promoted.host)
    assert.equal(lines.filter((l) => l.includes('split brain')).length, 1)
  } finally {
    await sql.end()
    await admin.end()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})
