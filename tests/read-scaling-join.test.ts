// Readers joining and leaving a running cluster: a reader added to the lab (a base backup of the
// writer) gets reads through sql.ha.reader after the next topology read, on the Aurora and RDS
// Multi-AZ emulations (the topology lists it) and on plain streaming replication (dialect pg: a listed host that was
// not there yet); one removed or killed gets none. No failover, no error for reads issued after.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import postgres from 'postgres'
import type { Lab, LabStatus } from '../lab/mod.ts'
import { segments } from '../lab/shared-memory.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { eventually, labClientOptions } from './helpers/ha.ts'
import { processesIn } from './helpers/lab.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const WHO = "select current_setting('pgha_lab.instance_id') as id, pg_is_in_recovery() as standby"
const labs: Lab[] = []
const clients: PostgresHaSql[] = []

after(async () => {
  await Promise.all(clients.map((c) => c.end({ timeout: 1 })))
  await Promise.all(labs.map((l) => l.down()))
})

/**
 * A lab another file parked may do (tests/helpers/shared-lab.ts): one of these is never handed on,
 * its added reader making it another shape, so `down()` takes it down.
 */
async function lab3(
  dialect: 'aurora-pg' | 'rds-multi-az-pg' | 'pg',
): Promise<{ lab: Lab; status: LabStatus }> {
  const lab = await sharedLab({ nodes: 3, dialect, promoteAfterMs: 200, endpointLagMs: 0 })
  labs.push(lab)
  return { lab, status: await lab.status() }
}

/** The instance each of `n` sequential reads ran on; every one must succeed on a standby. */
async function readers(sql: PostgresHaSql, n: number): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const [row] = await sql.ha.reader.unsafe(WHO)
    assert.equal(row.standby, true, `read ran on ${row.id}, not a standby`)
    ids.push(row.id)
  }
  return ids
}

/** Waits until `n` reads in a row succeed and satisfy `ok` (reads that fail meanwhile are retried). */
async function untilReads(sql: PostgresHaSql, n: number, ok: (ids: string[]) => boolean, what: string) {
  let last: unknown
  await eventually(
    async () => {
      last = await readers(sql, n).catch((e: unknown) => e)
      return Array.isArray(last) && ok(last)
    },
    20_000,
    `${what} (last: ${Array.isArray(last) ? last.join(',') : String(last)})`,
  )
}

/** Whether `id` accepts a direct connection (the lab's own view, not the client's). */
async function answers(lab: Lab, id: string): Promise<boolean> {
  const probe = postgres(lab.url(id), { max: 1, connect_timeout: 2, onnotice: () => {} })
  try {
    await probe`select 1`
    return true
  } catch {
    return false
  } finally {
    await probe.end({ timeout: 0 })
  }
}

const count = (ids: string[], id: string) => ids.filter((x) => x === id).length

/** Adds the pids of the lab's running postmasters to `into`. */
async function notePostmasters(lab: Lab, into: Set<number>): Promise<void> {
  for (const line of await processesIn(lab.dir)) {
    const [pid, ...cmd] = line.split(' ')
    if (/\/postgres -D /.test(` ${cmd.join(' ')}`)) into.add(Number(pid))
  }
}

for (const dialect of ['aurora-pg', 'rds-multi-az-pg'] as const)
  test(`read-scaling-join: ${dialect} — an added reader gets reads after the next topology read; removed, then added and killed, it gets none`, async () => {
    const { lab, status } = await lab3(dialect)
    const original = status.nodes.filter((n) => n.role === 'reader').map((n) => n.id)
    const sql = postgresHa(
      lab.url('cluster'),
      labClientOptions({
        topologyRefreshMs: 200,
        readerHostSelectorStrategy: 'roundRobin',
        clusterInstanceHostPattern: status.instanceHostPattern,
      }),
    )
    clients.push(sql)
    let failovers = 0
    sql.ha.on('failoverStart', () => failovers++)
    assert.deepEqual([...new Set(await readers(sql, 20))].sort(), [...original].sort())

    const postmasters = new Set<number>()
    const added = await lab.addReader()
    await notePostmasters(lab, postmasters)
    assert.equal(added.id, '127.0.0.14')
    assert.equal(added.role, 'reader')
    assert.equal((await lab.status()).nodes.find((n) => n.id === added.id)?.state, 'running')
    // roundRobin over the three: once the client knows the new reader, every 3 reads reach it once.
    await untilReads(sql, 12, (ids) => count(ids, added.id) === 4, `reads reach the added reader ${added.id}`)
    const spread = await readers(sql, 30)
    for (const id of [...original, added.id]) assert.equal(count(spread, id), 10, `${id}: ${spread}`)

    await lab.remove(added.id)
    assert.equal(
      (await lab.status()).nodes.some((n) => n.id === added.id),
      false,
    )
    await untilReads(sql, 12, (ids) => count(ids, added.id) === 0, 'no read reaches the removed reader')
    // Once the topology has dropped it, reads go on over the two others, without an error.
    const afterRemoval = await readers(sql, 30)
    assert.deepEqual([...new Set(afterRemoval)].sort(), [...original].sort())

    const again = await lab.addReader()
    await notePostmasters(lab, postmasters)
    await untilReads(
      sql,
      12,
      (ids) => count(ids, again.id) === 4,
      `reads reach the re-added reader ${again.id}`,
    )
    await lab.kill(again.id)
    await untilReads(sql, 12, (ids) => count(ids, again.id) === 0, 'no read reaches the killed reader')
    assert.deepEqual([...new Set(await readers(sql, 30))].sort(), [...original].sort())
    assert.equal(failovers, 0)
    assert.equal((await sql`select pg_is_in_recovery() as r`)[0]!.r, false, 'the writer is untouched')
    // Added instances go at down like the others: no process, no System V segment left (a killed
    // server's segment outlives it unless the lab releases it).
    assert.ok(postmasters.size >= 5, `postmasters seen: ${[...postmasters].join(', ')}`)
    await sql.end({ timeout: 1 })
    await lab.down()
    assert.deepEqual(await processesIn(lab.dir), [])
    const leaked = segments().filter((seg) => postmasters.has(seg.creatorPid))
    assert.deepEqual(leaked, [], "System V segments of this lab's postmasters")
  })

test('read-scaling-join: pg — a listed host that joins as a standby gets reads after the next topology read; killed, it gets none', async () => {
  const { lab, status } = await lab3('pg')
  const original = status.nodes.filter((n) => n.role === 'reader').map((n) => n.id)
  const base = new URL(lab.url('cluster'))
  // A self-managed cluster lists its hosts; the fourth is not there yet (nothing listens).
  const hosts = ['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14'].map((h) => `${h}:${status.port}`)
  const url = `postgres://${base.username}:${base.password}@${hosts.join(',')}${base.pathname}`
  const sql = postgresHa(
    url,
    labClientOptions({ dialect: 'pg', topologyRefreshMs: 200, readerHostSelectorStrategy: 'roundRobin' }),
  )
  clients.push(sql)
  let failovers = 0
  sql.ha.on('failoverStart', () => failovers++)
  assert.deepEqual([...new Set(await readers(sql, 20))].sort(), [...original].sort())
  assert.equal(await answers(lab, original[0]!), true)

  const added = await lab.addReader()
  assert.equal(added.id, '127.0.0.14')
  assert.equal(await answers(lab, added.id), true)
  await untilReads(sql, 12, (ids) => count(ids, added.id) === 4, `reads reach the joined standby ${added.id}`)
  const spread = await readers(sql, 30)
  for (const id of [...original, added.id]) assert.equal(count(spread, id), 10, `${id}: ${spread}`)

  await lab.kill(added.id)
  await untilReads(sql, 12, (ids) => count(ids, added.id) === 0, 'no read reaches the killed standby')
  assert.deepEqual([...new Set(await readers(sql, 30))].sort(), [...original].sort())
  assert.equal(failovers, 0)
})
