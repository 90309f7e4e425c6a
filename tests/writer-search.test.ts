/**
 * The writer search as a state machine, on fake time and a pretend cluster (no database): which
 * host wins, when the failed host may, and that nothing outlives the search.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type HostAddress, hostKey } from '../src/core/host.ts'
import { searchWriter } from '../src/plugins/failover/writer-search.ts'
import { type FakeCluster, type FakeHostState, fakeCluster } from './helpers/fake-cluster.ts'
import { type FakeRuntime, fakeRuntime } from './helpers/fake-runtime.ts'

const A: HostAddress = { host: 'a', port: 5432 }
const B: HostAddress = { host: 'b', port: 5432 }
const C: HostAddress = { host: 'c', port: 5432 }
const key = (h: HostAddress | undefined) => (h ? hostKey(h) : undefined)

function setUp(states: Array<[HostAddress, FakeHostState]>) {
  const runtime = fakeRuntime()
  const cluster = fakeCluster(runtime, states)
  return { runtime, cluster }
}

function search(
  runtime: FakeRuntime,
  cluster: FakeCluster,
  extra: { failed?: HostAddress; deadlineMs?: number; signal?: AbortSignal; reported?: HostAddress } = {},
) {
  let result: { host: HostAddress | undefined } | undefined
  const started = runtime.now()
  const done = searchWriter({
    factory: cluster.factory,
    runtime,
    candidates: () => [A, B, C],
    reportedWriter: () => extra.reported,
    failed: extra.failed,
    probeIntervalMs: 20,
    probeTimeoutMs: 200,
    deadline: started + (extra.deadlineMs ?? 5_000),
    signal: extra.signal ?? new AbortController().signal,
  }).then((host) => {
    result = { host }
    return host
  })
  return { done, result: () => result, tookMs: () => runtime.now() - started }
}

test('writer search: finds the one writable host, a black-holed one slowing nobody', async () => {
  const { runtime, cluster } = setUp([
    [A, 'silent'],
    [B, 'reader'],
    [C, 'writer'],
  ])
  const s = search(runtime, cluster, { failed: A })
  assert.ok(await runtime.advanceUntil(() => s.result() !== undefined, 100, 1))
  assert.equal(key(s.result()!.host), 'c:5432')
  assert.ok(s.tookMs() < 20, `found in ${s.tookMs()} ms of fake time`)
  await runtime.advance(1_000)
  assert.equal(cluster.openConnections(), 0, 'every probe connection is closed after the search')
})

test('writer search: the failed host answering writable waits a round, and loses to another writer', async () => {
  const { runtime, cluster } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'writer'],
  ])
  cluster.delays(C, { queryMs: 10 })
  const s = search(runtime, cluster, { failed: A })
  await runtime.advance(5)
  assert.equal(s.result(), undefined, 'the failed host is not taken at once')
  assert.ok(await runtime.advanceUntil(() => s.result() !== undefined, 200, 1))
  assert.equal(key(s.result()!.host), 'c:5432')
})

test('writer search: the failed host is taken after one round when no other host is writable', async () => {
  const { runtime, cluster } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'down'],
  ])
  const s = search(runtime, cluster, { failed: A })
  assert.ok(await runtime.advanceUntil(() => s.result() !== undefined, 200, 1))
  assert.equal(key(s.result()!.host), 'a:5432')
  assert.ok(s.tookMs() >= 20, `waited a probe interval (${s.tookMs()} ms)`)
})

test('writer search: the failed host answering last changes nothing, and its late connection is closed', async () => {
  const { runtime, cluster } = setUp([
    [A, 'writer'],
    [B, 'writer'],
    [C, 'reader'],
  ])
  cluster.delays(A, { connectMs: 150 })
  const s = search(runtime, cluster, { failed: A })
  assert.ok(await runtime.advanceUntil(() => s.result() !== undefined, 100, 1))
  assert.equal(key(s.result()!.host), 'b:5432')
  await runtime.advance(500)
  assert.equal(cluster.openConnections(A), 0, 'the connect that finished after the search was aborted')
  assert.equal(cluster.openConnections(), 0)
})

test('writer search: prefers the writer the topology reports when two hosts are writable', async () => {
  const { runtime, cluster } = setUp([
    [A, 'down'],
    [B, 'writer'],
    [C, 'writer'],
  ])
  cluster.delays(B, { queryMs: 5 })
  const s = search(runtime, cluster, { failed: A, reported: C })
  assert.ok(await runtime.advanceUntil(() => s.result() !== undefined, 100, 1))
  assert.equal(key(s.result()!.host), 'c:5432')
})

test('writer search: gives up at the deadline with nothing open and no timer left', async () => {
  const { runtime, cluster } = setUp([
    [A, 'down'],
    [B, 'reader'],
    [C, 'silent'],
  ])
  const s = search(runtime, cluster, { failed: A, deadlineMs: 1_000 })
  assert.ok(await runtime.advanceUntil(() => s.result() !== undefined, 1_100, 10))
  assert.equal(s.result()!.host, undefined)
  assert.ok(s.tookMs() >= 1_000 && s.tookMs() <= 1_030, `gave up after ${s.tookMs()} ms`)
  assert.ok(
    cluster.connects.filter((c) => c.host === 'b:5432').length === 1,
    'the reader is probed on one connection',
  )
  await runtime.advance(300)
  assert.equal(cluster.openConnections(), 0)
  assert.deepEqual(runtime.pending(), [], 'no timer outlives the search')
})

test('writer search: stops at once when the client ends', async () => {
  const { runtime, cluster } = setUp([
    [A, 'down'],
    [B, 'reader'],
    [C, 'silent'],
  ])
  const ended = new AbortController()
  const s = search(runtime, cluster, { failed: A, signal: ended.signal })
  await runtime.advance(100)
  ended.abort(new Error('ended'))
  assert.ok(await runtime.advanceUntil(() => s.result() !== undefined, 5, 1))
  assert.equal(s.result()!.host, undefined)
  await runtime.advance(300)
  assert.equal(cluster.openConnections(), 0)
  assert.deepEqual(runtime.pending(), [])
})
