/**
 * postgres.js's errors reach the caller of `postgresHa()` unchanged where postgres-ha adds nothing:
 * a first connect that fails, a statement after `end()`, `end({ timeout })` with work still queued,
 * and the stack of a failed statement pointing at the line that made it.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { test } from 'node:test'
import { postgresHa } from '../mod.ts'
import { silentServer } from './helpers/silent-server.ts'
import { singlePg } from './helpers/single-pg.ts'

const db = singlePg()

function client(url: string, options: Record<string, unknown> = {}) {
  const sql = postgresHa(url, { onnotice: () => {}, ...options })
  db.track(sql)
  return sql
}

/** A port on 127.0.0.1 that refuses connections. */
async function refusedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  await new Promise<void>((r) => server.close(() => r()))
  return port
}

test('errors: a refused first connect rejects with ECONNREFUSED, for a statement and for sql.begin', async () => {
  const port = await refusedPort()
  const sql = client(`postgres://app:pw@127.0.0.1:${port}/app`)
  const e1 = await sql`select 1`.catch((e: unknown) => e)
  assert.equal((e1 as { code?: string }).code, 'ECONNREFUSED', String(e1))
  const e2 = await sql.begin((tx) => tx`select 1`).catch((e: unknown) => e)
  assert.equal((e2 as { code?: string }).code, 'ECONNREFUSED', String(e2))
})

test("errors: a silent host times out with postgres.js's CONNECT_TIMEOUT, host:port in the message", async () => {
  const { port } = db.closeAfter(await silentServer())
  const sql = client(`postgres://app:pw@127.0.0.1:${port}/app`, { connect_timeout: 0.2 })
  const t0 = performance.now()
  const error = (await sql`select 1`.catch((e: unknown) => e)) as { code?: string; message?: string }
  const took = performance.now() - t0
  assert.equal(error.code, 'CONNECT_TIMEOUT', String(error))
  assert.equal(error.message, `write CONNECT_TIMEOUT 127.0.0.1:${port}`)
  // One connect timeout, not one per step of ours (postgres.js's own test allows 0.2-0.3 s).
  assert.ok(took < 1500, `took ${took} ms`)
})

test("errors: a host silent in the TLS handshake or the login times out with postgres.js's CONNECT_TIMEOUT", async () => {
  // postgres.js's connect_timeout covers the whole connect, whatever step stalls, with one error.
  for (const [answer, ssl] of [
    ['S', 'require'],
    ['N', 'prefer'],
  ] as const) {
    const { port } = db.closeAfter(await silentServer(answer))
    const sql = client(`postgres://app:pw@127.0.0.1:${port}/app`, { connect_timeout: 0.2, ssl })
    const t0 = performance.now()
    const error = (await sql`select 1`.catch((e: unknown) => e)) as { code?: string; message?: string }
    const took = performance.now() - t0
    assert.equal(error.code, 'CONNECT_TIMEOUT', `ssl ${ssl}: ${error}`)
    assert.equal(error.message, `write CONNECT_TIMEOUT 127.0.0.1:${port}`, `ssl ${ssl}`)
    assert.ok(took < 1500, `ssl ${ssl}: took ${took} ms`)
  }
})

test("errors: an unknown host name rejects with the resolver's own error", async () => {
  const sql = client('postgres://app:pw@no-such-host.invalid:5432/app', { connect_timeout: 2 })
  const error = (await sql`select 1`.catch((e: unknown) => e)) as { code?: string }
  assert.ok(['ENOTFOUND', 'EAI_AGAIN'].includes(error.code ?? ''), `got ${error.code}: ${error}`)
})

test('errors: after end(), statements, transactions, reserve and listen reject with CONNECTION_ENDED', async () => {
  const sql = client(db.pg.url)
  await sql`select 1`
  await sql.end()
  const ended = { code: 'CONNECTION_ENDED', message: `write CONNECTION_ENDED 127.0.0.1:${db.pg.port}` }
  await assert.rejects(sql`select 1`, ended)
  await assert.rejects(
    sql.begin((tx) => tx`select 1`),
    ended,
  )
  await assert.rejects(sql.reserve(), ended)
  await assert.rejects(
    sql.listen('x', () => {}),
    ended,
  )
})

test('errors: end() lets a statement made before it finish; end({ timeout: 0 }) destroys it', async () => {
  const graceful = client(db.pg.url)
  const kept = graceful`select 1 as x`.execute()
  await graceful.end()
  assert.equal((await kept)[0]!.x, 1)

  // Made before the client ever connected: it is still postgres-ha's (first topology read) when
  // end({ timeout: 0 }) comes, and is destroyed as postgres.js destroys its queue.
  const hasty = client(db.pg.url)
  const destroyed = hasty`select pg_sleep(0.2)`.catch((e: { code?: string }) => e.code)
  const ending = hasty.end({ timeout: 0 })
  assert.equal(await destroyed, 'CONNECTION_DESTROYED')
  await ending
})

test('errors: end({ timeout: 0 }) destroys a statement made before it with CONNECTION_DESTROYED, also when the client is ready at once', async () => {
  // Another client on the same host shares the topology monitor: each new client below is ready
  // at once, so its statement is on a pool connection that is still logging in when end() comes.
  const keep = client(db.pg.url)
  await keep`select 1`
  const codes: unknown[] = []
  for (let i = 0; i < 20; i++) {
    const sql = client(db.pg.url, { max: 1, idle_timeout: 1, connect_timeout: 1 })
    const error = sql`select pg_sleep(0.2)`.catch((e: { code?: string }) => e.code)
    const ending = sql.end({ timeout: 0 })
    // Made after end(): postgres.js rejects it with CONNECTION_ENDED.
    const late = sql`select 1`.catch((e: { code?: string }) => e.code)
    codes.push(await error)
    assert.equal(await late, 'CONNECTION_ENDED')
    await ending
  }
  assert.deepEqual(
    codes,
    codes.map(() => 'CONNECTION_DESTROYED'),
  )
})

test("errors: end({ timeout: 0 }) during a transaction with nothing running gives postgres.js's CONNECTION_CLOSED", async () => {
  const sql = client(db.pg.url)
  const error = await sql
    .begin(async () => {
      setTimeout(() => void sql.end({ timeout: 0 }), 10)
      await new Promise((r) => setTimeout(r, 200))
      return sql`select 1`
    })
    .catch((e: { code?: string }) => e.code)
  assert.equal(error, 'CONNECTION_CLOSED')
})

test('errors: the stack of a failed statement ends at the line that made it', async () => {
  const sql = client(db.pg.url)
  await sql`select 1`
  const line = Number(new Error().stack!.split('\n')[1]!.match(/:(\d+):\d+\)?$/)![1]) + 1
  const error = (await sql`selec 1`.catch((e: unknown) => e)) as Error
  const last = error.stack!.split('\n').pop()!
  assert.equal(Number(last.match(/:(\d+):\d+\)?$/)?.[1]), line, error.stack)
})

test("errors: with debug, the stack of a failed statement keeps the caller's own frames", async () => {
  const sql = client(db.pg.url, { debug: true })
  // No calls in tail position: JavaScriptCore (Bun) drops the frames of proper tail calls.
  function outerCaller() {
    const query = innerCaller()
    return query
  }
  function innerCaller() {
    const query = sql`selec 1`
    return query
  }
  const error = (await outerCaller().catch((e: unknown) => e)) as Error
  assert.match(error.stack!, /sql-port-errors\.test\.ts/)
  // JavaScriptCore (Bun) leaves these frames out of any stack it captures; V8 keeps them.
  if (!('Bun' in globalThis)) assert.match(error.stack!, /innerCaller[\s\S]*outerCaller/)
})
