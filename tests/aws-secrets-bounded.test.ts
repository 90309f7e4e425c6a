// The `secretsManager` plugin when Secrets Manager misbehaves: a request that never answers and
// throttling. Every connect, credentials included, settles within connectTimeoutMs with
// CredentialsUnavailableError; nothing is wrong with the database, so no host is marked down and
// no failover starts. Through the real SDK client, against the local stand-in and a scratch server.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type postgres from 'postgres'
import { type ScratchPostgres, scratchAdmin, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { type SecretsManagerFake, startSecretsManagerFake } from '../lab/aws/secrets-manager-fake.ts'
import { CredentialsUnavailableError, type PostgresHaSql, postgresHa } from '../mod.ts'

// Test-only password of a throwaway role.
const PASSWORD = 'bounded-test-only-pw'
const CONNECT_TIMEOUT_MS = 2_000
let pg: ScratchPostgres
let fake: SecretsManagerFake
let admin: ReturnType<typeof postgres>

before(async () => {
  // Loaded once here: the first import of the SDK is start-up time, not connect time.
  await import('@aws-sdk/client-secrets-manager')
  // Each kept as soon as it is up, and both waited for: one that fails to start must not leave
  // the other running unseen by the after hook (the fake's open server kept node from exiting).
  const started = await Promise.allSettled([
    startScratchPostgres().then((s) => (pg = s)),
    startSecretsManagerFake().then((f) => (fake = f)),
  ])
  for (const s of started) if (s.status === 'rejected') throw s.reason
  admin = scratchAdmin(pg)
  await admin.unsafe(`create role bounded_user login password '${PASSWORD}'`)
  fake.setSecret('app/bounded', { username: 'bounded_user', password: PASSWORD })
})

after(async () => {
  fake?.setFault(undefined)
  await admin?.end({ timeout: 1 })
  await Promise.all([pg?.stop(), fake?.close()])
})

function client(extra: Record<string, unknown> = {}) {
  const events: string[] = []
  const sql = postgresHa(`postgres://bounded_user@127.0.0.1:${pg.port}/postgres`, {
    plugins: 'connectionTracker,failover,hostMonitoring,secretsManager',
    dialect: 'pg',
    secretsManagerSecretId: 'app/bounded',
    secretsManagerRegion: fake.region,
    secretsManagerEndpoint: fake.endpoint,
    credentials: { ...fake.credentials },
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    max: 2,
    ...extra,
  } as never) as PostgresHaSql
  sql.ha.on('failoverStart', (e) => events.push(`failoverStart ${e.reason}`))
  sql.ha.on('hostDown', (e) => events.push(`hostDown ${e.host.host}`))
  return { sql, events }
}

async function timed<T>(p: Promise<T>): Promise<{ error: any; ms: number }> {
  const t0 = performance.now()
  try {
    await p
    return { error: undefined, ms: performance.now() - t0 }
  } catch (error) {
    return { error, ms: performance.now() - t0 }
  }
}

test('secrets bounded: a Secrets Manager that never answers — the statement fails within connectTimeoutMs with CredentialsUnavailableError, no failover', async () => {
  fake.setFault('hang')
  const { sql, events } = client()
  try {
    const first = await timed(sql`select 1`)
    assert.ok(first.error instanceof CredentialsUnavailableError, `got ${first.error}`)
    assert.match(first.error.message, /no answer within/)
    assert.ok(first.ms < CONNECT_TIMEOUT_MS + 500, `settled after ${first.ms} ms`)
    fake.setFault(undefined)
    assert.equal((await sql`select current_user as u`)[0]!.u, 'bounded_user')
    assert.deepEqual(events, [])
  } finally {
    fake.setFault(undefined)
    await sql.end()
  }
})

test('secrets bounded: a hung Secrets Manager when a pool connection needs the expired secret — bounded the same way', async () => {
  const { sql, events } = client({ secretsManagerExpirationSec: 1 })
  try {
    await sql`select 1`
    await new Promise((r) => setTimeout(r, 1_100))
    fake.setFault('hang')
    // A reserved connection is a new connection: it needs the secret, which has expired.
    const reserving = await timed(sql.reserve().then((r) => r`select 1`))
    assert.ok(reserving.error instanceof CredentialsUnavailableError, `got ${reserving.error}`)
    assert.ok(reserving.ms < CONNECT_TIMEOUT_MS + 500, `settled after ${reserving.ms} ms`)
    // The connection already open keeps working.
    assert.equal((await sql`select 2 as x`)[0]!.x, 2)
    assert.deepEqual(events, [])
  } finally {
    fake.setFault(undefined)
    await sql.end()
  }
})

test('secrets bounded: throttling backs off within the deadline, then CredentialsUnavailableError — never a failover', async () => {
  fake.setFault('throttle')
  const before = fake.rejected.length
  const { sql, events } = client()
  try {
    const first = await timed(sql`select 1`)
    assert.ok(first.error instanceof CredentialsUnavailableError, `got ${first.error}`)
    assert.match(first.error.message, /ThrottlingException/)
    assert.ok(first.ms < CONNECT_TIMEOUT_MS + 500, `settled after ${first.ms} ms`)
    const throttled = fake.rejected.slice(before).filter((r) => r.type === 'ThrottlingException').length
    // Back-off doubling from 100 ms to 2 s: a handful of requests in 2 s, not hundreds.
    assert.ok(throttled >= 2 && throttled <= 12, `${throttled} throttled requests in ${first.ms} ms`)
    fake.setFault(undefined)
    assert.equal((await sql`select current_user as u`)[0]!.u, 'bounded_user')
    assert.deepEqual(events, [])
  } finally {
    fake.setFault(undefined)
    await sql.end()
  }
})
