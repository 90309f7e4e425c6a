// A clusterInstanceHostPattern that turns instance ids into hosts nobody can reach (a CNAME or IP
// used for an Aurora cluster, a wrong pattern): the given host answers, so it is used as it is —
// no failover, no topology of unreachable hosts — and the fix is logged once, not per statement.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { labClientOptions, settle, warnCapture } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('an instance host pattern that reaches nothing: the given host keeps working, logged once', async () => {
  const crashes = watchCrashes()
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const { lines, logger } = warnCapture()
  const alarms: string[] = []
  // Instance ids become 127.0.0.N:1, where nothing listens.
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({ logger, clusterInstanceHostPattern: '?:1', topologyFastRefreshMs: 50 }),
  )
  for (const event of ['failoverStart', 'failover', 'hostDown'] as const)
    sql.ha.on(event, () => alarms.push(event))
  try {
    for (let i = 0; i < 5; i++) {
      const r = await settle(sql`select pg_is_in_recovery() as reader`)
      assert.ok(r.ok, `statement ${i}: ${!r.ok && `${r.error?.name}: ${r.error}`}`)
      assert.equal(r.value[0]!.reader, false)
      await sql.ha.refreshTopology()
    }
    assert.ok(
      !(sql.ha.topology()?.hosts ?? []).some((h) => h.port === 1),
      JSON.stringify(sql.ha.topology()?.hosts),
    )
    assert.deepEqual(alarms, [])
    const said = lines.filter((l) => l.includes('clusterInstanceHostPattern'))
    assert.equal(said.length, 1, lines.join('\n'))
    assert.match(said[0]!, /cannot be reached/)
  } finally {
    await sql.end()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})
