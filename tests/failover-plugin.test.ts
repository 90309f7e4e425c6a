/**
 * The failover plugin as a state machine, on fake time, fake client services and a pretend
 * cluster (no database): concurrent failures share one failover, a stale failure starts none,
 * the client ending mid-search, and lost connections on a writer that still answers (no failover;
 * the failed host answering last during a search is tests/writer-search.test.ts).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  FailoverFailedError,
  FailoverSuccessError,
  TransactionResolutionUnknownError,
} from '../src/core/errors.ts'
import { type HostAddress, type HostInfo, hostKey } from '../src/core/host.ts'
import type { ExecuteContext, HaPlugin } from '../src/core/plugin.ts'
import { makeTopology } from '../src/core/topology.ts'
import { connectionError } from '../src/drivers/postgresjs/errors.ts'
import { failoverPlugin } from '../src/plugins/failover/failover-plugin.ts'
import { type FakeHostState, fakeCluster } from './helpers/fake-cluster.ts'
import { fakeRuntime } from './helpers/fake-runtime.ts'
import { fakeServices } from './helpers/fake-services.ts'

const A: HostAddress = { host: 'a', port: 5432 }
const B: HostAddress = { host: 'b', port: 5432 }
const C: HostAddress = { host: 'c', port: 5432 }

function setUp(states: Array<[HostAddress, FakeHostState]>, options: Record<string, unknown> = {}) {
  const runtime = fakeRuntime()
  const cluster = fakeCluster(runtime, states)
  const hosts: HostInfo[] = [
    { ...A, role: 'writer' },
    { ...B, role: 'reader' },
    { ...C, role: 'reader' },
  ]
  const f = fakeServices({
    runtime,
    factory: cluster.factory,
    writer: A,
    topology: makeTopology('fake', hosts, runtime.wallNow(), 'a:5432'),
    options: { failoverTimeoutMs: 2_000, failoverProbeIntervalMs: 20, probeTimeoutMs: 200, ...options },
  })
  const plugin = failoverPlugin()
  plugin.init!(f.services)
  const starts: unknown[] = []
  const ends: Array<{ ok: boolean; to: HostAddress | undefined }> = []
  f.events.on('failoverStart', (e) => starts.push(e))
  f.events.on('failover', (e) => ends.push(e))
  return { runtime, cluster, f, plugin, starts, ends }
}

function context(over: Partial<ExecuteContext> = {}): ExecuteContext {
  return {
    kind: 'statement',
    targetRole: 'writer',
    host: A,
    inTransaction: false,
    sent: false,
    delivered: false,
    attempt: 0,
    description: 'select 1',
    ...over,
  }
}

const lost = () => connectionError('CONNECTION_CLOSED', 'the connection was lost', 'a', 5432)

/** Runs `next` through the plugin and records how it settled. */
function run(plugin: HaPlugin, ctx: ExecuteContext, next: () => Promise<unknown>) {
  const outcome: { value?: unknown; error?: unknown; settled: boolean } = { settled: false }
  plugin.execute!(ctx, next).then(
    (value) => Object.assign(outcome, { value, settled: true }),
    (error) => Object.assign(outcome, { error, settled: true }),
  )
  return outcome
}

test('failover plugin: concurrent failures on the writer share one failover', async () => {
  const { runtime, cluster, f, plugin, starts } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'reader'],
  ])
  cluster.set(A, 'down')
  cluster.set(B, 'writer')
  const runs = [1, 2, 3].map(() => {
    const ctx = context()
    return run(plugin, ctx, async () => {
      if (ctx.host && hostKey(ctx.host) === 'a:5432' && ctx.attempt === 0) {
        ctx.sent = true
        throw lost()
      }
      return 'ran'
    })
  })
  assert.ok(await runtime.advanceUntil(() => runs.every((r) => r.settled), 500, 5))
  assert.equal(starts.length, 1, 'one failover for three failures')
  for (const r of runs) assert.ok(r.error instanceof FailoverSuccessError, String(r.error))
  assert.deepEqual(f.state.writers, ['b:5432'])
  assert.ok(f.state.down.has('a:5432'), 'the lost writer is marked down')
  assert.deepEqual(
    f.state.dropped.map((d) => d.host),
    ['a:5432'],
    'the old writer is dropped once',
  )
})

test('failover plugin: work that never reached the server runs on the new writer unnoticed', async () => {
  const { runtime, cluster, f, plugin, starts } = setUp([
    [A, 'down'],
    [B, 'writer'],
    [C, 'reader'],
  ])
  const ran: string[] = []
  const ctx = context()
  const r = run(plugin, ctx, async () => {
    // As the client does: each attempt goes to the writer of the moment.
    ctx.host = f.state.writer
    ran.push(hostKey(ctx.host!))
    if (cluster.state(ctx.host!) === 'down') throw connectionError('ECONNREFUSED', 'refused', 'a', 5432)
    return 'rows'
  })
  assert.ok(await runtime.advanceUntil(() => r.settled, 500, 5))
  assert.equal(r.error, undefined, String(r.error))
  assert.equal(r.value, 'rows')
  assert.deepEqual(ran, ['a:5432', 'b:5432'])
  assert.equal(starts.length, 1)
})

test('failover plugin: a failure older than the last failover starts none', async () => {
  const { runtime, cluster, f, plugin, starts } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'reader'],
  ])
  // A statement sent to A before the failover; its connection breaks only after it.
  let breakLate: (error: unknown) => void = () => {}
  const lateCtx = context()
  const late = run(plugin, lateCtx, () => {
    lateCtx.sent = true
    return new Promise((_, reject) => {
      breakLate = reject
    })
  })
  cluster.set(A, 'down')
  cluster.set(B, 'writer')
  const firstCtx = context()
  const first = run(plugin, firstCtx, async () => {
    firstCtx.sent = true
    throw lost()
  })
  assert.ok(await runtime.advanceUntil(() => first.settled, 500, 5))
  assert.ok(first.error instanceof FailoverSuccessError)
  assert.equal(starts.length, 1)
  breakLate(lost())
  assert.ok(await runtime.advanceUntil(() => late.settled, 100, 5))
  assert.equal(starts.length, 1, 'the stale failure joined the failover that already happened')
  assert.ok(late.error instanceof FailoverSuccessError, String(late.error))
  assert.match((late.error as Error).message, /b:5432/)
  assert.deepEqual(f.state.writers, ['b:5432'])
})

test('failover plugin: a transaction cut by the failover ends with TransactionResolutionUnknownError', async () => {
  const { runtime, cluster, plugin } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'reader'],
  ])
  cluster.set(A, 'down')
  cluster.set(C, 'writer')
  const ctx = context({ kind: 'transaction', inTransaction: true })
  const r = run(plugin, ctx, async () => {
    ctx.sent = true
    throw lost()
  })
  assert.ok(await runtime.advanceUntil(() => r.settled, 500, 5))
  assert.ok(r.error instanceof TransactionResolutionUnknownError, String(r.error))
})

test('failover plugin: the client ending during a search fails the waiting statement at once', async () => {
  const { runtime, cluster, f, plugin, ends } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'silent'],
  ])
  cluster.set(A, 'down')
  const ctx = context()
  const r = run(plugin, ctx, async () => {
    ctx.sent = true
    throw lost()
  })
  await runtime.advance(300)
  assert.equal(r.settled, false, 'still searching: no host is writable')
  f.end()
  assert.ok(await runtime.advanceUntil(() => r.settled, 5, 1))
  assert.ok(r.error instanceof FailoverFailedError, String(r.error))
  assert.equal(ends.at(-1)?.ok, false)
  await runtime.advance(500)
  assert.equal(cluster.openConnections(), 0, 'no probe connection outlives the search')
  assert.deepEqual(runtime.pending(), [], 'no timer outlives the search')
})

test('failover plugin: no writer within failoverTimeoutMs fails with FailoverFailedError; the next failure tries again', async () => {
  const { runtime, cluster, plugin, starts } = setUp(
    [
      [A, 'down'],
      [B, 'reader'],
      [C, 'reader'],
    ],
    { failoverTimeoutMs: 1_000 },
  )
  const ctx = context()
  const r = run(plugin, ctx, async () => {
    ctx.sent = true
    throw lost()
  })
  assert.ok(await runtime.advanceUntil(() => r.settled, 1_100, 10))
  assert.ok(r.error instanceof FailoverFailedError, String(r.error))
  cluster.set(C, 'writer')
  const again = context()
  const r2 = run(plugin, again, async () => {
    if (hostKey(again.host!) === 'a:5432') {
      again.sent = true
      throw lost()
    }
    return 'ok'
  })
  assert.ok(await runtime.advanceUntil(() => r2.settled, 500, 5))
  assert.equal(starts.length, 2)
  assert.ok(r2.error instanceof FailoverSuccessError, String(r2.error))
})

test('failover plugin: lost connections on a writer that still answers start no failover: one question, the real errors', async () => {
  const { runtime, cluster, f, plugin, starts } = setUp([
    [A, 'writer'],
    [B, 'reader'],
    [C, 'reader'],
  ])
  // The writer answers the question late: every loss in between shares it.
  cluster.delays(A, { queryMs: 30 })
  const errors = [lost(), lost(), lost()]
  const runs = errors.map((error) => {
    const ctx = context()
    return run(plugin, ctx, async () => {
      ctx.sent = true
      throw error
    })
  })
  assert.ok(await runtime.advanceUntil(() => runs.every((r) => r.settled), 500, 5))
  for (const [i, r] of runs.entries())
    assert.equal(r.error, errors[i], 'each sent statement gets its own error')
  assert.equal(starts.length, 0, 'no failover')
  assert.equal(cluster.connects.filter((c) => c.host === 'a:5432').length, 1, 'the writer is asked once')
  assert.deepEqual(f.state.writers, [])
  assert.equal(f.state.down.size, 0, 'a healthy writer is never marked down')
  assert.deepEqual(f.state.dropped, [], 'nor are its connections dropped')
})

test('failover plugin: before the first success there is nothing to fail over: the real error', async () => {
  const { runtime, f, plugin, starts } = setUp([
    [A, 'down'],
    [B, 'writer'],
    [C, 'reader'],
  ])
  f.state.connected = false
  const refused = connectionError('ECONNREFUSED', 'refused', 'a', 5432)
  const r = run(plugin, context(), async () => {
    throw refused
  })
  assert.ok(await runtime.advanceUntil(() => r.settled, 50, 5))
  assert.equal(r.error, refused)
  assert.equal(starts.length, 0)
})

/** A read as the client routes it: the first reader not marked down, else the writer. */
function readOn(f: ReturnType<typeof setUp>['f'], ctx: ExecuteContext): HostAddress {
  const reader = f.state.topology?.readers.find((h) => !f.state.down.has(hostKey(h)))
  ctx.host = reader ? { host: reader.host, port: reader.port } : f.state.writer
  return ctx.host!
}

test('failover plugin: the first loss on a reader marks it down and verifies the other readers; reads issued after it wait, then run on the writer without an error', async () => {
  const { runtime, cluster, f, plugin, starts } = setUp([
    [A, 'writer'],
    [B, 'down'],
    [C, 'silent'],
  ])
  // B died with a read in flight on it; C is cut off, its pooled connections still look open.
  const inFlight = context({ targetRole: 'reader', host: B })
  const first = run(plugin, inFlight, async () => {
    inFlight.sent = true
    throw connectionError('CONNECTION_CLOSED', 'the connection was lost', 'b', 5432)
  })
  await runtime.advance(1)
  assert.ok(first.error instanceof FailoverSuccessError, String(first.error))
  assert.ok(f.state.down.has('b:5432'), 'the first loss marks the reader down at once')
  assert.deepEqual(
    f.state.dropped.map((d) => d.host),
    ['b:5432'],
    "and drops the host's other connections",
  )
  // Issued after the first error: without the check it would go to C and hang there.
  const ran: string[] = []
  const later = [1, 2, 3].map(() => {
    const ctx = context({ targetRole: 'reader' })
    return run(plugin, ctx, async () => {
      const host = readOn(f, ctx)
      ran.push(hostKey(host))
      if (cluster.state(host) === 'silent') return new Promise(() => {})
      return 'rows'
    })
  })
  await runtime.advance(100)
  assert.equal(
    later.some((r) => r.settled),
    false,
    'the reads wait while C is asked',
  )
  assert.ok(await runtime.advanceUntil(() => later.every((r) => r.settled), 500, 5))
  for (const r of later) assert.equal(r.value, 'rows', String(r.error))
  assert.deepEqual(ran, ['a:5432', 'a:5432', 'a:5432'], 'C gave no answer within probeTimeoutMs: down')
  assert.ok(f.state.down.has('c:5432'))
  // More losses on B (its other connections, in flight then) change nothing.
  const second = context({ targetRole: 'reader', host: B, sent: true })
  const again = run(plugin, second, async () => {
    throw connectionError('CONNECTION_CLOSED', 'the connection was lost', 'b', 5432)
  })
  await runtime.advance(1)
  assert.ok(again.error instanceof FailoverSuccessError)
  assert.equal(f.state.dropped.filter((d) => d.host === 'b:5432').length, 1)
  assert.equal(starts.length, 0, 'reader trouble starts no writer failover')
})

test('failover plugin: a read that never reached a server is never a FailoverSuccessError, even with every host refusing', async () => {
  const { runtime, cluster, f, plugin, starts } = setUp([
    [A, 'down'],
    [B, 'down'],
    [C, 'down'],
  ])
  const tried: string[] = []
  const ctx = context({ targetRole: 'reader', host: undefined })
  const r = run(plugin, ctx, async () => {
    const host = readOn(f, ctx)
    tried.push(hostKey(host))
    if (cluster.state(host) === 'down') throw connectionError('ECONNREFUSED', 'refused', host.host, host.port)
    return 'rows'
  })
  assert.ok(await runtime.advanceUntil(() => r.settled, 1_000, 5))
  assert.ok(!(r.error instanceof FailoverSuccessError), `a statement never sent: ${r.error}`)
  assert.equal((r.error as { code?: string }).code, 'ECONNREFUSED', String(r.error))
  // C was found refusing by the check that B's loss started, before the retry was routed.
  assert.deepEqual(tried.slice(0, 2), ['b:5432', 'a:5432'], 'the first reader, then the writer')
  assert.ok(f.state.down.has('c:5432') && f.state.down.has('b:5432'))
  assert.ok(!f.state.down.has('a:5432'), 'a read on the writer never marks the writer down')
  assert.ok(tried.length <= 5, `tries: ${tried}`)
  assert.equal(starts.length, 0)
})
