// Topology rows are input: a row postgres-ha cannot use (no id, an id that is no host name, a
// second writer) is logged once and ignored — never a host named "null", never a writer by default.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import postgres from 'postgres'
import { postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { asLabAdmin, labClientOptions, warnCapture } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('aurora-pg: unusable rows and a stale second writer are logged once and ignored', async () => {
  const crashes = watchCrashes()
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const writer = (await lab.status()).writer!
  const admin = postgres(asLabAdmin(lab.url(writer)), { max: 1, onnotice: () => {} })
  // aurora_replica_status() now also returns the rows of a table we fill with bad ones.
  await admin.unsafe(`
    ALTER FUNCTION pg_catalog.aurora_replica_status() RENAME TO aurora_replica_status_real;
    CREATE TABLE lab_internal.hostile AS SELECT * FROM pg_catalog.aurora_replica_status_real() WHERE false;
    CREATE FUNCTION pg_catalog.aurora_replica_status() RETURNS SETOF lab_internal.hostile
      LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
      AS $$ SELECT * FROM pg_catalog.aurora_replica_status_real() UNION ALL SELECT * FROM lab_internal.hostile $$;
    INSERT INTO lab_internal.hostile (server_id, session_id, last_update_timestamp) VALUES
      (NULL, 'a', now()), ('', 'b', now()), ('db$1', 'c', now()), ('../etc', 'd', now()), ('x/y', 'e', now()),
      ('ghost-writer', 'MASTER_SESSION_ID', now() - interval '20 seconds');`)
  const { lines, logger } = warnCapture()
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ logger, topologyFastRefreshMs: 50 }))
  try {
    await sql`select 1`
    await sql.ha.refreshTopology()
    const topology = sql.ha.topology()!
    const hosts = topology.hosts.map((h) => h.host)
    assert.equal(topology.writer?.host, writer, JSON.stringify(topology.hosts))
    assert.deepEqual(hosts.sort(), (await lab.status()).nodes.map((n) => n.id).sort())
    for (const bad of ['null', '', 'db$1', '../etc', 'x/y', 'ghost-writer'])
      assert.ok(!hosts.includes(bad), `host ${JSON.stringify(bad)} in the topology`)
    const ignored = lines.filter((l) => l.includes('row ignored'))
    for (const what of ['null', '\\"\\"', 'db$1', '../etc', 'x/y', 'ghost-writer'])
      assert.equal(
        ignored.filter((l) => l.includes(what)).length >= 1,
        true,
        `no log line for ${what}: ${ignored.join('\n')}`,
      )
    // Read again: each is still ignored, and not logged again.
    const before = ignored.length
    await sql.ha.refreshTopology()
    assert.equal(lines.filter((l) => l.includes('row ignored')).length, before)
  } finally {
    await sql.end()
    // The lab's own function back, so that the lab can go to the next file (lab/pool.ts).
    await admin.unsafe(`
      DROP FUNCTION pg_catalog.aurora_replica_status();
      ALTER FUNCTION pg_catalog.aurora_replica_status_real() RENAME TO aurora_replica_status;
      DROP TABLE lab_internal.hostile;`)
    await admin.end()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})
