/**
 * The host monitor as a state machine, on fake time and a pretend cluster (no database): when a
 * watched host is declared down, when it is not, and that an unwatched monitor lets go.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { HostAddress } from '../src/core/host.ts'
import { HostMonitor } from '../src/plugins/host-monitoring/host-monitor.ts'
import { type FakeHostState, fakeCluster } from './helpers/fake-cluster.ts'
import { fakeRuntime } from './helpers/fake-runtime.ts'

const A: HostAddress = { host: 'a', port: 5432 }
const INTERVAL_MS = 500
const COUNT = 2

function setUp(state: FakeHostState) {
  const runtime = fakeRuntime()
  const cluster = fakeCluster(runtime, [[A, state]])
  let idle = 0
  const monitor = new HostMonitor(A, runtime, () => void idle++)
  const verdicts: Array<{ at: number; reason: string }> = []
  const watch = () =>
    monitor.watch({
      factory: cluster.factory,
      intervalMs: INTERVAL_MS,
      count: COUNT,
      connectTimeoutMs: 10_000,
      onDown: (reason) => void verdicts.push({ at: runtime.now(), reason }),
    })
  return { runtime, cluster, monitor, verdicts, watch, idle: () => idle }
}

test('host monitor: a host that goes silent is declared down after count probes an interval apart', async () => {
  const { runtime, cluster, verdicts, watch } = setUp('writer')
  const started = runtime.now()
  watch()
  await runtime.advance(10)
  cluster.set(A, 'silent')
  await runtime.advance(5_000)
  assert.equal(verdicts.length, 1, 'told once')
  const tookMs = verdicts[0]!.at - started
  // The probe at 500 ms times out at 1000; the next one (a new connection) at 1500.
  assert.ok(
    tookMs >= 1_000 && tookMs <= COUNT * INTERVAL_MS + INTERVAL_MS,
    `declared down after ${tookMs} ms`,
  )
  assert.match(verdicts[0]!.reason, /no answer from a:5432 to 2 probes 500 ms apart/)
  assert.equal(cluster.openConnections(), 0)
})

test('host monitor: a host that answers is probed every interval and never declared down', async () => {
  const { runtime, cluster, monitor, verdicts, watch } = setUp('writer')
  const unwatch = watch()
  await runtime.advance(10_000)
  assert.equal(verdicts.length, 0)
  assert.ok(monitor.probes >= 19 && monitor.probes <= 21, `${monitor.probes} probes in 10 s`)
  assert.equal(cluster.connects.length, 1, 'on one connection')
  unwatch()
})

test('host monitor: a host that refuses with an answer (too many clients) is up', async () => {
  const { runtime, verdicts, watch } = setUp('busy')
  const unwatch = watch()
  await runtime.advance(5_000)
  assert.equal(verdicts.length, 0)
  unwatch()
})

test('host monitor: a host that refuses connections is declared down', async () => {
  const { runtime, verdicts, watch } = setUp('down')
  watch()
  await runtime.advance(2_000)
  assert.equal(verdicts.length, 1)
  assert.ok(verdicts[0]!.at - 1_000_000 <= INTERVAL_MS, 'two refusals, an interval apart')
})

test('host monitor: the last unwatch stops probing; the idle connection is closed after a while', async () => {
  const { runtime, cluster, monitor, watch, idle } = setUp('writer')
  const unwatch = watch()
  await runtime.advance(1_000)
  unwatch()
  const probes = monitor.probes
  await runtime.advance(5_000)
  assert.equal(monitor.probes, probes, 'no probe after the last unwatch')
  assert.equal(cluster.openConnections(), 1, 'kept for the next long statement')
  await runtime.advance(6_000)
  assert.equal(cluster.openConnections(), 0)
  assert.equal(idle(), 1, 'the monitor forgets itself')
  assert.deepEqual(runtime.pending(), [])
})
