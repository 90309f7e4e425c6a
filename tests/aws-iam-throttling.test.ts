// The `iam` plugin when the AWS credential provider is throttled (STS or IMDS answering
// `ThrottlingException`): signing backs off and retries within the connect's deadline, one retry
// loop shared by concurrent connects; after the deadline the statement fails with
// CredentialsUnavailableError (cause: the throttling). Nothing is wrong with the database, so no
// host is marked down and no failover starts. Other provider errors still fail at once.
//
// The endpoint is the lab's IAM handshake in front of a scratch PostgreSQL; the provider is the
// test's own function handed to the real `@aws-sdk/rds-signer`.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type ScratchPostgres, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { LAB_AWS_CREDENTIALS } from '../lab/aws/sigv4.ts'
import { CredentialsUnavailableError, type PostgresHaSql, postgresHa } from '../mod.ts'
import { createScratchRole, startIamFronts } from './helpers/aws.ts'
import { type CrashWatch, describeCrashes, watchCrashes } from './helpers/crash-watch.ts'

// The real password of a throwaway role, known only to the IAM endpoint.
const REAL_PASSWORD = 'iam-throttle-real-test-only-pw'
const CONNECT_TIMEOUT_MS = 2_000
let pg: ScratchPostgres
let fronts: Awaited<ReturnType<typeof startIamFronts>> | undefined
let port = 0
let crashes: CrashWatch

before(async () => {
  crashes = watchCrashes()
  // Loaded once here: the first import of the SDK is start-up time, not connect time.
  await import('@aws-sdk/rds-signer')
  pg = await startScratchPostgres()
  await createScratchRole(pg, 'iam_throttle', REAL_PASSWORD)
  fronts = await startIamFronts(pg, 'iam_throttle', REAL_PASSWORD, ['127.0.0.2'], {
    credentials: [LAB_AWS_CREDENTIALS],
  })
  port = fronts.ports[0]!
})

after(async () => {
  crashes?.stop()
  await fronts?.close()
  await pg?.stop()
  assert.deepEqual(crashes.seen, [], describeCrashes(crashes.seen))
})

/** A credential provider that fails with `fail(n)` on its n-th call (1-based) when that returns an error. */
function provider(fail: (call: number) => Error | undefined) {
  const p = Object.assign(
    async () => {
      p.calls++
      const error = fail(p.calls)
      if (error) throw error
      return { ...LAB_AWS_CREDENTIALS }
    },
    { calls: 0 },
  )
  return p
}

const throttling = () =>
  Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $retryable: { throttling: true } })

function client(credentials: () => Promise<unknown>) {
  const events: string[] = []
  const sql = postgresHa(`postgres://iam_throttle@127.0.0.2:${port}/postgres`, {
    plugins: 'connectionTracker,failover,hostMonitoring,iam',
    dialect: 'pg',
    iamRegion: 'us-east-1',
    ssl: { rejectUnauthorized: false },
    credentials,
    max: 3,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
  } as never) as PostgresHaSql
  sql.ha.on('failoverStart', (e) => events.push(`failoverStart ${e.reason}`))
  sql.ha.on('hostDown', (e) => events.push(`hostDown ${e.host.host}`))
  return { sql, events }
}

test('iam throttling: a provider throttled twice, then fine — three concurrent statements succeed on one shared retry (3 provider calls)', async () => {
  const creds = provider((n) => (n <= 2 ? throttling() : undefined))
  const { sql, events } = client(creds)
  try {
    // Three at once: three new pool connections, all waiting on the one throttled signing.
    const rows = await Promise.all(
      Array.from({ length: 3 }, () => sql`select pg_sleep(0.1), current_user as u`),
    )
    assert.deepEqual(
      rows.map((r) => r[0]!.u),
      Array(3).fill('iam_throttle'),
    )
    assert.equal(creds.calls, 3, 'two throttled calls and one that answered, shared by the three connects')
    assert.deepEqual(events, [])
  } finally {
    await sql.end()
  }
})

test('iam throttling: a provider always throttled — CredentialsUnavailableError within connectTimeoutMs, a bounded number of calls, no failover', async () => {
  const creds = provider(() => throttling())
  const { sql, events } = client(creds)
  try {
    const t0 = performance.now()
    const error = await sql`select 1`.catch((e: unknown) => e)
    const took = performance.now() - t0
    assert.ok(error instanceof CredentialsUnavailableError, `got ${error}`)
    assert.equal((error.cause as Error)?.name, 'ThrottlingException')
    assert.match(error.message, /ThrottlingException/)
    assert.ok(took < CONNECT_TIMEOUT_MS + 500, `settled after ${Math.round(took)} ms`)
    // Back-off doubling from 100 ms to 2 s: a handful of calls in 2 s, not hundreds.
    const calls = creds.calls
    assert.ok(calls >= 3 && calls <= 12, `${calls} provider calls in ${Math.round(took)} ms`)
    // Afterwards only the driver's own topology connects sign (each backing off the same way):
    // one connect's worth of calls per second at most, not a retry storm.
    await new Promise((r) => setTimeout(r, 1_000))
    assert.ok(creds.calls - calls <= 8, `${creds.calls - calls} provider calls in the second after`)
    assert.deepEqual(events, [])
  } finally {
    await sql.end()
  }
})

test('iam throttling: a provider error that is not throttling fails at once (one call)', async () => {
  const creds = provider(() =>
    Object.assign(new Error('Could not load credentials from any providers'), {
      name: 'CredentialsProviderError',
    }),
  )
  const { sql, events } = client(creds)
  try {
    const t0 = performance.now()
    const error = await sql`select 1`.catch((e: unknown) => e)
    const took = performance.now() - t0
    assert.ok(error instanceof CredentialsUnavailableError, `got ${error}`)
    assert.equal((error.cause as Error)?.name, 'CredentialsProviderError')
    assert.equal(creds.calls, 1)
    assert.ok(took < CONNECT_TIMEOUT_MS / 2, `settled after ${Math.round(took)} ms`)
    assert.deepEqual(events, [])
  } finally {
    await sql.end()
  }
})
