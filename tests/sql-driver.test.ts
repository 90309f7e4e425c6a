import assert from 'node:assert/strict'
import { connect, createServer } from 'node:net'
import { after, before, test } from 'node:test'
import { inspect } from 'node:util'
import { QueryTimeoutError, TransactionResolutionUnknownError } from '../src/core/errors.ts'
import type { ConnectContext } from '../src/core/plugin.ts'
import { login } from '../src/drivers/postgresjs/login.ts'
import {
  classify,
  createConnectionFactory,
  createHostPools,
  createSql,
  parseConnection,
} from '../src/drivers/postgresjs/mod.ts'
import { createSaltedPasswords } from '../src/drivers/postgresjs/salted-passwords.ts'
import { negotiateTls } from '../src/drivers/postgresjs/tls.ts'
import { eventually } from './helpers/ha.ts'
import { driverClient, passthroughExecutor } from './helpers/passthrough.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'
import { type SilentServer, silentServer as startSilentServer } from './helpers/silent-server.ts'

let pg: PgServer
const ends: Array<() => Promise<unknown>> = []
before(async () => {
  pg = await startPgServer({ settings: { listen_addresses: '127.0.0.1,127.0.0.2' } })
})
after(async () => {
  await Promise.all(ends.map((end) => end().catch(() => {})))
  await pg?.stop()
})

/** A client of `url`, ended after the file's tests even if a test fails before its own `end()`. */
function clientOf(url: string, options: Parameters<typeof driverClient>[1] = {}) {
  const c = driverClient(url, options)
  ends.push(() => c.sql.end({ timeout: 0 }))
  return c
}

function client(options: Parameters<typeof driverClient>[1] = {}) {
  return clientOf(pg.url, options)
}

/**
 * A silent server (see helpers/silent-server.ts), closed after the file's tests even when a test
 * fails before its own `close()`.
 */
async function silentServer(): Promise<SilentServer> {
  const silent = await startSilentServer()
  ends.push(async () => silent.close())
  return silent
}

async function refusedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  await new Promise((r) => server.close(r))
  return port
}

test('sql: parses a multi-host URL once, with postgres.js, into the host list', () => {
  const parsed = parseConnection('postgres://u:p@127.0.0.2:5433,127.0.0.3:5434/db?application_name=x')
  assert.deepEqual(parsed.hosts, [
    { host: '127.0.0.2', port: 5433 },
    { host: '127.0.0.3', port: 5434 },
  ])
  assert.equal(parsed.options.database, 'db')
  assert.equal(parsed.user, 'u')
})

test('sql: a statement runs through the executor and marks ctx.sent', async () => {
  const { sql, executor } = client()
  const [row] = await sql`select ${41}::int + 1 as x`
  assert.equal(row!.x, 42)
  const last = executor.log.at(-1)!
  assert.equal(last.request.kind, 'statement')
  assert.match(last.request.description!, /select \$\?::int \+ 1 as x/)
  assert.equal(last.ctx.sent, true)
  assert.equal(last.ctx.delivered, false)
})

test('sql: a query is lazy until awaited or executed', async () => {
  const { sql, executor } = client()
  const before = executor.log.length
  const q = sql`select 1`
  await new Promise((r) => setTimeout(r, 20))
  assert.equal(executor.log.length, before)
  await q
  assert.equal(executor.log.length, before + 1)
})

test('sql: ctx.delivered is set once cursor or forEach rows reached the caller', async () => {
  const { sql, executor } = client()
  for await (const rows of sql`select generate_series(1, 4) as n`.cursor(2)) assert.equal(rows.length, 2)
  assert.equal(executor.log.at(-1)!.ctx.delivered, true)
  await sql`select 1 as n`.forEach(() => {})
  assert.equal(executor.log.at(-1)!.ctx.delivered, true)
  await sql`select 1 as n`
  assert.equal(executor.log.at(-1)!.ctx.delivered, false)
})

test('sql: a retry builds a fresh postgres.js query (the attempt can run twice)', async () => {
  const { sql, pools, target } = client()
  const twice = {
    async execute<T>(
      _request: never,
      attempt: (h: typeof target.host, ctx: never) => Promise<T>,
    ): Promise<T> {
      const ctx = () => ({ kind: 'statement', sent: false, delivered: false, attempt: 0 }) as never
      const first = await attempt(target.host, ctx())
      const second = await attempt(target.host, ctx())
      assert.notEqual(first, second)
      return second
    },
  }
  const sql2 = createSql({ executor: twice as never, pools, base: parseConnection(pg.url).base, ha: {} })
  const rows = await sql2`select ${'a'}::text as x`.values()
  assert.deepEqual([...rows], [['a']])
  await sql.end()
})

test('sql: a refused connection leaves ctx.sent false and classifies as connect-failed', async () => {
  const port = await refusedPort()
  const { sql, executor } = clientOf(`postgres://u:p@127.0.0.1:${port}/db`)
  const error = await sql`select 1`.catch((e) => e)
  assert.equal(error.code, 'ECONNREFUSED')
  assert.equal(classify(error), 'connect-failed')
  assert.equal(executor.log.at(-1)!.ctx.sent, false)
  await sql.end()
})

test('sql: an authentication failure classifies as auth-failed', async () => {
  const { sql } = clientOf(pg.url, { password: 'wrong' })
  const error = await sql`select 1`.catch((e) => e)
  assert.equal(error.code, '28P01')
  assert.equal(classify(error), 'auth-failed')
  await sql.end()
})

test('sql: a write in a read-only transaction classifies as read-only (25006)', async () => {
  const { sql } = client()
  const error = await sql
    .begin(async (tx) => {
      await tx`set transaction read only`
      await tx`create temporary table ro_test(a int)`
    })
    .catch((e) => e)
  assert.equal(error.code, '25006')
  assert.equal(classify(error), 'read-only')
  const e2 = await sql`select * from no_such_table`.catch((e) => e)
  assert.equal(classify(e2), 'other')
  assert.ok(e2 instanceof sql.PostgresError)
})

test('sql: a terminated backend classifies as connection-lost (57P01)', async () => {
  const { sql } = client({ max: 1 })
  const [{ pid }] = await sql`select pg_backend_pid() as pid`
  const admin = client()
  const pending = sql`select pg_sleep(5)`.catch((e) => e)
  await new Promise((r) => setTimeout(r, 100))
  await admin.sql`select pg_terminate_backend(${pid})`
  const error = await pending
  assert.equal(classify(error), 'connection-lost', `${error.code} ${error.message}`)
  const [{ x }] = await sql`select 1 as x`
  assert.equal(x, 1)
})

test('sql: abortHost rejects an in-flight statement at once and closes every socket', async () => {
  const { sql, pools, target, executor } = client({ max: 3 })
  await Promise.all([sql`select 1`, sql`select 1`, sql`select 1`])
  assert.equal(pools.connectionCount(target.host), 3)
  const pending = sql`select pg_sleep(10)`.catch((e) => e)
  await new Promise((r) => setTimeout(r, 100))
  const t0 = performance.now()
  pools.abort(target.host, 'test')
  const error = await pending
  assert.ok(performance.now() - t0 < 500)
  assert.equal(classify(error), 'connection-lost')
  assert.equal(executor.log.at(-1)!.ctx.sent, true)
  await new Promise((r) => setTimeout(r, 20))
  assert.equal(pools.connectionCount(target.host), 0)
  const [{ x }] = await sql`select 2 as x`
  assert.equal(x, 2)
})

test('sql: abortHost does not hang on a black-holed peer, and end() returns', async () => {
  const silent = await silentServer()
  const { sql, pools, target } = clientOf(`postgres://u:p@127.0.0.1:${silent.port}/db`, {
    connect_timeout: 30,
  })
  const pending = sql`select 1`.catch((e) => e)
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(pools.connectionCount(target.host), 1)
  pools.abort(target.host, 'black hole')
  assert.equal(classify(await pending), 'connection-lost')
  await sql.end({ timeout: 0 })
  assert.equal(pools.connectionCount(target.host), 0)
  silent.close()
})

test('sql: an unreachable host rejects within connect_timeout', async () => {
  const silent = await silentServer()
  const { sql } = clientOf(`postgres://u:p@127.0.0.1:${silent.port}/db`, { connect_timeout: 0.3 })
  const t0 = performance.now()
  const error = await sql`select 1`.catch((e) => e)
  assert.equal(error.code, 'CONNECT_TIMEOUT')
  assert.equal(classify(error), 'connect-failed')
  assert.ok(performance.now() - t0 < 2000)
  await sql.end({ timeout: 0 })
  silent.close()
})

test('sql: a peer that accepts and closes at once fails the query instead of reconnecting forever', async () => {
  const server = createServer((s) => s.end())
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  ends.push(async () => server.close())
  const { port } = server.address() as { port: number }
  const { sql } = clientOf(`postgres://u:p@127.0.0.1:${port}/db`, { connect_timeout: 5 })
  const error = await sql`select 1`.catch((e) => e)
  assert.equal(classify(error), 'connection-lost')
  await sql.end({ timeout: 0 })
  server.close()
})

test('sql: every per-host instance shares sql.options.parsers and serializers (as Drizzle needs)', async () => {
  const { sql } = client()
  sql.options.parsers[23] = (x: string) => `int:${x}`
  const [{ x }] = await sql`select 7::int4 as x`
  assert.equal(x, 'int:7')
  delete sql.options.parsers[23]
})

test('sql: the connect hook runs on authentication and may replace the password', async () => {
  const parsed = parseConnection(pg.url.replace(pg.password, 'not-the-password'))
  const seen: ConnectContext[] = []
  const pools = createHostPools({
    parsed,
    connectHook: async (start, open, timeoutMs) => {
      seen.push({ ...start, deadline: Number.POSITIVE_INFINITY })
      await open({ user: start.user, password: pg.password }, timeoutMs)
    },
  })
  const executor = passthroughExecutor(() => parsed.hosts[0]!)
  const sql = createSql({ executor, pools, base: parsed.base, ha: {} })
  const [{ x }] = await sql`select 1 as x`
  assert.equal(x, 1)
  assert.equal(seen[0]!.purpose, 'user')
  assert.equal(seen[0]!.user, 'pgha')
  assert.equal(seen[0]!.password, 'not-the-password')
  assert.deepEqual(seen[0]!.host, parsed.hosts[0])
  await sql.end()
})

test('sql: nothing secret in inspect, console output, JSON or keys of sql and sql.options', async () => {
  const { sql } = client()
  await sql`select 1`
  const outputs = [
    inspect(sql),
    inspect(sql, { depth: 10, showHidden: false }),
    inspect(sql.options, { depth: 10 }),
    JSON.stringify(sql.options),
    String(Object.keys(sql.options)),
  ]
  const logged: unknown[] = []
  const original = console.log
  console.log = (...args: unknown[]) => logged.push(inspect(args[0], { depth: 5 }))
  try {
    console.log(sql)
    console.log(sql.options)
  } finally {
    console.log = original
  }
  for (const out of [...outputs, ...logged.map(String)])
    assert.ok(!String(out).includes(pg.password), out as string)
  assert.equal((sql.options as { pass?: unknown }).pass, null)
  assert.equal(typeof sql.options.parsers, 'object')
})

test("sql: end() twice is harmless and later work rejects with postgres.js's CONNECTION_ENDED", async () => {
  const { sql, pools, target } = clientOf(pg.url)
  await sql`select 1`
  await Promise.all([sql.end(), sql.end()])
  await sql.end()
  assert.equal(pools.connectionCount(target.host), 0)
  await assert.rejects(sql`select 1`, { code: 'CONNECTION_ENDED' })
  await assert.rejects(
    sql.begin(async () => {}),
    { code: 'CONNECTION_ENDED' },
  )
  await assert.rejects(sql.reserve(), { code: 'CONNECTION_ENDED' })
  await assert.rejects(
    sql.listen('x', () => {}),
    { code: 'CONNECTION_ENDED' },
  )
})

test('sql: sql.begin is one execution of kind transaction; statements inside run on its connection', async () => {
  const { sql, executor } = client()
  const before = executor.log.length
  const rows = await sql.begin(async (tx) => {
    await tx`create temporary table tx_kind(a int)`
    await tx`insert into tx_kind values (1), (2)`
    return tx`select count(*)::int as n from tx_kind`
  })
  assert.equal(rows[0]!.n, 2)
  assert.equal(executor.log.length, before + 1)
  const entry = executor.log.at(-1)!
  assert.equal(entry.request.kind, 'transaction')
  assert.equal(entry.request.inTransaction, true)
  assert.equal(entry.ctx.sent, true)
})

test('sql: a reserved connection pins its host and reports its open transaction', async () => {
  const { sql, executor, target } = client()
  const reserved = await sql.reserve()
  await reserved`select 1`
  assert.equal(executor.log.at(-1)!.request.kind, 'reserved')
  assert.equal(executor.log.at(-1)!.request.inTransaction, false)
  await reserved`begin`
  await reserved`select 1`
  assert.equal(executor.log.at(-1)!.request.inTransaction, true)
  assert.deepEqual(executor.log.at(-1)!.request.pinnedHost, target.host)
  await reserved.unsafe('savepoint a; release savepoint a')
  await reserved`commit`
  await reserved`select 1`
  assert.equal(executor.log.at(-1)!.request.inTransaction, false)
  await reserved.unsafe('start transaction')
  await reserved`select 1`
  assert.equal(executor.log.at(-1)!.request.inTransaction, true)
  await reserved`select no_such_column`.catch(() => {})
  await reserved`select 1`.catch(() => {})
  assert.equal(executor.log.at(-1)!.request.inTransaction, true)
  await reserved`rollback`
  await reserved`select 1`
  assert.equal(executor.log.at(-1)!.request.inTransaction, false)
  reserved.release()
})

test('sql: a reserved connection keeps one session across statements', async () => {
  const { sql } = client()
  const reserved = await sql.reserve()
  await reserved`set application_name = 'pinned'`
  for (let i = 0; i < 3; i++) {
    const [{ name }] = await reserved`select current_setting('application_name') as name`
    assert.equal(name, 'pinned')
  }
  await reserved`reset application_name`
  reserved.release()
})

test('sql: a reserved connection lost in a transaction rejects until rollback, then re-reserves', async () => {
  const { sql, pools, target } = client()
  const reserved = await sql.reserve()
  await reserved`begin`
  const [{ pid }] = await reserved`select pg_backend_pid() as pid`
  pools.abort(target.host, 'failover')
  // Until the caller ends the transaction, nothing may run in autocommit in its place.
  for (let i = 0; i < 3; i++) {
    const error = await reserved`select 1`.catch((e) => e)
    assert.ok(error instanceof TransactionResolutionUnknownError, `got ${error}`)
    assert.equal(classify(error.cause), 'connection-lost')
  }
  await reserved`rollback`
  const [{ pid: pid2 }] = await reserved`select pg_backend_pid() as pid`
  assert.notEqual(pid2, pid)
  const [{ t }] = await reserved`select now() = statement_timestamp() as t`
  assert.equal(typeof t, 'boolean')
  reserved.release()
})

test('sql: a reserved connection follows the host the core gives after failover', async () => {
  const { sql, pools, target, executor } = client()
  const first = target.host
  const reserved = await sql.reserve()
  await reserved`select 1`
  assert.equal(pools.connectionCount(first), 1)
  // The same server on another address stands in for the new writer.
  const moved = { host: '127.0.0.2', port: first.port }
  target.host = moved
  executor.ignorePinned = true
  pools.abort(first, 'failover')
  await reserved`select 1`
  assert.deepEqual(executor.log.at(-1)!.ctx.host, moved)
  assert.equal(pools.connectionCount(moved), 1)
  executor.ignorePinned = false
  await reserved`select 1`
  assert.deepEqual(executor.log.at(-1)!.request.pinnedHost, moved)
  reserved.release()
  target.host = first
})

test('sql: listen moves to the host the core gives when the writer changes', async () => {
  const { sql, pools, target, events } = client()
  const got: string[] = []
  let listens = 0
  await sql.listen(
    'moves',
    (x) => got.push(x),
    () => listens++,
  )
  await sql.notify('moves', 'a')
  await new Promise((r) => setTimeout(r, 100))
  const first = target.host
  target.host = { host: '127.0.0.2', port: first.port }
  events.emit('writerChanged', { from: first, to: target.host })
  await eventually(() => listens === 2, 5_000, 'the listen on the new writer')
  await sql.notify('moves', 'b')
  await new Promise((r) => setTimeout(r, 100))
  assert.deepEqual(got, ['a', 'b'])
  assert.equal(pools.connectionCount(target.host) >= 1, true)
  target.host = first
})

test('sql: listen re-listens by itself after its connection is aborted', async () => {
  const { sql, pools, target } = client()
  const got: string[] = []
  await sql.listen('again', (x) => got.push(x))
  pools.abort(target.host, 'failover')
  await new Promise((r) => setTimeout(r, 300))
  await sql.notify('again', 'after')
  await new Promise((r) => setTimeout(r, 100))
  assert.deepEqual(got, ['after'])
})

test('sql: factory connects, runs statements, closes and aborts', async () => {
  const parsed = parseConnection(pg.url, { transform: { column: { from: (c: string) => c.toUpperCase() } } })
  parsed.options.parsers[1184] = (x: string) => `changed ${x}`
  const factory = createConnectionFactory({ parsed })
  const host = parsed.hosts[0]!
  const conn = await factory.connect({ host, purpose: 'probe', timeoutMs: 2000 })
  const [row] = await conn.query<{ r: boolean; n: number }>(
    'select pg_is_in_recovery() as r, $1::int as n',
    [5],
  )
  assert.deepEqual({ ...row }, { r: false, n: 5 }, 'no user transform on internal connections')
  assert.equal(conn.closed, false)
  await conn.close()
  assert.equal(conn.closed, true)
  const conn2 = await factory.connect({ host, purpose: 'monitor', timeoutMs: 2000 })
  const pending = conn2.query('select pg_sleep(10)')
  conn2.abort()
  assert.equal(factory.classify(await pending.catch((e) => e)), 'connection-lost')
  assert.equal(conn2.closed, true)
})

test('sql: factory statement timeout aborts the connection and rejects', async () => {
  const parsed = parseConnection(pg.url)
  const factory = createConnectionFactory({ parsed })
  const conn = await factory.connect({ host: parsed.hosts[0]!, purpose: 'topology', timeoutMs: 2000 })
  const t0 = performance.now()
  const error = await conn.query('select pg_sleep(10)', [], { timeoutMs: 200 }).catch((e) => e)
  assert.ok(error instanceof QueryTimeoutError)
  assert.equal(factory.classify(error), 'connection-lost')
  assert.ok(performance.now() - t0 < 1500)
  assert.equal(conn.closed, true)
})

test('sql: factory connect failures are connect-failed or auth-failed, within the timeout', async () => {
  const silent = await silentServer()
  const parsed = parseConnection(pg.url)
  const factory = createConnectionFactory({ parsed })
  const t0 = performance.now()
  const e1 = await factory
    .connect({ host: { host: '127.0.0.1', port: silent.port }, purpose: 'probe', timeoutMs: 300 })
    .catch((e) => e)
  assert.equal(e1.code, 'CONNECT_TIMEOUT', String(e1))
  assert.equal(e1.message, `write CONNECT_TIMEOUT 127.0.0.1:${silent.port}`)
  assert.equal(factory.classify(e1), 'connect-failed')
  assert.ok(performance.now() - t0 < 1500)
  const e2 = await factory
    .connect({ host: { host: '127.0.0.1', port: await refusedPort() }, purpose: 'probe', timeoutMs: 1000 })
    .catch((e) => e)
  assert.equal(factory.classify(e2), 'connect-failed')
  const bad = createConnectionFactory({ parsed: parseConnection(pg.url, { password: 'nope' }) })
  const e3 = await bad.connect({ host: parsed.hosts[0]!, purpose: 'probe', timeoutMs: 2000 }).catch((e) => e)
  assert.equal(bad.classify(e3), 'auth-failed')
  silent.close()
})

test("sql: a stalled login or TLS negotiation times out with postgres.js's CONNECT_TIMEOUT message", async () => {
  // The factory's connect timeout and the login's (or TLS negotiation's) own run side by side;
  // whichever fires first, the caller must see the one error postgres.js gives for a connect
  // that did not finish in time.
  const silent = await silentServer()
  const expected = { code: 'CONNECT_TIMEOUT', message: `write CONNECT_TIMEOUT 127.0.0.1:${silent.port}` }
  const open = async () => {
    const socket = connect(silent.port, '127.0.0.1')
    await new Promise((r) => socket.once('connect', r))
    return Object.assign(socket, { host: '127.0.0.1', port: silent.port })
  }
  const params = { user: 'u', password: 'p', database: 'db', parameters: {} }
  const loginError = await login(await open(), params, 50, createSaltedPasswords()).catch((e) => e)
  assert.deepEqual({ code: loginError.code, message: loginError.message }, expected)
  const tls = { ssl: 'require', direct: false }
  const tlsError = await negotiateTls(await open(), tls, '127.0.0.1', silent.port, 50).catch((e) => e)
  assert.deepEqual({ code: tlsError.code, message: tlsError.message }, expected)
})
