// Every topology read is bounded, on a new connection and on the monitor's reused one: after the
// host the monitor reads from freezes, the topology keeps being read (from another host) and
// `sql.ha.topology().writer` names the new writer within seconds of the failover.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type HaPlugin, postgresHa } from '../mod.ts'
import { monitorOf } from '../src/core/monitor-registry.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { eventually, labClientOptions, SILENT_WRITER_LAB, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('topology: a frozen monitor host does not stall topology reads; the new writer shows within seconds', async () => {
  const crashes = watchCrashes()
  await using lab = await sharedLab(SILENT_WRITER_LAB)
  const sql = postgresHa(lab.url('cluster'), labClientOptions())
  try {
    await sql`select 1`
    const old = (await lab.status()).writer!
    assert.equal(sql.ha.topology()?.writer?.host, old)
    await lab.freeze(old)
    // Host monitoring notices the silent writer, failover moves to the new one.
    await settle(sql`select 1`)
    const promoted = await lab.waitForWriter({ timeoutMs: 20_000 })
    assert.notEqual(promoted.id, old)
    const failedOverAt = performance.now()
    await eventually(
      () => sql.ha.topology()?.writer?.host === promoted.id,
      8_000,
      'the topology to name the new writer',
    )
    const tookMs = performance.now() - failedOverAt
    assert.ok(tookMs < 8_000, `took ${Math.round(tookMs)} ms`)
  } finally {
    await sql.end()
    await lab.heal()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})

test('internal connections: one deadline covers the connect plugins — a plugin that never answers does not wedge the topology monitor', async () => {
  const crashes = watchCrashes()
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  let stalls = 1
  let stalled = 0
  const stall: HaPlugin = {
    name: 'stall',
    connect(ctx, next) {
      // The first internal connection hangs in the plugin, as an AWS call that never answers would.
      if (ctx.purpose !== 'user' && stalls > 0) {
        stalls--
        stalled++
        return new Promise<void>(() => {})
      }
      return next()
    },
  }
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({
      probeTimeoutMs: 1_000,
      connectTimeoutMs: 1_000,
      topologyFastRefreshMs: 100,
      plugins: ['connectionTracker', 'failover', 'hostMonitoring', stall],
    }),
  )
  try {
    // The first statement waits for the first topology read, which is the stalled one: it may fail
    // with CONNECT_TIMEOUT after connectTimeoutMs (as postgres.js would); it must not hang.
    const first = await settle(sql`select 1`)
    if (!first.ok) assert.equal(first.error.code, 'CONNECT_TIMEOUT', `got ${first.error}`)
    assert.equal(stalled, 1)
    await eventually(
      () => sql.ha.topology()?.writer !== undefined,
      6_000,
      'a topology read after the stalled connect',
    )
    await sql`select 1`
  } finally {
    await sql.end()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})

test('topology: a read that keeps failing (the wrong dialect) backs off, keeps its connection, and is logged once', async () => {
  const crashes = watchCrashes()
  await using lab = await sharedLab({ nodes: 2, dialect: 'pg', promoteAfterMs: 200, endpointLagMs: 60_000 })
  let topologyConnects = 0
  const count: HaPlugin = {
    name: 'count',
    connect(ctx, next) {
      if (ctx.purpose === 'topology') topologyConnects++
      return next()
    },
  }
  const warnings: string[] = []
  const logger = {
    debug() {},
    info() {},
    warn: (message: string, fields?: Record<string, unknown>) =>
      warnings.push(`${message} ${JSON.stringify(fields)}`),
    error() {},
  }
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({
      dialect: 'aurora-pg',
      topologyRefreshMs: 1_000,
      logger,
      plugins: ['connectionTracker', 'failover', 'hostMonitoring', count],
    }),
  )
  try {
    // No Aurora functions: every topology read fails; statements still run on the listed host.
    await sql`select 1`
    await new Promise((r) => setTimeout(r, 1_500))
    const connectsBefore = topologyConnects
    const readsBefore = monitorOf(sql.ha.clusterId)?.reads ?? 0
    await new Promise((r) => setTimeout(r, 3_000))
    const reads = (monitorOf(sql.ha.clusterId)?.reads ?? 0) - readsBefore
    // At the fast rate (100 ms) that would be ~30 reads and as many logins; backing off from 100 ms
    // doubles up to the calm interval (1 s here): at most 6 in 3 s, on the connection it has.
    assert.ok(reads <= 6, `${reads} topology reads in 3 s`)
    assert.ok(topologyConnects - connectsBefore <= 1, `${topologyConnects - connectsBefore} topology logins`)
    const topologyWarnings = warnings.filter((w) => w.startsWith('postgres-ha: topology'))
    assert.equal(topologyWarnings.length, 1, topologyWarnings.join('\n'))
    assert.match(topologyWarnings[0]!, /aurora_replica_status/)
    assert.match(topologyWarnings[0]!, /aurora-pg/)
  } finally {
    await sql.end()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})
