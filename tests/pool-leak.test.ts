// Pools of hosts that left the topology are closed: over 40 topology changes (a reader leaves, the
// other comes back, and reads follow) no connection, socket or timer accumulates — counted on the
// servers (pg_stat_activity) and, where the runtime reports them, in the process. 40 rounds, not
// 100, as in failover-leak: the sockets and timers are sampled after every round and their growth
// per round (least-squares slope over the 36 rounds after a warm-up) must stay under 0.05, which a
// leak of one every 15 rounds exceeds; the first-to-last comparison (slack 4 sockets, 10 timers)
// stays. The readers are never restarted, so a connection leaked in any round is still on the
// servers at the end, where each must hold at most the client's pool.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import postgres from 'postgres'
import { postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { asLabAdmin, eventually, labClientOptions } from './helpers/ha.ts'
import {
  type ActiveResources,
  activeResources,
  assertNoGrowth,
  assertNoneAccumulated,
} from './helpers/resources.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const APP = 'pool-leak-test'
const ROUNDS = 40
const WARMUP = 4
const MAX_GROWTH = 0.05

test(`${ROUNDS} topology changes: pools of hosts that left are closed, nothing accumulates`, async () => {
  const crashes = watchCrashes()
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const status = await lab.status()
  const writer = status.writer!
  const readers = status.nodes.filter((n) => n.id !== writer).map((n) => n.id)
  assert.equal(readers.length, 2)
  const admins = new Map(
    status.nodes.map((n) => [n.id, postgres(asLabAdmin(lab.url(n.id)), { max: 1, onnotice: () => {} })]),
  )
  // aurora_replica_status() leaves out the instances listed in lab_internal.hidden.
  await admins.get(writer)!.unsafe(`
    CREATE TABLE lab_internal.hidden (server_id text PRIMARY KEY);
    ALTER FUNCTION pg_catalog.aurora_replica_status() RENAME TO aurora_replica_status_real;
    CREATE TABLE lab_internal.replica_status AS SELECT * FROM pg_catalog.aurora_replica_status_real() WHERE false;
    CREATE FUNCTION pg_catalog.aurora_replica_status()
      RETURNS SETOF lab_internal.replica_status LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
      AS $$ SELECT * FROM pg_catalog.aurora_replica_status_real() r
            WHERE r.server_id NOT IN (SELECT server_id FROM lab_internal.hidden) $$;`)
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({ max: 2, topologyFastRefreshMs: 50, connection: { application_name: APP } }),
  )
  const userConnections = async (node: string) =>
    Number(
      (
        await admins.get(
          node,
        )!`select count(*)::int as n from pg_stat_activity where application_name = ${APP}`
      )[0]!.n,
    )
  try {
    await sql`select 1`
    await sql.ha.reader`select 1`
    const before = activeResources()
    const visible = (host: string) => (sql.ha.topology()?.hosts ?? []).some((h) => h.host === host)
    let hidden = ''
    const samples: ActiveResources[] = []
    for (let round = 0; round < ROUNDS; round++) {
      hidden = readers[round % 2]!
      const shown = readers[(round + 1) % 2]!
      await admins.get(writer)!.begin(async (tx) => {
        await tx`delete from lab_internal.hidden`
        await tx`insert into lab_internal.hidden ${tx([{ server_id: hidden }])}`
      })
      await eventually(
        async () => {
          await sql.ha.refreshTopology()
          return !visible(hidden) && visible(shown)
        },
        10_000,
        `round ${round}: ${hidden} out of the topology, ${shown} in`,
      )
      // Reads go to the one reader left: its pool opens (again).
      await Promise.all([sql.ha.reader`select 1`, sql.ha.reader`select 1`, sql`select 1`])
      const r = activeResources()
      if (r && round >= WARMUP) samples.push(r)
    }
    assertNoGrowth(samples, MAX_GROWTH)
    // The reader that left last has no pool connection left (its pool closes gracefully, within 1 s).
    await eventually(async () => (await userConnections(hidden)) === 0, 5_000, `${hidden}'s pool to close`)
    // The others hold at most their pool (max: 2) each.
    for (const node of status.nodes.map((n) => n.id))
      assert.ok((await userConnections(node)) <= 2, `${node}: ${await userConnections(node)} connections`)
    assertNoneAccumulated(before, activeResources())
  } finally {
    await sql.end()
    // The lab's own function back, so that the lab can go to the next file (lab/pool.ts).
    await admins.get(writer)!.unsafe(`
      DROP FUNCTION pg_catalog.aurora_replica_status();
      ALTER FUNCTION pg_catalog.aurora_replica_status_real() RENAME TO aurora_replica_status;
      DROP TABLE lab_internal.replica_status, lab_internal.hidden;`)
    for (const admin of admins.values()) await admin.end()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})
