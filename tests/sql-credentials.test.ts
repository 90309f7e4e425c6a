import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import type { ConnectContext } from '../src/core/plugin.ts'
import {
  type ConnectHook,
  classify,
  createHostPools,
  createSql,
  parseConnection,
} from '../src/drivers/postgresjs/mod.ts'
import { driverClient, passthroughExecutor } from './helpers/passthrough.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'

let pg: PgServer
let admin: postgres.Sql
const ends: Array<() => Promise<unknown>> = []
// postgres.js awaits `pass()` without catching: a failing connect hook there was an unhandled rejection.
const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => {
  unhandled.push(reason)
}

before(async () => {
  process.on('unhandledRejection', onUnhandled)
  pg = await startPgServer()
  admin = postgres(pg.adminUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create role other login password '${pg.password}'`)
  await admin.unsafe(`create role third login password 'third-secret'`)
  await admin.unsafe(`create role rotating login password 'p0'`)
})
after(async () => {
  await Promise.all(ends.map((end) => end().catch(() => {})))
  await admin?.end({ timeout: 0 })
  await pg?.stop()
  process.off('unhandledRejection', onUnhandled)
})

/** Mutable credentials a test hook may set before the login. */
type Credentials = { -readonly [K in keyof ConnectContext]: ConnectContext[K] }

/** A connect hook that sets the credentials with `choose`, then logs in once with them. */
function choosing(choose: (ctx: Credentials) => Promise<void>): ConnectHook {
  return async (start, open, timeoutMs) => {
    const ctx: Credentials = { ...start, deadline: Number.POSITIVE_INFINITY }
    await choose(ctx)
    await open(ctx, timeoutMs)
  }
}

function hooked(
  chooseCredentials: ((ctx: Credentials) => Promise<void>) | undefined,
  options: Parameters<typeof parseConnection>[1] = {},
  extra: { connectTimeoutMs?: number; url?: string } = {},
) {
  const parsed = parseConnection(extra.url ?? pg.url, { onnotice: () => {}, ...options })
  const connectHook = chooseCredentials && choosing(chooseCredentials)
  const pools = createHostPools({ parsed, connectHook, connectTimeoutMs: extra.connectTimeoutMs })
  const target = { host: parsed.hosts[0]! }
  const sql = createSql({
    executor: passthroughExecutor(() => target.host),
    pools,
    base: parsed.base,
    ha: {},
  })
  ends.push(() => sql.end({ timeout: 0 }))
  return { sql, pools, target }
}

/** Lets anything unhandled surface (an unhandled rejection is reported after the microtasks). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 10))
}

async function rejection(promise: PromiseLike<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now()
  try {
    await promise
  } catch (error) {
    return { error, ms: performance.now() - started }
  }
  assert.fail('expected a rejection')
}

test('sql: a connect hook that throws rejects the statement at once with that very error, unhandled by no one', async () => {
  const outage = Object.assign(new Error('Secrets Manager is unavailable'), { credentialsUnavailable: true })
  let failing = 3
  let calls = 0
  const { sql } = hooked(
    async (ctx) => {
      calls++
      if (failing > 0) {
        failing--
        throw outage
      }
      ctx.password = pg.password
    },
    // One connection: a failed connect must give its slot back, or the next statement waits forever.
    { max: 1, connect_timeout: 30 },
  )
  for (let i = 0; i < 3; i++) {
    const { error, ms } = await rejection(sql`select 1`)
    assert.equal(error, outage)
    assert.equal(classify(error), 'auth-failed')
    assert.ok(ms < 1000, `took ${ms} ms`)
  }
  const [row] = await sql`select current_user as u`
  assert.equal(row!.u, 'pgha')
  assert.equal(calls, 4)
  await settle()
  assert.deepEqual(unhandled, [])
})

test('sql: a password function that throws rejects the statement with its error, unhandled by no one', async () => {
  const broken = new Error('token signer failed')
  let fail = true
  const { sql } = hooked(undefined, {
    password: () => {
      if (fail) throw broken
      return pg.password
    },
  })
  const { error, ms } = await rejection(sql`select 1`)
  assert.equal(error, broken)
  assert.ok(ms < 1000, `took ${ms} ms`)
  fail = false
  await sql`select 1`
  await settle()
  assert.deepEqual(unhandled, [])
})

test('sql: a connect hook that never settles fails the statement with CONNECT_TIMEOUT after the connect timeout', async () => {
  let hang = true
  const { sql } = hooked(
    async (ctx) => {
      if (hang) await new Promise(() => {})
      ctx.password = pg.password
    },
    { max: 1 },
    { connectTimeoutMs: 300 },
  )
  const { error, ms } = await rejection(sql`select 1`)
  assert.equal((error as { code?: string }).code, 'CONNECT_TIMEOUT')
  assert.equal(classify(error), 'connect-failed')
  assert.ok(ms >= 250 && ms < 2000, `took ${ms} ms`)
  hang = false
  await sql`select 1`
  await settle()
  assert.deepEqual(unhandled, [])
})

test('sql: a connect hook that gives a new password on every call is used for every connection', async () => {
  let current = 'p0'
  const seen: Array<Pick<ConnectContext, 'user' | 'purpose'>> = []
  const url = pg.url.replace(`pgha:${pg.password}@`, 'rotating:not-the-password@')
  const { sql, pools, target } = hooked(
    async (ctx) => {
      seen.push({ user: ctx.user, purpose: ctx.purpose })
      ctx.password = current
    },
    {},
    { url },
  )
  for (let i = 1; i <= 3; i++) {
    await admin.unsafe(`alter role rotating password 'p${i}'`)
    current = `p${i}`
    // New connections from here on.
    pools.abort(target.host, 'rotate')
    const [row] = await sql`select current_user as u`
    assert.equal(row!.u, 'rotating')
  }
  assert.ok(seen.length >= 3)
  assert.deepEqual(seen[0], { user: 'rotating', purpose: 'user' })
})

test('sql: setUser logs new pool connections in as that role; statements under way finish as the old one', async () => {
  const { sql, pools } = driverClient(pg.url, {
    onnotice: () => {},
    connection: { application_name: 'set-user' },
  })
  ends.push(() => sql.end({ timeout: 0 }))
  const [before] = await sql`select current_user as u`
  assert.equal(before!.u, 'pgha')
  const slow = sql`select pg_sleep(0.3), current_user as u`.execute()
  await new Promise((r) => setTimeout(r, 50))
  pools.setUser('other')
  const [now] = await sql`select current_user as u`
  assert.equal(now!.u, 'other')
  assert.equal((await slow)[0]!.u, 'pgha')
  const reserved = await sql.reserve()
  assert.equal((await reserved`select current_user as u`)[0]!.u, 'other')
  reserved.release()
  await sql.begin(async (tx) => {
    assert.equal((await tx`select current_user as u`)[0]!.u, 'other')
  })
  // The old instance ends by itself: soon only the new one's connections are left (waited for,
  // bounded: the server sees a closed connection go some time after the client closed it).
  const users = async () =>
    (await admin`select usename from pg_stat_activity where application_name = 'set-user'`).map(
      (u) => u.usename as string,
    )
  let seen = await users()
  for (let i = 0; i < 250 && seen.some((u) => u !== 'other'); i++) {
    await new Promise((r) => setTimeout(r, 20))
    seen = await users()
  }
  assert.deepEqual(
    seen,
    seen.map(() => 'other'),
  )
})

test('sql: a connect hook that switches the user logs that very connection in as the new user', async () => {
  const { sql } = hooked(
    async (ctx) => {
      ctx.user = 'third'
      ctx.password = 'third-secret'
    },
    { max: 1 },
  )
  // The login happens with the hook's credentials (user included), before postgres.js gets the socket.
  const [row] = await sql`select current_user as u`
  assert.equal(row!.u, 'third')
  await settle()
  assert.deepEqual(unhandled, [])
})

test('sql: a refused login goes back to the connect hook, which may retry on a new socket; nothing reaches the statement', async () => {
  const attempts: string[] = []
  const url = pg.url.replace(`pgha:${pg.password}@`, 'third:x@')
  const parsed = parseConnection(url, { onnotice: () => {}, max: 1 })
  const pools = createHostPools({
    parsed,
    connectHook: async (start, open, timeoutMs) => {
      for (const password of ['wrong-first', 'third-secret']) {
        attempts.push(password)
        try {
          return await open({ user: start.user, password }, timeoutMs)
        } catch (error) {
          if (classify(error) !== 'auth-failed') throw error
          assert.equal((error as { code?: string }).code, '28P01')
        }
      }
    },
  })
  const target = parsed.hosts[0]!
  const sql = createSql({ executor: passthroughExecutor(() => target), pools, base: parsed.base, ha: {} })
  ends.push(() => sql.end({ timeout: 0 }))
  const [row] = await sql`select current_user as u`
  assert.equal(row!.u, 'third')
  assert.deepEqual(attempts, ['wrong-first', 'third-secret'])
  await settle()
  assert.deepEqual(unhandled, [])
})

test('sql: a cancel does not log in — it reaches the server even when the credentials cannot be had', async () => {
  let logins = 0
  let down = false
  const { sql } = hooked(async (ctx) => {
    logins++
    if (down) throw new Error('the credentials service is down (test)')
    ctx.password = pg.password
  })
  await sql`select 1`
  const running = sql`select pg_sleep(10) as cancelme`
  const settled = running.then(
    () => undefined,
    (e: unknown) => e,
  )
  const deadline = performance.now() + 5_000
  while (performance.now() < deadline) {
    const [row] =
      await admin`select count(*)::int as n from pg_stat_activity where query like '%cancelme%' and pid <> pg_backend_pid()`
    if (row!.n > 0) break
    await new Promise((r) => setTimeout(r, 20))
  }
  const before = logins
  down = true
  const t0 = performance.now()
  await (running as unknown as { cancel(): Promise<void> }).cancel()
  const error = (await settled) as { code?: string } | undefined
  assert.equal(error?.code, '57014', `the statement was not cancelled: ${error}`)
  assert.ok(performance.now() - t0 < 3_000, `cancelled after ${Math.round(performance.now() - t0)} ms`)
  assert.equal(logins - before, 0, 'the cancel logged in')
})

test('sql: a cancel of a piped statement does not log in either — sent when the statement starts', async () => {
  let logins = 0
  let down = false
  const { sql } = hooked(
    async (ctx) => {
      logins++
      if (down) throw new Error('the credentials service is down (test)')
      ctx.password = pg.password
    },
    { max: 1 },
  )
  await sql`select 1`
  const running = async (marker: string) => {
    const deadline = performance.now() + 5_000
    while (performance.now() < deadline) {
      const [row] = await admin`select count(*)::int as n from pg_stat_activity
        where query like ${`%${marker}%`} and pid <> pg_backend_pid()`
      if (row!.n > 0) return
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  // PostgreSQL ignores a cancel request that reaches the backend while it still reads the piped
  // statement (which then runs to its end): such an attempt is made again, at most three times.
  for (let attempt = 1; ; attempt++) {
    down = false
    // One connection: the second statement waits in the pipeline behind the first, and postgres.js
    // sends its cancel request only once it starts (on a connection of its own, through `socket`).
    const first = sql`select pg_sleep(1) as beforepiped`.execute()
    const piped = sql`select pg_sleep(3) as cancelpiped`
    const settled = piped.then(
      () => undefined,
      (e: unknown) => e,
    )
    // Both were written at once; once the first runs, the second waits behind it on the server.
    await running('beforepiped')
    const before = logins
    down = true
    ;(piped as unknown as { cancel(): unknown }).cancel()
    await first
    const error = (await settled) as { code?: string } | undefined
    assert.equal(logins - before, 0, 'the cancel logged in')
    if (error?.code === '57014' || attempt === 3) {
      assert.equal(error?.code, '57014', `the statement was not cancelled: ${error}`)
      break
    }
  }
})
