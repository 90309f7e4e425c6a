/**
 * `sql.subscribe` (logical replication) and `sql.largeObject` as in postgres.js: rows reach the
 * subscriber with the client's column transform, `onsubscribe` runs on every (re)subscription,
 * and when the subscription's host is lost it is made again on the host the core then gives.
 * A large object lives in a transaction of `sql.begin` until it is closed.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import { postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { eventually } from './helpers/ha.ts'
import { driverClient } from './helpers/passthrough.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'

const LOGICAL = { wal_level: 'logical', max_replication_slots: '10', max_wal_senders: '10' }
let a: PgServer
let b: PgServer
const crashes = watchCrashes()
const ends: Array<() => Promise<unknown>> = []
before(async () => {
  ;[a, b] = await Promise.all([startPgServer({ settings: LOGICAL }), startPgServer({ settings: LOGICAL })])
  for (const pg of [a, b]) {
    const admin = postgres(pg.adminUrl, { max: 1, onnotice: () => {} })
    await admin`create table sub_test (id serial primary key, some_name text)`
    await admin`create publication alltables for all tables`
    await admin.end()
  }
})
after(async () => {
  await Promise.all(ends.map((end) => end().catch(() => {})))
  await Promise.all([a?.stop(), b?.stop()])
  crashes.stop()
})

test('subscribe: inserts, updates and deletes reach the subscriber, with the column transform', async () => {
  const sql = postgresHa(a.adminUrl, { transform: postgres.camel, onnotice: () => {} })
  ends.push(() => sql.end({ timeout: 0 }))
  const seen: string[] = []
  let subscribed = 0
  const { unsubscribe } = await sql.subscribe(
    '*:sub_test',
    (row, info) => {
      const r = row as Record<string, unknown>
      seen.push(`${info.command}:${r.someName ?? r.id}`)
    },
    () => subscribed++,
  )
  assert.equal(subscribed, 1)
  const [{ id }] = await sql`insert into sub_test (some_name) values ('Ada') returning id`
  await sql`update sub_test set some_name = 'Grace' where id = ${id}`
  await sql`delete from sub_test where id = ${id}`
  await eventually(() => seen.length === 3, 5_000, 'three changes')
  assert.deepEqual(seen, ['insert:Ada', 'update:Grace', `delete:${id}`])
  unsubscribe()
  await sql`insert into sub_test (some_name) values ('after')`
  await new Promise((r) => setTimeout(r, 200))
  assert.equal(seen.length, 3)
})

test('subscribe: postgres.js reconnects a closed subscription and calls onsubscribe again', async () => {
  const sql = postgresHa(a.adminUrl, { onnotice: () => {} })
  ends.push(() => sql.end({ timeout: 0 }))
  const seen: string[] = []
  let subscribed = 0
  const { sql: replication } = (await sql.subscribe(
    'insert:sub_test',
    (row) => void seen.push((row as { some_name: string }).some_name),
    () => subscribed++,
  )) as unknown as { sql: { close(): Promise<void> } }
  await replication.close()
  await eventually(() => subscribed === 2, 5_000, 'a second onsubscribe')
  await sql`insert into sub_test (some_name) values ('again')`
  await eventually(() => seen.includes('again'), 5_000, 'the row after the reconnect')
})

test('subscribe: when its host is lost, the subscription is made again on the host the core gives', async () => {
  const { sql, target } = driverClient(a.adminUrl, { onnotice: () => {} } as never)
  ends.push(() => sql.end({ timeout: 0 }))
  const seen: string[] = []
  let subscribed = 0
  const { state } = (await sql.subscribe(
    'insert:sub_test',
    (row) => void seen.push((row as { some_name: string }).some_name),
    () => subscribed++,
  )) as unknown as { state: { pid?: number } }
  const firstPid = state.pid
  await sql`insert into sub_test (some_name) values ('on a')`
  await eventually(() => seen.includes('on a'), 5_000, 'the row on the first host')

  // The writer moved to b (what failover does), then a died: postgres.js's own reconnect to a
  // fails, and the subscription moves to b.
  target.host = { host: '127.0.0.1', port: b.port }
  const other = postgres(b.adminUrl, { max: 1, onnotice: () => {} })
  ends.push(() => other.end())
  await a.stop()
  await eventually(() => subscribed === 2, 10_000, 'a subscription on the second host')
  assert.notEqual(state.pid, firstPid)
  await other`insert into sub_test (some_name) values ('on b')`
  await eventually(() => seen.includes('on b'), 5_000, 'the row on the second host')
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})

test('subscribe: a writer change moves every subscriber', async () => {
  const { sql, target, events } = driverClient(b.adminUrl, { onnotice: () => {} } as never)
  ends.push(() => sql.end({ timeout: 0 }))
  const seen: string[] = []
  let subscribed = 0
  await sql.subscribe(
    'insert:sub_test',
    (row) => void seen.push((row as { some_name: string }).some_name),
    () => subscribed++,
  )
  const c = await startPgServer({ settings: LOGICAL })
  ends.push(() => c.stop())
  const admin = postgres(c.adminUrl, { max: 1, onnotice: () => {} })
  ends.push(() => admin.end())
  await admin`create table sub_test (id serial primary key, some_name text)`
  await admin`create publication alltables for all tables`
  const from = target.host
  target.host = { host: '127.0.0.1', port: c.port }
  events.emit('writerChanged', { from, to: target.host })
  await eventually(() => subscribed === 2, 10_000, 'a subscription on the new writer')
  await admin`insert into sub_test (some_name) values ('on c')`
  await eventually(() => seen.includes('on c'), 5_000, 'the row on the new writer')
})

test('largeObject: written through a stream, read back through one, in one transaction', async () => {
  const sql = postgresHa(b.url, { onnotice: () => {} })
  ends.push(() => sql.end({ timeout: 0 }))
  const data = Buffer.alloc(100_000, 'postgres-ha ')
  const lo = await sql.largeObject()
  const writable = await lo.writable()
  await new Promise<void>((resolve, reject) =>
    writable.end(data, (e?: Error | null) => (e ? reject(e) : resolve())),
  )
  const [{ size }] = (await lo.size()) as unknown as [{ size: string }]
  assert.equal(Number(size), data.length)
  await lo.seek(0)
  const readable = await lo.readable({ highWaterMark: 8192 })
  const hash = createHash('md5')
  for await (const chunk of readable) hash.update(chunk as Buffer)
  assert.equal(hash.digest('hex'), createHash('md5').update(data).digest('hex'))
  const [{ position }] = (await lo.tell()) as unknown as [{ position: string }]
  assert.equal(Number(position), data.length)
  await lo.close()
})
