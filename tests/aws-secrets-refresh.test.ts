// `secretsManagerBackgroundRefresh`: the secret is read again shortly before it expires, so in
// steady state no connect waits on Secrets Manager — proven by making the service hang once the
// refresh is done: connects keep logging in at once from the refreshed value. Without the option
// the first connect after expiry waits on the hung service (the control case). Real AWS SDK client,
// the local Secrets Manager stand-in, a scratch PostgreSQL.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type ScratchPostgres, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { type SecretsManagerFake, startSecretsManagerFake } from '../lab/aws/secrets-manager-fake.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { CredentialsUnavailableError } from '../src/plugins/secrets-manager/mod.ts'
import { createScratchRole } from './helpers/aws.ts'
import { eventually, settle } from './helpers/ha.ts'

const ROLE = 'sm_refresh'
const SECRET = 'lab/sm-refresh'
const PASSWORD = 'refresh-test-only-pw'
// The refresh runs a tenth of the period before expiry (at most 30 s before): at 2.7 s here.
const PERIOD_S = 3
let pg: ScratchPostgres
let fake: SecretsManagerFake

before(async () => {
  // Each kept as soon as it is up, and both waited for: one that fails to start must not leave
  // the other running unseen by the after hook (the fake's open server kept node from exiting).
  const started = await Promise.allSettled([
    startScratchPostgres().then((s) => (pg = s)),
    startSecretsManagerFake().then((f) => (fake = f)),
  ])
  for (const s of started) if (s.status === 'rejected') throw s.reason
  await createScratchRole(pg, ROLE, PASSWORD)
  fake.setSecret(SECRET, { username: ROLE, password: PASSWORD, engine: 'postgres' })
})

after(async () => {
  fake?.setFault(undefined)
  await Promise.all([pg?.stop(), fake?.close()])
})

function client(backgroundRefresh: boolean): PostgresHaSql {
  return postgresHa(`postgres://${ROLE}@127.0.0.1:${pg.port}/postgres`, {
    plugins: 'secretsManager',
    dialect: 'pg',
    secretsManagerSecretId: SECRET,
    secretsManagerRegion: fake.region,
    secretsManagerEndpoint: fake.endpoint,
    credentials: { ...fake.credentials },
    secretsManagerExpirationSec: PERIOD_S,
    secretsManagerBackgroundRefresh: backgroundRefresh,
    connectTimeoutMs: 2_000,
    max: 1,
    // The connection closes when idle for 50 ms: each statement below, 100 ms apart, opens a new one.
    idle_timeout: 0.05,
  } as never) as PostgresHaSql
}

const pids: number[] = []

/** A statement on a new connection (the last one idled out), logged in; its time in ms. */
async function connectOnce(sql: PostgresHaSql): Promise<number> {
  const t0 = performance.now()
  const [row] = await sql`select pg_backend_pid() as pid`
  pids.push(row!.pid)
  return performance.now() - t0
}

/** New connections every 100 ms for `ms`; the time of each. */
async function connectFor(sql: PostgresHaSql, ms: number): Promise<number[]> {
  const times: number[] = []
  const until = performance.now() + ms
  while (performance.now() < until) {
    times.push(await connectOnce(sql))
    await new Promise((r) => setTimeout(r, 100))
  }
  return times
}

test('secretsManager background refresh: one read per period, before expiry; connects never wait on the SDK', async () => {
  const sql = client(true)
  const start = fake.getSecretValueCount(SECRET)
  try {
    await sql`select 1`
    const first = fake.requests.at(-1)!.atMs
    assert.equal(fake.getSecretValueCount(SECRET) - start, 1, 'one read for the first connects')
    // Two periods of steady connects: one background read per period, no more.
    const steady = await connectFor(sql, 2 * PERIOD_S * 1000)
    const reads = fake.requests.slice(-(fake.getSecretValueCount(SECRET) - start)).map((r) => r.atMs)
    assert.ok(
      reads.length >= 3 && reads.length <= 4,
      `${reads.length} reads in ${2 * PERIOD_S} s + the first (expected 1 per ${PERIOD_S} s period)`,
    )
    // Each read came before the value it replaced expired.
    for (let i = 1; i < reads.length; i++)
      assert.ok(
        reads[i]! - reads[i - 1]! < PERIOD_S * 1000,
        `read ${i} came ${Math.round(reads[i]! - reads[i - 1]!)} ms after the one before`,
      )
    assert.ok(reads[0] === first)
    // The service now hangs, right after a refresh: connects keep logging in from the cache, at once.
    const count = fake.getSecretValueCount(SECRET)
    await eventually(
      () => fake.getSecretValueCount(SECRET) > count,
      PERIOD_S * 1000 + 2_000,
      'the next refresh',
    )
    fake.setFault('hang')
    const hung = await connectFor(sql, (PERIOD_S - 1) * 1000)
    const slowest = Math.max(...steady, ...hung)
    assert.ok(hung.length >= 5, `${hung.length} connects`)
    assert.equal(new Set(pids).size, pids.length, 'every statement had a new connection')
    // A connect that waited on the hung service would take the whole connect timeout (2 s) and fail.
    assert.ok(slowest < 1_000, `the slowest connect took ${Math.round(slowest)} ms`)
  } finally {
    fake.setFault(undefined)
    await sql.end({ timeout: 1 })
  }
})

test('secretsManager without background refresh: the first connect after expiry waits on the SDK (control)', async () => {
  const sql = client(false)
  try {
    await sql`select 1`
    fake.setFault('hang')
    await new Promise((r) => setTimeout(r, PERIOD_S * 1000 + 100))
    const result = await settle(connectOnce(sql))
    assert.equal(
      result.ok,
      false,
      `a connect after expiry did not wait on the hung service (${Math.round(result.ms)} ms)`,
    )
    if (!result.ok) assert.ok(result.error instanceof CredentialsUnavailableError, `got ${result.error}`)
    assert.ok(result.ms >= 1_500, `settled after ${Math.round(result.ms)} ms`)
  } finally {
    fake.setFault(undefined)
    await sql.end({ timeout: 1 })
  }
})
