// Fault injection of the failover lab: blackhole, latency, freeze, stop/start, switchover, every
// instance killed at once.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { readLabFile } from '../lab/client.ts'
import { atOrAfter, type Lab, nowMs, startLab } from '../lab/mod.ts'
import { portHolders, releasePort } from '../lab/port-reservations.ts'
import { canListen, freePort } from '../lab/ports.ts'
import { restoreNode } from './helpers/ha.ts'
import { AURORA, client, processesIn, roles, settlesWithin, sleep } from './helpers/lab.ts'

let lab: Lab | undefined
/** The lab's server ports, once read. */
let ports: number[] = []
// The last test takes the lab down and checks; this also does when a test before it failed.
after(() => lab?.down())

function need(): Lab {
  if (!lab) throw new Error('the lab did not start')
  return lab
}

test('lab: faults lab starts', async () => {
  lab = await startLab({ nodes: 3, promoteAfterMs: 300, probeTimeoutMs: 500, endpointLagMs: 0 })
  assert.equal((await lab.status()).writer, '127.0.0.11')
})

test('lab: blackhole holds existing and new connections without closing them; heal delivers', async () => {
  const l = need()
  const held = client(l.url('127.0.0.13'))
  const fresh = client(l.url('127.0.0.13'), { connect_timeout: 30 })
  try {
    await held`SELECT 1`
    await l.blackhole('127.0.0.13')
    const q1 = held`SELECT 1 AS one`
    const q2 = fresh`SELECT 2 AS two`
    assert.equal(await settlesWithin(q1, 800), 'hung', 'a query on an existing connection got through')
    assert.equal(await settlesWithin(q2, 200), 'hung', 'a new connection got an answer or was closed')
    assert.equal((await l.status()).nodes.find((n) => n.id === '127.0.0.13')?.fault, 'blackhole')
    await l.heal('127.0.0.13')
    assert.equal(await settlesWithin(q1, 3000), 'answered')
    assert.equal(await settlesWithin(q2, 3000), 'answered')
  } finally {
    // Healed whatever failed above: the next tests share this lab.
    await l.heal('127.0.0.13')
    await held.end({ timeout: 0 })
    await fresh.end({ timeout: 0 })
  }
})

test('lab: latency delays every round trip through the instance endpoint', async () => {
  const l = need()
  const sql = client(l.url('127.0.0.12'))
  try {
    await sql`SELECT 1`
    await l.latency('127.0.0.12', 150)
    let t = performance.now()
    await sql`SELECT 1`
    const slow = performance.now() - t
    assert.ok(slow >= 290, `a round trip took ${Math.round(slow)} ms with 150 ms latency`)
    await l.heal('127.0.0.12')
    // Each round trip took 300 ms or more with the latency: the fastest of three shows it gone,
    // whatever one stall of a busy machine adds to one of them.
    let fastest = Number.POSITIVE_INFINITY
    for (let i = 0; i < 3; i++) {
      t = performance.now()
      await sql`SELECT 1`
      fastest = Math.min(fastest, performance.now() - t)
    }
    assert.ok(fastest < 150, `the fastest round trip after heal took ${Math.round(fastest)} ms`)
  } finally {
    await l.heal('127.0.0.12')
    await sql.end({ timeout: 0 })
  }
})

test('lab: stop a reader; writes go on; start brings it back streaming', async () => {
  const l = need()
  await l.stop('127.0.0.13')
  try {
    let status = await l.status()
    assert.deepEqual(
      status.nodes.filter((n) => n.id === '127.0.0.13').map((n) => [n.role, n.state]),
      [['down', 'stopped']],
    )
    const sql = client(l.url(status.writer!))
    try {
      await sql`CREATE TABLE IF NOT EXISTS lab_faults (id int)`
      await sql`INSERT INTO lab_faults VALUES (1)`
    } finally {
      await sql.end({ timeout: 0 })
    }
    await l.start('127.0.0.13')
    status = await l.status()
    assert.equal(status.nodes.find((n) => n.id === '127.0.0.13')?.role, 'reader')
    await l.waitForWriter({ timeoutMs: 10_000 })
  } finally {
    // Started (if the test did not get there) and a writer waited for: the next tests share this lab.
    await restoreNode(l, '127.0.0.13')
  }
})

test('lab: freeze hangs the writer; it is replaced after the probe timeout and fenced on heal', async () => {
  const l = need()
  const old = (await l.status()).writer!
  const sql = client(l.url(old))
  try {
    await sql`SELECT 1`
    const t = nowMs()
    await l.freeze('writer')
    const q = sql`SELECT 1`
    assert.equal(await settlesWithin(q, 800), 'hung', 'a frozen writer answered')
    const lost = await l.waitForEvent('writer-lost', { afterMs: t, node: old, timeoutMs: 5000 })
    assert.equal(lost.detail?.reason, 'unresponsive')
    const ready = await l.waitForEvent('writer-ready', { afterMs: t, timeoutMs: 5000 })
    assert.notEqual(ready.node, old)
    await l.heal(old)
    await l.waitForEvent('fenced', { afterMs: t, node: old, timeoutMs: 5000 })
    assert.equal(await settlesWithin(q, 3000), 'failed', 'the fenced writer still answered')
    await l.start(old)
    const status = await l.status()
    assert.equal(status.nodes.find((n) => n.id === old)?.role, 'reader')
  } finally {
    await sql.end({ timeout: 0 })
    // Healed (fenced, if replaced) and started, if a failure above came first.
    await restoreNode(l, old)
  }
})

test('lab: switchover promotes the chosen reader and the old writer rejoins', async () => {
  const l = need()
  const before = await l.status()
  const target = before.nodes.find((n) => n.role === 'reader')!.id
  const t = nowMs()
  await l.switchover(target)
  const after = await l.status()
  assert.equal(after.writer, target)
  assert.equal(after.nodes.find((n) => n.id === before.writer)?.role, 'reader')
  await l.waitForEvent('reader-rejoined', { afterMs: t, node: before.writer!, timeoutMs: 1000 })
  const sql = client(l.url('cluster'))
  try {
    assert.equal((await sql.unsafe(AURORA.hostId))[0]!.host, target)
    await sql`INSERT INTO lab_faults VALUES (2)`
  } finally {
    await sql.end({ timeout: 0 })
  }
})

test('lab: a killed reader keeps its port: no port search on the machine hands it out, and it restarts on it', async () => {
  const l = need()
  const lab = readLabFile(l.dir)!
  const id = (await l.status()).nodes.find((n) => n.role === 'reader')!.id
  const port = lab.processes.find((p) => p.id === id)!.pgPort
  ports = lab.processes.map((p) => p.pgPort)
  await l.kill(id)
  try {
    // Nothing listens on it now: a bind test alone would hand it to the next lab that asks.
    assert.equal(await canListen('127.0.0.1', port), true)
    assert.deepEqual(portHolders(port), [lab.pid], 'the lab daemon holds the port of its killed server')
    // From this process, as another lab's or a scratch server's port search would be.
    for (let i = 0; i < 5; i++) {
      const got = await freePort('127.0.0.1', { low: port, high: port + 1 })
      releasePort(got)
      assert.notEqual(got, port, "the killed server's port was handed out")
    }
    await l.start(id)
    const node = (await l.status()).nodes.find((n) => n.id === id)!
    assert.deepEqual([node.role, node.state], ['reader', 'running'])
    assert.equal(readLabFile(l.dir)!.processes.find((p) => p.id === id)!.pgPort, port)
    assert.equal(await canListen('127.0.0.1', port), false, 'the restarted server listens on its port')
  } finally {
    await restoreNode(l, id)
  }
})

test('lab: every instance killed at once, then started in any order: one writer, every other instance streams', async () => {
  const l = need()
  // Bounded: the bug this guards against (a reader coming back as a second primary) was a race.
  const orders = ['writer first', 'readers first', 'writer first'] as const
  for (const [i, order] of orders.entries()) {
    const status = await l.status()
    const writer = status.writer!
    const ids = status.nodes.map((n) => n.id)
    const t = nowMs()
    await Promise.all(ids.map((id) => l.kill(id)))
    await l.waitForEvent('failover-failed', { afterMs: t, timeoutMs: 5000 })
    // Down for longer than the probe timeout: the last answer of any writer is older than that.
    await sleep(Math.max(0, t + 600 - nowMs()))
    const readers = ids.filter((id) => id !== writer)
    const starts = order === 'writer first' ? [writer, ...readers] : [...readers.reverse(), writer]
    for (const id of starts) await l.start(id)
    const w = await l.waitForWriter({ timeoutMs: 20_000 })
    const seen = await roles(l)
    const what = `round ${i} (${order}, started ${starts.join(', ')}): ${JSON.stringify(seen)}`
    assert.deepEqual(seen.writable, [w.id], what)
    assert.deepEqual(seen.notStreaming, [], what)
    assert.deepEqual(seen.unreachable, [], what)
    const after = await l.status()
    assert.deepEqual(
      after.nodes.map((n) => [n.id, n.role, n.state]),
      ids.map((id) => [id, id === w.id ? 'writer' : 'reader', 'running']),
      what,
    )
    // A writer is lost only by the kill, and never "unresponsive" while it was being brought back.
    const lost = (await l.events()).filter((e) => e.type === 'writer-lost' && atOrAfter(e.atMs, t))
    assert.deepEqual(
      lost.map((e) => e.detail?.reason),
      ['killed'],
      what,
    )
  }
})

test('lab: faults lab goes down without leftovers', async () => {
  const l = need()
  await l.down()
  let left: string[] = []
  for (let i = 0; i < 50; i++) {
    left = await processesIn(l.dir)
    if (left.length === 0) break
    await sleep(100)
  }
  assert.deepEqual(left, [])
  // Its ports are free for the next lab once its daemon is gone.
  let held: number[] = []
  for (let i = 0; i < 50; i++) {
    held = ports.filter((p) => portHolders(p).length > 0)
    if (held.length === 0) break
    await sleep(100)
  }
  assert.deepEqual(held, [])
  const port = ports[0]
  if (port !== undefined) {
    const got = await freePort('127.0.0.1', { low: port, high: port + 1 })
    releasePort(got)
    assert.equal(got, port)
  }
})
