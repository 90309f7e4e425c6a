/**
 * `idle`: what postgres-ha costs while the application does nothing. Two labs run side by side for
 * `--seconds` (default 60): one with a single client, one with `--clients` (default 10) clients of
 * the same cluster, each client with its default plugins and one statement run. Per cluster: the
 * monitoring statements per second (the topology monitor's own count), the monitors, and the
 * backends held by kind; per process: timers held (a census of `setTimeout`/`setInterval`, by
 * origin, and how many keep the process alive) and `process.getActiveResourcesInfo()` where the
 * runtime has it. Target: the many clients cost what the one costs.
 *
 * Usage: `node --import tsx bench/idle.ts [--seconds 60] [--clients 10] [--no-save]`.
 *
 * @module
 */
import { target, verdict } from './lib/targets.ts'
import { installTimerCensus, timerDelta } from './lib/timer-census.ts'

// Before postgres-ha creates any timer.
const census = installTimerCensus()

const { postgresHa } = await import('../mod.ts')
const { activeMonitorCount, monitorOf } = await import('../src/core/monitor-registry.ts')
const { hostMonitorCount } = await import('../src/plugins/host-monitoring/host-monitor.ts')
// Under the test suite's runner, labs taken from and handed back to its pool (bench/lib/bench-lab.ts).
const { sharedLab } = await import('../tests/helpers/shared-lab.ts')
const { parseFlags } = await import('./lib/args.ts')
const { countBackends, POOL_MARKER } = await import('./lib/backends.ts')
const { emit, machineInfo, progress, runtimeInfo, sleep } = await import('./lib/report.ts')

const flags = parseFlags('bench/idle.ts', {
  seconds: { default: 60, help: 'how long the clients stay idle' },
  clients: { default: 10, help: 'clients on the second cluster' },
  'settle-ms': { default: 2_000, help: 'wait after connecting before counting (initial fast polling ends)' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-idle.json' },
})
const started = performance.now()
const startedAt = new Date().toISOString()
const many = Math.max(1, Math.round(flags.clients))

progress('idle', 'two labs up')
await using one = await sharedLab({ nodes: 3, endpointLagMs: 0 })
await using several = await sharedLab({ nodes: 3, endpointLagMs: 0 })
type Sql = ReturnType<typeof postgresHa>
const clients: Sql[] = []
const activeResources = () => {
  const info = (process as { getActiveResourcesInfo?: () => string[] }).getActiveResourcesInfo?.()
  if (!info) return null
  const counts: Record<string, number> = {}
  for (const type of info) counts[type] = (counts[type] ?? 0) + 1
  return counts
}

try {
  const connect = async (url: string) => {
    const sql = postgresHa(url)
    clients.push(sql)
    await sql.unsafe(`select '${POOL_MARKER}'`)
    return sql
  }
  const before = census.count()
  const [single] = [await connect(one.url('cluster'))]
  await sleep(flags['settle-ms'])
  const afterOne = census.count()
  const group: Sql[] = []
  for (let i = 0; i < many; i++) group.push(await connect(several.url('cluster')))
  await sleep(flags['settle-ms'])
  const afterMany = census.count()

  const ids = { one: single!.ha.clusterId, many: group[0]!.ha.clusterId }
  const reads = () => ({ one: monitorOf(ids.one)?.reads ?? 0, many: monitorOf(ids.many)?.reads ?? 0 })
  const readsAtStart = reads()
  const idleStart = performance.now()
  progress('idle', `1 client and ${many} clients idle for ${flags.seconds} s`)
  let maxLive = afterMany.live
  const deadline = idleStart + flags.seconds * 1000
  for (let i = 0; performance.now() < deadline && i < flags.seconds * 10 + 10; i++) {
    await sleep(Math.min(1_000, deadline - performance.now()))
    maxLive = Math.max(maxLive, census.count().live)
  }
  const idleSeconds = (performance.now() - idleStart) / 1000
  const readsAtEnd = reads()
  const atEnd = census.count()
  const backends = { one: await countBackends(one), many: await countBackends(several) }
  const perSecond = (k: 'one' | 'many') =>
    Math.round(((readsAtEnd[k] - readsAtStart[k]) / idleSeconds) * 1000) / 1000
  const cluster = (k: 'one' | 'many', n: number, timers: ReturnType<typeof timerDelta>) => ({
    clients: n,
    clusterId: ids[k],
    monitors: monitorOf(ids[k]) ? 1 : 0,
    subscribers: monitorOf(ids[k])?.subscriberCount ?? 0,
    topologyReads: readsAtEnd[k] - readsAtStart[k],
    monitoringQueriesPerSecond: perSecond(k),
    backends: backends[k],
    timersAdded: timers,
  })
  const result = {
    one: cluster('one', 1, timerDelta(afterOne, before)),
    many: cluster('many', many, timerDelta(afterMany, afterOne)),
  }
  // One poll of difference is the two monitors' phases, not a cost.
  const targets = [
    target('monitors per cluster, many clients', '≤', 1, result.many.monitors),
    target(
      'monitoring statements, many clients − one client',
      '≤',
      1,
      result.many.topologyReads - result.one.topologyReads,
    ),
    target(
      'monitoring backends, many clients − one client',
      '≤',
      0,
      result.many.backends.monitoring - result.one.backends.monitoring,
    ),
    target(
      'postgres-ha timers, many clients − one client',
      '≤',
      0,
      result.many.timersAdded.byOrigin['postgres-ha'].live -
        result.one.timersAdded.byOrigin['postgres-ha'].live,
    ),
    target('postgres-ha timers keeping the process alive', '≤', 0, atEnd.byOrigin['postgres-ha'].refed),
  ]
  emit(
    'idle',
    {
      part: 'idle',
      runtime: runtimeInfo(),
      machine: machineInfo(),
      startedAt,
      durationMs: Math.round(performance.now() - started),
      idleSeconds: Math.round(idleSeconds * 10) / 10,
      clusters: result,
      process: {
        monitors: activeMonitorCount(),
        hostMonitors: hostMonitorCount(),
        timers: { before, afterOne, afterMany, atEnd, maxLive },
        activeResources: activeResources(),
      },
      targets,
      ...verdict(targets),
    },
    !flags['no-save'],
  )
} finally {
  await Promise.all(clients.map((c) => c.end({ timeout: 1 }).catch(() => {})))
}
