import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, before, test as nodeTest } from 'node:test'
import { createServer as createTlsServer } from 'node:tls'
import { fileURLToPath, pathToFileURL } from 'node:url'
import postgres from 'postgres'
import { labTlsCertificate } from '../lab/aws/test-tls.ts'
import {
  createConnectionFactory,
  createHostPools,
  createSql,
  parseConnection,
} from '../src/drivers/postgresjs/mod.ts'
import { driverClient, passthroughExecutor } from './helpers/passthrough.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'
import { runningOn } from './helpers/replicas.ts'
import { runScript } from './helpers/spawn-runtime.ts'

let pg: PgServer
const cert = labTlsCertificate()
const ends: Array<() => Promise<unknown>> = []
const closers: Array<() => void> = []
before(async () => {
  pg = await startPgServer({ tls: cert })
})
after(async () => {
  await Promise.all(ends.map((end) => end().catch(() => {})))
  for (const close of closers) close()
  await pg?.stop()
})

function client(options: Parameters<typeof driverClient>[1] = {}, url = pg.url) {
  const c = driverClient(url, { ssl: 'require', ...options })
  ends.push(() => c.sql.end({ timeout: 0 }))
  return c
}

/** Rejects naming `what` when `p` has not settled within `ms`: a hang fails the test, clearly. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hung: ${what} did not settle within ${ms} ms`)), ms)
  })
  return Promise.race([p, hung]).finally(() => clearTimeout(timer))
}

/**
 * Every test of this file is bounded (by us, not by the runner: Node's `timeout` option is not
 * honoured the same way by Deno and Bun), longer than the child process test's own 60 s limit.
 */
const TEST_LIMIT_MS = 90_000
function test(name: string, fn: () => Promise<void>): void {
  nodeTest(name, () => within(fn(), TEST_LIMIT_MS, `the test "${name}"`))
}

const SSL_OF_BACKEND = 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'

/** A TCP server on 127.0.0.1 that relays to `port`; `declineTls` answers an SSLRequest with 'N' first. */
async function relay(
  port: number,
  {
    declineTls = false,
    silent = false,
    firsts,
  }: { declineTls?: boolean; silent?: boolean; firsts?: Buffer[] } = {},
): Promise<{ port: number }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((downstream) => {
    sockets.add(downstream)
    downstream.on('error', () => {})
    if (silent) return
    downstream.once('data', (first: Buffer) => {
      downstream.pause()
      firsts?.push(Buffer.from(first))
      const sslRequest = first.length >= 8 && first.readInt32BE(4) === 80877103
      if (sslRequest && declineTls) downstream.write('N')
      const rest = sslRequest && declineTls ? first.subarray(8) : first
      const upstream = connect(port, '127.0.0.1')
      sockets.add(upstream)
      upstream.on('error', () => downstream.destroy())
      downstream.on('close', () => upstream.destroy())
      if (rest.length) upstream.write(rest)
      downstream.pipe(upstream)
      upstream.pipe(downstream)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  closers.push(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  return { port: (server.address() as { port: number }).port }
}

function urlOnPort(port: number): string {
  return pg.url.replace(`:${pg.port}/`, `:${port}/`)
}

test("sql: ssl 'require': statements, a transaction, a cursor, a reserved connection and a cancel, all over TLS", async () => {
  const { sql } = client()
  const [row] = await sql`select ${41}::int + 1 as x`
  assert.equal(row!.x, 42)
  const [own] = await sql.unsafe(SSL_OF_BACKEND)
  assert.equal(own!.ssl, true)

  await sql`create table if not exists tls_t (x int)`
  await sql.begin(async (tx) => {
    await tx`insert into tls_t values (1), (2), (3)`
    const [inside] = await tx.unsafe(SSL_OF_BACKEND)
    assert.equal(inside!.ssl, true)
  })
  const [{ n }] = (await sql`select count(*)::int as n from tls_t`) as unknown as [{ n: number }]
  assert.equal(n, 3)

  const seen: number[] = []
  await sql`select generate_series(1, 7) as x`.cursor(3, (rows) => {
    for (const r of rows) seen.push(r.x as number)
  })
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7])

  const reserved = await sql.reserve()
  const [r] = await reserved.unsafe(SSL_OF_BACKEND)
  assert.equal(r!.ssl, true)
  reserved.release()

  // listen() resolves once LISTEN ran on its own (new, TLS) connection; a NOTIFY sent before that
  // is never delivered, so a fixed pause before notify() left this test waiting forever under load.
  let deliver!: (payload: string) => void
  const heard = new Promise<string>((resolve) => {
    deliver = resolve
  })
  await sql.listen('tls_channel', (payload) => deliver(payload))
  await sql.notify('tls_channel', 'over tls')
  assert.equal(await within(heard, 15_000, 'the notification over TLS'), 'over tls')

  // A cancel request goes over TLS too (postgres.js sends its SSLRequest first, then the 16 bytes).
  const slow = sql`select pg_sleep(5)`
  const started = performance.now()
  setTimeout(() => void slow.cancel(), 200)
  const error = (await slow.catch((e: unknown) => e)) as { code?: string }
  assert.equal(error.code, '57014')
  assert.ok(performance.now() - started < 3000)
})

test('sql: ssl as a TLS options object is passed to tls.connect as it is', async () => {
  const loose = client({ ssl: { rejectUnauthorized: false } })
  const [a] = await loose.sql.unsafe(SSL_OF_BACKEND)
  assert.equal(a!.ssl, true)

  // Verified against the test CA, with the name the certificate carries.
  const verified = client({ ssl: { ca: cert.cert, servername: 'localhost' } })
  const [b] = await verified.sql.unsafe(SSL_OF_BACKEND)
  assert.equal(b!.ssl, true)

  // 'verify-full' (no CA given) rejects the self-signed certificate: an error, not a hang or a crash.
  const strict = client({ ssl: 'verify-full', connect_timeout: 5 })
  const started = performance.now()
  const error = (await strict.sql`select 1`.catch((e: unknown) => e)) as Error & { code?: string }
  assert.ok(error instanceof Error)
  assert.match(`${error.code} ${error.message}`, /self[- ]signed|certificate|cert/i)
  assert.ok(performance.now() - started < 4000)
})

test("sql: sslnegotiation 'direct' starts TLS at once, with ALPN postgresql, for statements and cancels", async () => {
  // PostgreSQL 15 has no direct TLS: a TLS terminator in front of its plain port stands in for 17+.
  const seen: Array<{ alpn: string | false | null; sslRequest: boolean }> = []
  const sockets = new Set<Socket>()
  const terminator = createTlsServer({ ...cert, ALPNProtocols: ['postgresql'] }, (client) => {
    sockets.add(client)
    client.on('error', () => {})
    client.once('data', (first: Buffer) => {
      seen.push({
        alpn: client.alpnProtocol,
        sslRequest: first.length >= 8 && first.readInt32BE(4) === 80877103,
      })
      const upstream = connect(pg.port, '127.0.0.1')
      sockets.add(upstream)
      upstream.on('error', () => client.destroy())
      client.on('close', () => upstream.destroy())
      upstream.write(first)
      client.pipe(upstream)
      upstream.pipe(client)
    })
  })
  await new Promise<void>((r) => terminator.listen(0, '127.0.0.1', r))
  closers.push(() => {
    for (const s of sockets) s.destroy()
    terminator.close()
  })
  const port = (terminator.address() as { port: number }).port
  const { sql } = client({ sslnegotiation: 'direct' } as never, urlOnPort(port))
  const [row] = await sql`select 1 as x`
  assert.equal(row!.x, 1)
  const slow = sql`select pg_sleep(5)`
  setTimeout(() => void slow.cancel(), 200)
  assert.equal(((await slow.catch((e: unknown) => e)) as { code?: string }).code, '57014')
  assert.ok(seen.length >= 2, JSON.stringify(seen))
  assert.ok(
    seen.every((s) => s.alpn === 'postgresql' && !s.sslRequest),
    JSON.stringify(seen),
  )
})

test('sql: pg_stat_ssl shows every connection of our clients encrypted', async () => {
  const { sql } = client({ max: 3, connection: { application_name: 'pgha-tls-count' } })
  await Promise.all([sql`select pg_sleep(0.2)`, sql`select pg_sleep(0.2)`, sql`select pg_sleep(0.2)`])
  const rows = await sql`
    select s.ssl from pg_stat_ssl s join pg_stat_activity a using (pid)
    where a.application_name = 'pgha-tls-count'`
  assert.ok(rows.length >= 2, `expected several connections, got ${rows.length}`)
  assert.ok(
    rows.every((r) => r.ssl === true),
    JSON.stringify(rows),
  )
})

test('sql: abortHost mid-query over TLS rejects the statement and the next one reconnects', async () => {
  const { sql, pools, target } = client()
  // Each abort lands once its statement runs on the server (a fixed pause was not enough on a
  // busy machine); the server goes on sleeping an aborted statement, so each has a marker.
  const admin = postgres(pg.adminUrl, { max: 1, onnotice: () => {} })
  ends.push(() => admin.end({ timeout: 0 }))
  await sql`select 1`
  const slow = sql`select pg_sleep(5) as abort_one`.catch((e: unknown) => e)
  await runningOn([admin], '%abort_one%')
  pools.abort(target.host, 'test')
  const error = (await slow) as { code?: string }
  // postgres-ha dropped it, and says so.
  assert.equal(error.code, 'CONNECTION_DROPPED')
  const [row] = await sql.unsafe(SSL_OF_BACKEND)
  assert.equal(row!.ssl, true)

  // A transaction cut by an abort fails with the abort, and nothing is written to the dead socket.
  const tx = sql
    .begin(async (t) => {
      await t`select pg_sleep(5) as abort_two`
    })
    .catch((e: unknown) => e)
  await runningOn([admin], '%abort_two%')
  pools.abort(target.host, 'test')
  assert.equal(((await tx) as { code?: string }).code, 'CONNECTION_DROPPED')
  await sql`select 1`
})

test('sql: end() over TLS closes every socket', async () => {
  const { sql, pools, target } = client({ max: 2 })
  await Promise.all([sql`select pg_sleep(0.1)`, sql`select pg_sleep(0.1)`])
  assert.ok(pools.connectionCount(target.host) >= 1)
  const pending = sql`select pg_sleep(0.2) as done`.execute()
  await sql.end()
  assert.equal((await pending)[0]!.done, '')
  assert.equal(pools.connectionCount(target.host), 0)

  const other = client()
  await other.sql`select 1`
  const inFlight = other.sql`select pg_sleep(5)`.catch((e: unknown) => e)
  await new Promise((r) => setTimeout(r, 100))
  await other.sql.end({ timeout: 0 })
  assert.ok((await inFlight) instanceof Error)
  assert.equal(other.pools.connectionCount(other.target.host), 0)
})

test("sql: a server that declines TLS fails ssl 'require' clearly and serves ssl 'prefer' in plain text", async () => {
  const declining = await relay(pg.port, { declineTls: true })
  const required = client({}, urlOnPort(declining.port))
  const started = performance.now()
  const error = (await required.sql`select 1`.catch((e: unknown) => e)) as Error & { code?: string }
  assert.equal(error.code, 'SSL_NOT_SUPPORTED')
  assert.match(error.message, /does not support SSL, but ssl is 'require'/)
  assert.ok(performance.now() - started < 2000)

  const preferred = client({ ssl: 'prefer' }, urlOnPort(declining.port))
  const [row] = await preferred.sql.unsafe(SSL_OF_BACKEND)
  assert.equal(row!.ssl, false)
  // The same pool again (a reconnect) and a cancel request in plain text.
  const slow = preferred.sql`select pg_sleep(5)`
  setTimeout(() => void slow.cancel(), 200)
  assert.equal(((await slow.catch((e: unknown) => e)) as { code?: string }).code, '57014')
})

test('sql: a host that never answers the SSLRequest fails with CONNECT_TIMEOUT within connect_timeout', async () => {
  const silent = await relay(pg.port, { silent: true })
  const { sql } = client({ connect_timeout: 0.5 }, urlOnPort(silent.port))
  const started = performance.now()
  const error = (await sql`select 1`.catch((e: unknown) => e)) as { code?: string }
  const ms = performance.now() - started
  assert.equal(error.code, 'CONNECT_TIMEOUT')
  assert.ok(ms >= 400 && ms < 3000, `${ms} ms`)
})

test('sql: the connection factory negotiates TLS itself and can abort it', async () => {
  const parsed = parseConnection(pg.url, { ssl: 'require' })
  const factory = createConnectionFactory({ parsed })
  const host = parsed.hosts[0]!
  const conn = await factory.connect({ host, purpose: 'probe', timeoutMs: 5000 })
  const [row] = await conn.query<{ ssl: boolean }>(SSL_OF_BACKEND)
  assert.equal(row!.ssl, true)
  const slow = conn.query('select pg_sleep(5)').catch((e: unknown) => e)
  await new Promise((r) => setTimeout(r, 100))
  conn.abort()
  assert.ok((await slow) instanceof Error)
  const again = await factory.connect({ host, purpose: 'probe', timeoutMs: 5000 })
  await again.query('select 1')
  await again.close()

  const silent = await relay(pg.port, { silent: true })
  const started = performance.now()
  await assert.rejects(
    factory.connect({ host: { host: '127.0.0.1', port: silent.port }, purpose: 'probe', timeoutMs: 300 }),
    (e: Error) => /timed out|CONNECT_TIMEOUT/.test(e.message),
  )
  assert.ok(performance.now() - started < 2000)
})

test('sql: a process that aborts a TLS host and ends its client exits cleanly, with no uncaught error', async () => {
  // Inside the repository (an ignored folder) so that Deno finds the import map.
  const root = fileURLToPath(new URL('../.tmp/', import.meta.url))
  await mkdir(root, { recursive: true })
  const dir = await mkdtemp(join(root, 'tls-child-'))
  try {
    const helper = pathToFileURL(fileURLToPath(new URL('./helpers/passthrough.ts', import.meta.url))).href
    const script = join(dir, 'child.mts')
    await writeFile(
      script,
      `import { driverClient } from ${JSON.stringify(helper)}
const { sql, pools, target } = driverClient(${JSON.stringify(pg.url)}, { ssl: 'require', max: 3 })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const codes = new Set()
// Before the fix this crashed Node (and Deno) within a few rounds: write EBADF, CONNECTION_DESTROYED.
for (let i = 0; i < 5; i++) {
  await sql\`select 1\`
  const a = sql\`select pg_sleep(5)\`.catch((e) => e.code)
  const b = sql.begin((tx) => tx\`select pg_sleep(5)\`).catch((e) => e.code)
  await sleep(100)
  pools.abort(target.host, 'child test')
  codes.add(await a).add(await b)
}
console.log('aborted', [...codes].join())
await sql\`select 1\`
const c = sql\`select pg_sleep(5)\`.catch((e) => e.code)
await sleep(100)
await sql.end({ timeout: 0 })
console.log('ended', await c)
`,
    )
    const result = await runScript(script, 60_000)
    assert.equal(result.timedOut, false, `kept alive; stderr: ${result.stderr}`)
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /aborted CONNECTION_DROPPED\n/)
    assert.match(result.stdout, /ended CONNECTION_DESTROYED/)
    assert.doesNotMatch(result.stderr, /EBADF|uncaught|error/i)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('sql: with a connect hook (IAM, Secrets Manager), the cancel of a piped statement goes over TLS to its server, without a login', async () => {
  // The cancel needs no credentials, but it still goes where the statement runs, secured as the
  // pool's connections are: a server that takes only TLS (hostssl) would not see a plain one.
  const firsts: Buffer[] = []
  const relayed = await relay(pg.port, { firsts })
  const parsed = parseConnection(urlOnPort(relayed.port), { onnotice: () => {}, ssl: 'require', max: 1 })
  let logins = 0
  const pools = createHostPools({
    parsed,
    connectHook: async (start, open, timeoutMs) => {
      logins++
      await open(start, timeoutMs)
    },
  })
  const sql = createSql({
    executor: passthroughExecutor(() => parsed.hosts[0]!),
    pools,
    base: parsed.base,
    ha: {},
  })
  ends.push(() => sql.end({ timeout: 0 }))
  const admin = postgres(pg.adminUrl, { max: 1, onnotice: () => {} })
  ends.push(() => admin.end({ timeout: 0 }))
  assert.equal((await sql.unsafe(SSL_OF_BACKEND))[0]!.ssl, true)
  // PostgreSQL ignores a cancel that reaches the backend while it still reads the piped statement
  // (which then runs to its end): such an attempt is made again, at most three times.
  for (let attempt = 1; ; attempt++) {
    const connections = firsts.length
    const before = logins
    // One connection: the second statement waits behind the first, and postgres.js sends its
    // cancel once it starts, on a connection of its own.
    const first = sql`select pg_sleep(1) as tls_before_piped`.execute()
    const piped = sql`select pg_sleep(3) as tls_cancel_piped`
    const settled = piped.then(
      () => undefined,
      (e: unknown) => e as { code?: string },
    )
    await runningOn([admin], '%tls_before_piped%')
    ;(piped as unknown as { cancel(): unknown }).cancel()
    await first
    const error = await settled
    assert.equal(logins - before, 0, 'the cancel logged in')
    const opened = firsts.slice(connections)
    assert.equal(opened.length, 1, 'one connection for the cancel, through the relay to the same server')
    assert.equal(opened[0]!.readInt32BE(4), 80877103, 'the cancel connection began with an SSLRequest')
    if (error?.code === '57014' || attempt === 3) {
      assert.equal(error?.code, '57014', `the statement was not cancelled: ${JSON.stringify(error)}`)
      break
    }
  }
})
