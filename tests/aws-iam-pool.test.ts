// The `iam` plugin on pool connections: a cached token that the endpoint refuses (the key that
// signed it was revoked and replaced) is re-signed once and the pool connection logs in with the
// new one; the statement waiting for that connection never sees the refusal.
//
// The endpoint is the lab's IAM handshake in front of a scratch PostgreSQL; the identities it
// accepts are a list the test changes in place (revoking a key as IAM would).
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { IamRefusedError } from '../lab/aws/iam-handshake.ts'
import { type ScratchPostgres, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { LAB_AWS_CREDENTIALS, type LabAwsCredentials } from '../lab/aws/sigv4.ts'
import { CredentialsUnavailableError, type PostgresHaSql, postgresHa } from '../mod.ts'
import { createScratchRole, startIamFronts } from './helpers/aws.ts'

// The real password of a throwaway role, known only to the IAM endpoint.
const REAL_PASSWORD = 'iam-pool-real-test-only-pw'
// A second test-only identity, for the key that replaces the revoked one.
const REPLACEMENT: LabAwsCredentials = Object.freeze({
  accessKeyId: 'AKIDREPLACEMENTTEST1',
  secretAccessKey: 'replacement-test-only-secret-key-not-real-1',
})
let pg: ScratchPostgres
let fronts: Awaited<ReturnType<typeof startIamFronts>> | undefined
let port = 0
const accepted: LabAwsCredentials[] = []
const refusals: IamRefusedError[] = []

before(async () => {
  pg = await startScratchPostgres()
  await createScratchRole(pg, 'iam_pool', REAL_PASSWORD)
  accepted.push(LAB_AWS_CREDENTIALS, REPLACEMENT)
  fronts = await startIamFronts(pg, 'iam_pool', REAL_PASSWORD, ['127.0.0.2'], {
    credentials: accepted,
    onRefused: (r) => refusals.push(r),
  })
  port = fronts.ports[0]!
})

after(async () => {
  await fronts?.close()
  await pg?.stop()
})

test('iam pool: a refused cached token on a pool connection is re-signed once; no statement fails', async () => {
  let current: LabAwsCredentials = LAB_AWS_CREDENTIALS
  const provider = Object.assign(
    async () => {
      provider.calls++
      return { ...current }
    },
    { calls: 0 },
  )
  const sql = postgresHa(`postgres://iam_pool@127.0.0.2:${port}/postgres`, {
    plugins: 'iam',
    dialect: 'pg',
    iamRegion: 'us-east-1',
    ssl: { rejectUnauthorized: false },
    credentials: provider,
    max: 4,
    connectTimeoutMs: 5_000,
  } as never) as PostgresHaSql
  try {
    assert.equal((await sql`select current_user as u`)[0]!.u, 'iam_pool')
    assert.equal(provider.calls, 1, 'one token for the one endpoint')
    const refusedBefore = refusals.length
    // The key that signed the cached token is revoked and replaced.
    accepted.splice(accepted.indexOf(LAB_AWS_CREDENTIALS), 1)
    current = REPLACEMENT
    // Four at once: the pool opens new connections, each first with the cached (now refused) token.
    const rows = await Promise.all(
      Array.from({ length: 4 }, () => sql`select pg_sleep(0.2), current_user as u`),
    )
    assert.deepEqual(
      rows.map((r) => r[0]!.u),
      Array(4).fill('iam_pool'),
    )
    assert.ok(refusals.length > refusedBefore, 'the cached token was refused at least once')
    assert.match(refusals[refusedBefore]!.reason, /unknown access key/)
    assert.equal(provider.calls, 2, 'exactly one re-sign, shared by the concurrent connects')
  } finally {
    accepted.push(LAB_AWS_CREDENTIALS)
    await sql.end()
  }
})

test('iam pool: a credential provider that never answers — the statement settles within connectTimeoutMs with CredentialsUnavailableError, no failover', async () => {
  const sql = postgresHa(`postgres://iam_pool@127.0.0.2:${port}/postgres`, {
    plugins: 'failover,iam',
    dialect: 'pg',
    iamRegion: 'us-east-1',
    ssl: { rejectUnauthorized: false },
    // IMDS or STS that hangs.
    credentials: () => new Promise(() => {}),
    connectTimeoutMs: 2_000,
  } as never) as PostgresHaSql
  const failovers: unknown[] = []
  sql.ha.on('failoverStart', (e) => failovers.push(e))
  try {
    const t0 = performance.now()
    const error = await sql`select 1`.catch((e: unknown) => e)
    const took = performance.now() - t0
    assert.ok(error instanceof CredentialsUnavailableError, `got ${error}`)
    // The connect's deadline, plus the margin of a busy machine.
    assert.ok(took < 3_000, `settled after ${Math.round(took)} ms`)
    assert.deepEqual(failovers, [])
  } finally {
    await sql.end()
  }
})
