/**
 * `sql.reserve()` as in postgres.js: it resolves with an open connection (a connect failure
 * rejects it with postgres.js's own error) and counts against `max` — with `max: 1`, a pool
 * statement, a transaction or another reservation waits until the reservation is released.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { test } from 'node:test'
import { postgresHa } from '../mod.ts'
import { singlePg } from './helpers/single-pg.ts'

const db = singlePg()

// biome-ignore lint/suspicious/noExplicitAny: the options postgres.js takes
function client(options: Record<string, any> = {}, url = db.pg.url) {
  const sql = postgresHa(url, { onnotice: () => {}, ...options })
  db.track(sql)
  return sql
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('reserve: with max 1, a pool statement waits until the reservation is released', async () => {
  const sql = client({ max: 1 })
  await sql`select 1`
  const events: string[] = []
  const reserved = await sql.reserve()
  const pool = sql`select 2 as x`.then(() => events.push('pool'))
  const own = reserved`select 1 as x`.then(() => events.push('reserved'))
  await own
  // The pool statement had every chance to run; it must still be waiting.
  await tick(300)
  events.push('release')
  reserved.release()
  await pool
  assert.deepEqual(events, ['reserved', 'release', 'pool'])
})

test('reserve: with max 1, a transaction and a second reservation wait for the first', async () => {
  const sql = client({ max: 1 })
  const events: string[] = []
  const first = await sql.reserve()
  const tx = sql.begin((t) => t`select 1`).then(() => events.push('transaction'))
  const second = sql.reserve().then((r) => {
    events.push('second')
    return r
  })
  await tick(300)
  events.push('release')
  first.release()
  const r2 = await second
  r2.release()
  await tx
  // First come, first served: the transaction asked first.
  assert.deepEqual(events, ['release', 'transaction', 'second'])
})

test('reserve: with max 2, one reservation leaves one connection to the pool', async () => {
  const sql = client({ max: 2 })
  const reserved = await sql.reserve()
  const [{ x }] = await sql`select 3 as x`
  assert.equal(x, 3)
  const events: string[] = []
  // One connection for the pool: the second of two slow statements waits for the first.
  const a = sql`select pg_sleep(0.3)`.then(() => events.push('a'))
  const b = sql`select 1`.then(() => events.push('b'))
  await Promise.all([a, b])
  assert.deepEqual(events, ['a', 'b'])
  reserved.release()
})

test('reserve: a released connection is reused by the next reservation', async () => {
  const sql = client({ max: 1 })
  const first = await sql.reserve()
  const [{ pid }] = await first`select pg_backend_pid() as pid`
  first.release()
  const second = await sql.reserve()
  const [{ pid: again, xs }] = await second`select pg_backend_pid() as pid, array[1, 2, 3] as xs`
  assert.equal(again, pid)
  assert.deepEqual(xs, [1, 2, 3])
  second.release()
})

test('reserve: it connects before it resolves; a refused connect rejects it as postgres.js would', async () => {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((r) => server.close(() => r()))
  const refused = client({ max: 1 }, `postgres://a:b@127.0.0.1:${port}/db`)
  const error = (await refused.reserve().catch((e: unknown) => e)) as { code?: string }
  assert.equal(error.code, 'ECONNREFUSED', String(error))
  // The failed reservation gave its place back (with max 1, a leak would make this wait forever).
  const after = await refused.reserve().catch((e: unknown) => e)
  assert.equal((after as { code?: string }).code, 'ECONNREFUSED')
})

test('reserve: statements reach the connection in the order they were made, a forEach among them', async () => {
  const sql = client()
  await sql`select 1`
  const reserved = await sql.reserve()
  try {
    await reserved`create temp sequence reserve_order`
    // A forEach hands rows over as they come (it never takes the fast path); the plain statement
    // made after it must not overtake it on the connection.
    const streamed: number[] = []
    const first = reserved`select nextval('reserve_order')::int as v`.forEach((row) => {
      streamed.push((row as { v: number }).v)
    })
    const second = reserved`select nextval('reserve_order')::int as v`.execute()
    const [rows] = await Promise.all([second, first])
    assert.deepEqual(streamed, [1])
    assert.equal(rows[0]?.v, 2)
  } finally {
    reserved.release()
  }
})
