/**
 * The topology monitor's polling as a state machine, on fake time and a pretend cluster (no
 * database): calm and fast polling, settling, and the back-off while no host answers.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { HostAddress } from '../src/core/host.ts'
import { parseHostPattern } from '../src/core/host-pattern.ts'
import { safeLogger } from '../src/core/logger.ts'
import type { Topology } from '../src/core/topology.ts'
import { TopologyMonitor } from '../src/core/topology-monitor.ts'
import { FAKE_TOPOLOGY_QUERY, type FakeHostState, fakeCluster } from './helpers/fake-cluster.ts'
import { type FakeRuntime, fakeRuntime } from './helpers/fake-runtime.ts'

const A: HostAddress = { host: 'a', port: 5432 }
const B: HostAddress = { host: 'b', port: 5432 }
const C: HostAddress = { host: 'c', port: 5432 }
const REFRESH_MS = 30_000
const FAST_MS = 100

function setUp(states: Array<[HostAddress, FakeHostState]>) {
  const runtime = fakeRuntime()
  const cluster = fakeCluster(runtime, states)
  const monitor = new TopologyMonitor({
    clusterId: 'fake',
    dialect: cluster.dialect,
    hostPattern: parseHostPattern('?') as Exclude<ReturnType<typeof parseHostPattern>, string>,
    initialHosts: [A],
    defaultPort: 5432,
    refreshMs: REFRESH_MS,
    fastRefreshMs: FAST_MS,
    probeTimeoutMs: 500,
    runtime,
    logger: safeLogger(undefined),
    options: {},
    detect: async () => cluster.dialect,
  })
  const seen: Topology[] = []
  monitor.subscribe({ factory: cluster.factory, onTopology: (t) => void seen.push(t) })
  /** Fake times at which the topology was read. */
  const reads = () => cluster.queries.filter((q) => q.text === FAKE_TOPOLOGY_QUERY).map((q) => q.at)
  return { runtime, cluster, monitor, seen, reads }
}

/** A read outside the timer (as the first statement or a failover does), on fake time. */
async function refreshNow(monitor: TopologyMonitor, runtime: FakeRuntime): Promise<void> {
  const read = monitor.refresh()
  await runtime.advance(0)
  await read
}

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]!)

test('topology monitor: polls at the calm rate, one connection for every read', async () => {
  const { runtime, cluster, monitor, seen, reads } = setUp([
    [A, 'writer'],
    [B, 'reader'],
  ])
  await runtime.advance(3 * REFRESH_MS)
  assert.deepEqual(gaps(reads()), [REFRESH_MS, REFRESH_MS])
  assert.equal(seen.length, 1, 'subscribers hear of changes only')
  assert.equal(seen[0]!.writer?.host, 'a')
  assert.equal(cluster.connects.length, 1)
  monitor.stop()
})

test('topology monitor: polls fast after a sign of trouble until the topology settles', async () => {
  const { runtime, cluster, monitor, seen, reads } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'reader'],
  ])
  await refreshNow(monitor, runtime)
  const before = reads().length
  monitor.requestFastPolling('failover')
  assert.equal(monitor.fast, true)
  // The writer moves while polling fast: the change is seen on the next fast read.
  await runtime.advance(FAST_MS / 2)
  cluster.set(A, 'down')
  cluster.set(B, 'writer')
  assert.ok(await runtime.advanceUntil(() => seen.at(-1)?.writer?.host === 'b', 3 * FAST_MS, 10))
  assert.ok(await runtime.advanceUntil(() => !monitor.fast, 10 * FAST_MS, 10), 'settles')
  const fastReads = reads().slice(before)
  assert.ok(fastReads.length >= 4 && fastReads.length <= 8, `${fastReads.length} fast reads`)
  for (const gap of gaps(fastReads)) assert.ok(gap <= FAST_MS + 1, `fast gap ${gap} ms`)
  const settledAt = runtime.now()
  await runtime.advance(REFRESH_MS)
  const after = reads().filter((t) => t > settledAt)
  assert.equal(after.length, 1, 'back to the calm rate once settled')
  monitor.stop()
})

test('topology monitor: a topology without a writer keeps polling fast', async () => {
  const { runtime, monitor, reads } = setUp([
    [A, 'reader'],
    [B, 'reader'],
  ])
  await refreshNow(monitor, runtime)
  const before = reads().length
  await runtime.advance(20 * FAST_MS)
  assert.equal(monitor.fast, true)
  assert.ok(reads().length - before >= 15, `${reads().length - before} reads in ${20 * FAST_MS} ms`)
  monitor.stop()
})

test('topology monitor: backs off while no host answers, doubling from the fast rate up to 5 s', async () => {
  const { runtime, cluster, monitor } = setUp([[A, 'down']])
  await refreshNow(monitor, runtime)
  await runtime.advance(25_000)
  const attempts = cluster.connects.filter((c) => c.host === 'a:5432').map((c) => c.at)
  assert.deepEqual(gaps(attempts).slice(0, 8), [100, 200, 400, 800, 1600, 3200, 5000, 5000])
  cluster.set(A, 'writer')
  await runtime.advance(5_000)
  assert.equal(monitor.current?.writer?.host, 'a', 'reads again at most 5 s after the host answers')
  assert.equal(monitor.fast, false, 'and settles')
  monitor.stop()
  assert.deepEqual(runtime.pending(), [], 'stop() leaves no timer')
})

test('topology monitor: a listed host whose role was never known (joining) is read again after 1, 2, 4… s, then at the calm rate', async () => {
  const { runtime, monitor, seen, reads } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'down'],
  ])
  await refreshNow(monitor, runtime)
  assert.equal(seen.at(-1)?.hosts.find((h) => h.host === 'c')?.role, 'unknown')
  await runtime.advance(1_000 + 2_000 + 4_000 + 8_000 + 16_000 + 2 * REFRESH_MS)
  assert.deepEqual(gaps(reads()), [1_000, 2_000, 4_000, 8_000, 16_000, REFRESH_MS, REFRESH_MS])
  monitor.stop()
})

test('topology monitor: a joining host is seen soon after it is ready; a known host that goes down is not joining', async () => {
  const { runtime, cluster, monitor, seen, reads } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'down'],
  ])
  await refreshNow(monitor, runtime)
  const start = runtime.now()
  await runtime.advance(3_500)
  cluster.set(C, 'reader')
  // Reads at 1 s and 3 s found it still unknown; the one at 7 s finds it (the calm one: at 30 s).
  assert.ok(
    await runtime.advanceUntil(
      () => seen.at(-1)?.hosts.find((h) => h.host === 'c')?.role === 'reader',
      10_000,
      100,
    ),
  )
  assert.equal(runtime.now() - start, 7_000)
  // Nothing joins any more, and B going down is a known host lost: the calm rate.
  cluster.set(B, 'down')
  const from = reads().length
  await runtime.advance(3 * REFRESH_MS)
  assert.deepEqual(gaps(reads().slice(from - 1)), [REFRESH_MS, REFRESH_MS, REFRESH_MS])
  assert.equal(seen.at(-1)?.hosts.find((h) => h.host === 'b')?.role, 'unknown')
  monitor.stop()
})
