// The core client against real clusters of the lab: dialects, the shared topology monitor,
// start-up errors, end(), and what inspection shows. One lab per dialect for the file (a lab start
// is most of a test's time): the tests that change no lab state share the aurora-pg one.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { inspect } from 'node:util'
import type { Lab, LabDialect } from '../lab/mod.ts'
import { postgresHa } from '../mod.ts'
import { activeMonitorCount, monitorOf } from '../src/core/monitor-registry.ts'
import { allInstancesUrl, labClientOptions } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'
import { runScript } from './helpers/spawn-runtime.ts'

const labs = new Map<LabDialect, Promise<Lab>>()
/** The file's 3-node lab of `dialect`, started on first use. */
function labOf(dialect: LabDialect): Promise<Lab> {
  let lab = labs.get(dialect)
  if (!lab) {
    lab = sharedLab({ nodes: 3, dialect, endpointLagMs: 0 })
    labs.set(dialect, lab)
  }
  return lab
}
after(async () => {
  await Promise.all([...labs.values()].map((lab) => lab.then((l) => l.down()).catch(() => {})))
})

for (const dialect of ['aurora-pg', 'rds-multi-az-pg', 'pg'] as const) {
  test(`client: detects the ${dialect} dialect and reads the lab's topology`, async () => {
    const lab = await labOf(dialect)
    const status = await lab.status()
    // Aurora and Multi-AZ users connect to the cluster endpoint; self-managed users list every host.
    const url = dialect === 'pg' ? allInstancesUrl(lab, status) : lab.url('cluster')
    // Like an RDS host name would, the lab tells how an instance's name maps to its endpoint.
    const sql = postgresHa(url, labClientOptions({ clusterInstanceHostPattern: status.instanceHostPattern }))
    try {
      const [row] = await sql`select pg_is_in_recovery() as reader`
      assert.equal(row!.reader, false, 'statements go to the writer')
      const topology = sql.ha.topology()
      assert.ok(topology, 'a topology was read on first use')
      assert.equal(monitorOf(sql.ha.clusterId)?.dialect?.name, dialect)
      assert.equal(topology.writer?.host, status.writer)
      assert.deepEqual(topology.hosts.map((h) => h.host).sort(), status.nodes.map((n) => n.host).sort())
      assert.equal(topology.readers.length, 2)
      assert.deepEqual(sql.ha.writer(), { host: status.writer, port: status.port })
    } finally {
      await sql.end()
    }
  })
}

test('client: ten clients of one cluster share one topology monitor, stopped by the last end()', async () => {
  const lab = await labOf('aurora-pg')
  const before = activeMonitorCount()
  const clients = Array.from({ length: 10 }, () => postgresHa(lab.url('cluster'), labClientOptions()))
  try {
    await Promise.all(clients.map((sql) => sql`select 1`))
    assert.equal(activeMonitorCount(), before + 1)
    const monitor = monitorOf(clients[0]!.ha.clusterId)!
    assert.equal(monitor.subscriberCount, 10)
    assert.ok(clients.every((c) => c.ha.clusterId === clients[0]!.ha.clusterId))
    // All ten started at once, yet the topology was read once for all of them.
    assert.equal(monitor.reads, 1)
  } finally {
    await Promise.all(clients.slice(1).map((c) => c.end()))
    assert.equal(activeMonitorCount(), before + 1, 'one client left keeps the monitor')
    await clients[0]!.end()
  }
  assert.equal(activeMonitorCount(), before, 'the last end() stops the monitor')
})

test("client: an unreachable host at start-up rejects the first statement with postgres.js's own connect error", async () => {
  // A port nothing listens on: refused at once.
  const sql = postgresHa('postgres://app:pw@127.0.0.1:1/app', labClientOptions({ connectTimeoutMs: 2_000 }))
  const t0 = performance.now()
  await assert.rejects(sql`select 1`, (e: unknown) => {
    assert.equal((e as { code?: string }).code, 'ECONNREFUSED', `got ${inspect(e)}`)
    assert.match((e as Error).message, /127\.0\.0\.1:1/)
    return true
  })
  assert.ok(performance.now() - t0 < 2_500)
  await sql.end()
})

test('client: a silent host at start-up rejects within connectTimeoutMs instead of hanging', async () => {
  await using lab = await sharedLab({ nodes: 1, endpointLagMs: 0 })
  const status = await lab.status()
  await lab.blackhole(status.writer!)
  const sql = postgresHa(lab.url(status.writer!), labClientOptions({ connectTimeoutMs: 1_000 }))
  const t0 = performance.now()
  await assert.rejects(sql`select 1`, { code: 'CONNECT_TIMEOUT' })
  const took = performance.now() - t0
  assert.ok(took < 2_500, `took ${took} ms`)
  await lab.heal()
  // Healed, the same client works without a restart.
  const [row] = await sql`select 1 as one`
  assert.equal(row!.one, 1)
  await sql.end()
})

test("client: end() twice is harmless and later statements get postgres.js's CONNECTION_ENDED", async () => {
  const lab = await labOf('aurora-pg')
  const sql = postgresHa(lab.url('cluster'), labClientOptions())
  await sql`select 1`
  await sql.end()
  await sql.end()
  await assert.rejects(sql`select 1`, { code: 'CONNECTION_ENDED' })
  await assert.rejects(
    sql.begin((tx) => tx`select 1`),
    { code: 'CONNECTION_ENDED' },
  )
})

test('client: no password appears in inspect output, errors or logs', async () => {
  const lab = await labOf('aurora-pg')
  const password = new URL(lab.url('cluster')).password
  assert.ok(password.length >= 8)
  const lines: string[] = []
  const logger = {
    debug: (...a: unknown[]) => lines.push(inspect(a)),
    info: (...a: unknown[]) => lines.push(inspect(a)),
    warn: (...a: unknown[]) => lines.push(inspect(a)),
    error: (...a: unknown[]) => lines.push(inspect(a)),
  }
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ logger }))
  await sql`select 1`
  const bad = postgresHa(
    lab.url('cluster').replace(password, `${password}-wrong`),
    labClientOptions({ logger }),
  )
  const error = await bad`select 1`.catch((e) => e)
  assert.equal(error?.code, '28P01', 'wrong password is refused by the server')
  for (const text of [
    inspect(sql),
    inspect(sql, { depth: 10, showHidden: true }),
    inspect(sql.options, { depth: 10 }),
    JSON.stringify(sql.options),
    String(error?.message),
    inspect(error, { depth: 5 }),
    ...lines,
  ]) {
    assert.ok(!text.includes(password), `password leaked in: ${text.slice(0, 200)}`)
  }
  await sql.end()
  await bad.end()
})

test("client: an idle client does not keep the process alive (its own connections are unref'd)", async () => {
  const lab = await labOf('aurora-pg')
  const script = fileURLToPath(new URL('./fixtures/exit-when-idle.ts', import.meta.url))
  const result = await runScript(script, 20_000, { PGHA_TEST_URL: lab.url('cluster') })
  assert.equal(result.timedOut, false, `the process was kept alive; stderr: ${result.stderr}`)
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stdout, /result 1/)
})
