// The `secretsManager` plugin end to end: postgresHa() on the lab with its credentials read by the
// real AWS SDK client from the local Secrets Manager stand-in, across a rotation and a failover.
//
// Every new connection (user pools, the topology monitor, host-monitoring and failover probes)
// logs in with the cached secret; the secret is read once per secretsManagerExpirationSec (870 s
// by default) and once more after the database refuses it.
//
// The failover test runs after the rotation test and before nothing that needs the old writer.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { inspect } from 'node:util'
import { type SecretsManagerFake, startSecretsManagerFake } from '../lab/aws/secrets-manager-fake.ts'
import type { Lab } from '../lab/mod.ts'
import { FailoverFailedError, FailoverSuccessError, type PostgresHaSql, postgresHa } from '../mod.ts'
import {
  CredentialsUnavailableError,
  type SecretsManagerSdk,
  secretsManagerPlugin,
} from '../src/plugins/secrets-manager/mod.ts'
import { assertMissingPackage, createLabRole, labUrlAs, setLabRolePassword } from './helpers/aws.ts'
import { labClientOptions } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const ROLE = 'app_secret'
const SECRET = 'lab/app-secret'
// Test-only passwords; each rotation takes the next one.
const passwordNo = (n: number) => `rotated-e2e-test-only-pw-${n}`
let rotation = 0
let lab: Lab
let fake: SecretsManagerFake

before(async () => {
  // Each kept as soon as it is up, and both waited for: one that fails to start must not leave
  // the other running unseen by the after hook (the fake's open server kept node from exiting).
  const started = await Promise.allSettled([
    sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 }).then((l) => (lab = l)),
    startSecretsManagerFake().then((f) => (fake = f)),
  ])
  for (const s of started) if (s.status === 'rejected') throw s.reason
  await createLabRole(lab, ROLE, passwordNo(0))
  fake.setSecret(SECRET, { username: ROLE, password: passwordNo(0), engine: 'postgres' })
})

after(async () => {
  await Promise.all([lab?.down(), fake?.close()])
})

/** What a rotation lambda does: the new password on the writer (it replicates), then in the secret. */
async function rotate(): Promise<void> {
  rotation++
  await setLabRolePassword(lab, ROLE, passwordNo(rotation))
  fake.setSecret(SECRET, { username: ROLE, password: passwordNo(rotation), engine: 'postgres' })
}

/** The lab's cluster endpoint URL with the secret's user and no password. */
function urlWithoutPassword(user: string | undefined = ROLE, target = 'cluster'): string {
  return labUrlAs(lab, user ?? '', target)
}

function logCapture() {
  const lines: string[] = []
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    lines.push(`${level} ${message} ${inspect(fields, { depth: 10 })}`)
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } }
}

function secretsClient(url = urlWithoutPassword(), extra: Record<string, unknown> = {}) {
  const log = logCapture()
  const events: string[] = []
  const sql = postgresHa(
    url,
    labClientOptions({
      plugins: 'connectionTracker,failover,hostMonitoring,secretsManager',
      secretsManagerSecretId: SECRET,
      secretsManagerRegion: fake.region,
      secretsManagerEndpoint: fake.endpoint,
      credentials: { ...fake.credentials },
      logger: log.logger,
      max: 8,
      ...extra,
    } as never),
  ) as PostgresHaSql
  sql.ha.on('failover', (e) => events.push(`failover ${e.ok} ${e.from?.host}->${e.to?.host}`))
  sql.ha.on('hostDown', (e) => events.push(`hostDown ${e.host.host}`))
  return { sql, log, events }
}

/** Runs `statement`, and once more if the failover reports it may or may not have run (its contract). */
async function rerunOnFailover<T>(statement: () => Promise<T>): Promise<T> {
  try {
    return await statement()
  } catch (error) {
    if (error instanceof FailoverSuccessError) return statement()
    throw error
  }
}

const concurrently = (sql: PostgresHaSql, n: number) =>
  Promise.all(Array.from({ length: n }, () => sql`select pg_sleep(0.2), pg_backend_pid() as pid`))

test('aws-e2e: secrets — one fetch serves every connection; a rotation costs exactly one re-fetch; a failover none', async () => {
  const fetches = () => fake.getSecretValueCount(SECRET)
  const start = fetches()
  const { sql, log, events } = secretsClient()
  try {
    const [row] = await sql`select current_user as who`
    assert.equal(row!.who, ROLE)
    await concurrently(sql, 2)
    assert.equal(fetches() - start, 1, 'one fetch for the topology connection, the pool and its monitor')

    // Rotation: the two open connections stay; the new ones are refused with the old password once.
    await rotate()
    const rows = await concurrently(sql, 8)
    assert.equal(rows.length, 8, 'every statement succeeded')
    // Within the 870 s TTL only a refusal makes the plugin read the secret again.
    assert.equal(fetches() - start, 2, 'exactly one re-fetch after the rotation')
    await concurrently(sql, 8)
    assert.equal(fetches() - start, 2)

    // Failover: probes of the other instances and the new writer's pool use the cached secret.
    const old = (await lab.status()).writer!
    await lab.kill(old)
    const [moved] = await rerunOnFailover(
      () => sql`select pg_catalog.aurora_db_instance_identifier() as id, current_user as who`,
    )
    assert.notEqual(moved!.id, old)
    assert.equal(moved!.who, ROLE)
    await concurrently(sql, 8)
    assert.deepEqual(
      events.filter((e) => e.startsWith('failover')),
      [`failover true ${old}->${moved!.id}`],
    )
    assert.equal(fetches() - start, 2, 'no fetch for the failover within the cache TTL')
    assert.equal(log.lines.filter((l) => l.includes('read the database credentials')).length, 2)
    assert.deepEqual(fake.rejected, [], 'every request was signed with the right credentials')
  } finally {
    await sql.end()
  }
  await lab.start((await lab.events()).find((e) => e.type === 'writer-lost')!.node!)
  await lab.waitForWriter({ timeoutMs: 30_000 })
})

test('aws-e2e: secrets — the user name comes from the secret when the URL has none', async () => {
  const writer = (await lab.status()).writer!
  const { sql } = secretsClient(urlWithoutPassword('', writer))
  try {
    const [row] = await sql`select current_user as who`
    assert.equal(row!.who, ROLE)
  } finally {
    await sql.end()
  }
})

test('aws-e2e: secrets — Secrets Manager unreachable: CredentialsUnavailableError at once, no failover', async () => {
  const writer = (await lab.status()).writer!
  const { sql, events } = secretsClient(urlWithoutPassword(ROLE, writer), {
    secretsManagerEndpoint: 'http://127.0.0.1:9',
  })
  try {
    const error = await sql`select 1`.catch((e) => e)
    assert.ok(error instanceof CredentialsUnavailableError, `got ${inspect(error)}`)
    assert.ok(!(error instanceof FailoverFailedError))
    assert.match(
      error.message,
      /could not read the credentials from AWS Secrets Manager secret "lab\/app-secret"/,
    )
    assert.deepEqual(events, [])
  } finally {
    await sql.end()
  }
})

test('aws-e2e: secrets — no secret value, password or AWS secret key in logs, errors or inspect output', async () => {
  const writer = (await lab.status()).writer!
  const { sql, log } = secretsClient(urlWithoutPassword(ROLE, writer))
  // A secret whose password the database does not know: refused even after the re-fetch.
  const wrongSecret = 'lab/wrong-secret'
  fake.setSecret(wrongSecret, { username: ROLE, password: 'wrong-e2e-test-only-pw' })
  const wrong = secretsClient(urlWithoutPassword(ROLE, writer), { secretsManagerSecretId: wrongSecret })
  try {
    await sql`select 1`
    const refused = await wrong.sql`select 1`.catch((e) => e)
    assert.equal(refused?.code, '28P01', `got ${inspect(refused)}`)
    const bad = await sql`select * from no_such_table`.catch((e) => e)
    assert.equal(bad?.code, '42P01')
    const haystack = [
      ...log.lines,
      ...wrong.log.lines,
      inspect(sql, { depth: 10, showHidden: true }),
      inspect(sql.options, { depth: 10, showHidden: true }),
      JSON.stringify(sql.options),
      inspect(refused, { depth: 10 }),
      String(refused?.stack),
      inspect(bad, { depth: 10 }),
    ].join('\n')
    assert.ok(log.lines.some((l) => l.includes('read the database credentials')))
    for (let n = 0; n <= rotation; n++) assert.ok(!haystack.includes(passwordNo(n)), `password ${n} leaked`)
    assert.ok(!haystack.includes('wrong-e2e-test-only-pw'), 'the wrong secret leaked')
    assert.ok(!haystack.includes(fake.credentials.secretAccessKey), 'the AWS secret key leaked')
  } finally {
    await Promise.all([sql.end(), wrong.sql.end()])
  }
})

test('aws-e2e: secrets — a missing @aws-sdk/client-secrets-manager is a MissingDependencyError naming it', async () => {
  const absent = '@aws-sdk/client-secrets-manager-that-is-not-installed'
  const sql = postgresHa(
    urlWithoutPassword(),
    labClientOptions({
      plugins: [
        'connectionTracker',
        'failover',
        secretsManagerPlugin({ importSdk: () => import(absent) as Promise<SecretsManagerSdk> }),
      ],
      secretsManagerSecretId: SECRET,
      secretsManagerRegion: fake.region,
      secretsManagerEndpoint: fake.endpoint,
    } as never),
  )
  await assertMissingPackage(sql, '@aws-sdk/client-secrets-manager')
})
