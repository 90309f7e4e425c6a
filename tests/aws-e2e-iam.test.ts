// The `iam` plugin end to end: postgresHa() on a lab whose every endpoint (instances, cluster,
// reader) is an RDS IAM endpoint. The role `app_iam` can only log in with a valid token.
//
// What authenticates: every new connection, whatever its purpose (user pools, the topology
// monitor, host-monitoring probes, failover probes), asks the plugin for a token for the host it
// goes to; tokens are cached per region+host+port+user, so each host costs one signing per token
// lifetime. A healthy start signs two: the cluster endpoint (first topology read) and the writer
// instance (user pool and its monitor).
//
// The failover test runs last: the cluster endpoint keeps pointing at the dead writer afterwards.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { inspect } from 'node:util'
import { type IamLab, startIamLab } from '../lab/aws/lab-iam.ts'
import { LAB_AWS_CREDENTIALS } from '../lab/aws/sigv4.ts'
import { FailoverFailedError, FailoverSuccessError, type PostgresHaSql, postgresHa } from '../mod.ts'
import { CredentialsUnavailableError, iamPlugin, type RdsSignerModule } from '../src/plugins/iam/mod.ts'
import { assertMissingPackage } from './helpers/aws.ts'
import { labClientOptions } from './helpers/ha.ts'

let iam: IamLab

before(async () => {
  iam = await startIamLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 })
})

after(async () => {
  await iam?.down()
})

/** A static credential provider that counts its calls (the SDK's signer calls it once per token). */
function countingCredentials(make: () => Record<string, string> = () => ({ ...LAB_AWS_CREDENTIALS })) {
  const provider = Object.assign(
    async () => {
      provider.calls++
      return make() as { accessKeyId: string; secretAccessKey: string }
    },
    { calls: 0 },
  )
  return provider
}

/** A credential provider that fails like the SDK's default chain with nothing configured, while `broken()`. */
function brokenCredentials(broken: () => boolean) {
  return async () => {
    if (broken())
      throw Object.assign(new Error('Could not load credentials from any providers'), {
        name: 'CredentialsProviderError',
      })
    return { ...LAB_AWS_CREDENTIALS }
  }
}

/** A logger keeping every line, fields included, as the application would print it. */
function logCapture() {
  const lines: string[] = []
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    lines.push(`${level} ${message} ${inspect(fields, { depth: 10 })}`)
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } }
}

/** The real signer, recording every token it makes (to search for them in logs and errors). */
function recordingSigner(tokens: string[]): () => Promise<RdsSignerModule> {
  return async () => {
    const { Signer } = (await import('@aws-sdk/rds-signer')) as unknown as RdsSignerModule
    return {
      Signer: class {
        readonly #signer: InstanceType<RdsSignerModule['Signer']>
        constructor(config: ConstructorParameters<RdsSignerModule['Signer']>[0]) {
          this.#signer = new Signer(config)
        }
        async getAuthToken() {
          const token = await this.#signer.getAuthToken()
          tokens.push(token)
          return token
        }
      },
    }
  }
}

function iamClient({ url, ...extra }: Record<string, unknown> = {}) {
  const credentials = countingCredentials()
  const log = logCapture()
  const events: string[] = []
  const sql = postgresHa(
    (url as string | undefined) ?? iam.lab.url('cluster'),
    labClientOptions({
      plugins: 'connectionTracker,failover,hostMonitoring,iam',
      iamRegion: 'us-east-1',
      ssl: { rejectUnauthorized: false },
      credentials,
      user: iam.role,
      logger: log.logger,
      max: 6,
      ...extra,
    } as never),
  ) as PostgresHaSql
  sql.ha.on('failoverStart', (e) => events.push(`failoverStart ${e.reason}`))
  sql.ha.on('hostDown', (e) => events.push(`hostDown ${e.host.host}`))
  return { sql, credentials, log, events }
}

/** The hosts the plugin signed a token for, in order (from its debug log line). */
const signedHosts = (lines: string[]) =>
  lines
    .filter((l) => l.includes('iam: signed a new authentication token'))
    .map((l) => /host: '([^']+)'/.exec(l)?.[1])

/** Runs `statement`, and once more if the failover reports it may or may not have run (its contract). */
async function rerunOnFailover<T>(statement: () => Promise<T>): Promise<T> {
  try {
    return await statement()
  } catch (error) {
    if (error instanceof FailoverSuccessError) return statement()
    throw error
  }
}

const PAM = `PAM authentication failed for user "app_iam"`

test('aws-e2e: iam — queries work on IAM endpoints; pool growth adds no signings', async () => {
  const refusedBefore = iam.refusals().length
  const { sql, credentials, log, events } = iamClient()
  try {
    const [row] = await sql`select current_user as who, pg_catalog.aurora_db_instance_identifier() as id`
    assert.equal(row!.who, iam.role)
    const writer = (await iam.lab.status()).writer!
    assert.equal(row!.id, writer)
    // The cluster endpoint (the first topology read) and the writer instance (the user pool).
    assert.deepEqual(signedHosts(log.lines), ['127.0.0.10', writer])
    assert.equal(credentials.calls, 2)

    const rows = await Promise.all(
      Array.from({ length: 6 }, () => sql`select pg_sleep(0.2), pg_backend_pid() as pid`),
    )
    assert.equal(new Set(rows.map((r) => r[0]!.pid)).size, 6, 'the pool grew to six connections')
    assert.equal(credentials.calls, 2, 'pool growth reuses the cached token')
    assert.deepEqual(events, [])
    assert.deepEqual(iam.refusals().slice(refusedBefore), [])
  } finally {
    await sql.end()
  }
})

test('aws-e2e: iam — a wrong region or a token for another host is refused with RDS’s 28000, not a failover', async () => {
  const cases = [
    {
      extra: { iamRegion: 'eu-west-1' },
      reason: /signed for region eu-west-1, but this database is in us-east-1/,
    },
    {
      extra: { iamHost: '127.0.0.12' },
      reason: /token is for host 127\.0\.0\.12:\d+, not for this endpoint/,
    },
  ]
  for (const { extra, reason } of cases) {
    const refusedBefore = iam.refusals().length
    const { sql, events } = iamClient(extra)
    try {
      const error = await sql`select 1`.catch((e) => e)
      assert.equal(error?.code, '28000', `got ${inspect(error)}`)
      assert.equal(error.message, PAM)
      assert.ok(!(error instanceof FailoverFailedError))
      assert.deepEqual(events, [])
      const refusals = iam.refusals().slice(refusedBefore)
      assert.ok(refusals.length >= 1)
      for (const r of refusals) {
        assert.equal(r.user, iam.role)
        assert.match(r.reason, reason)
      }
    } finally {
      await sql.end()
    }
  }
})

test('aws-e2e: iam — a token refused after start-up (revoked key) surfaces as 28000 without failover', async () => {
  const refusedBefore = iam.refusals().length
  let revoked = false
  const credentials = countingCredentials(() =>
    revoked
      ? { accessKeyId: 'AKIDREVOKEDTESTONLY0', secretAccessKey: 'revoked-test-only-secret-key-not-real-00' }
      : { ...LAB_AWS_CREDENTIALS },
  )
  // Tokens live one second here, so that new connections need new ones.
  const { sql, events } = iamClient({ credentials, iamTokenExpiration: 1 })
  try {
    await sql`select 1`
    revoked = true
    await new Promise((r) => setTimeout(r, 1100))
    const error = await Promise.all(Array.from({ length: 3 }, () => sql`select pg_sleep(0.1)`)).catch(
      (e) => e,
    )
    assert.equal(error?.code, '28000', `got ${inspect(error)}`)
    assert.equal(error.message, PAM)
    assert.deepEqual(events, [], 'no failover, no host marked down')
    const reasons = iam.refusals().slice(refusedBefore)
    assert.ok(reasons.length >= 1)
    assert.match(reasons[0]!.reason, /unknown access key AKIDREVOKEDTESTONLY0/)
    revoked = false
    await new Promise((r) => setTimeout(r, 1100))
    assert.equal((await sql`select 1 as ok`)[0]!.ok, 1, 'works again once the credentials are good')
  } finally {
    await sql.end()
  }
})

test('aws-e2e: iam — without AWS credentials the first statement fails at once with CredentialsUnavailableError', async () => {
  const { sql, events } = iamClient({ credentials: brokenCredentials(() => true) })
  try {
    const t0 = performance.now()
    const error = await sql`select 1`.catch((e) => e)
    assert.ok(error instanceof CredentialsUnavailableError, `got ${inspect(error)}`)
    assert.equal(error.code, 'CREDENTIALS_UNAVAILABLE')
    assert.match(
      error.message,
      /could not sign an IAM authentication token: CredentialsProviderError: Could not load credentials/,
    )
    assert.equal((error.cause as Error | undefined)?.name, 'CredentialsProviderError')
    assert.ok(performance.now() - t0 < 2000)
    assert.deepEqual(events, [])
  } finally {
    await sql.end()
  }
})

test('aws-e2e: iam — no token, password or AWS secret key in logs, errors or inspect output', async () => {
  const tokens: string[] = []
  const log = logCapture()
  const plugin = iamPlugin({ importSigner: recordingSigner(tokens) })
  const options = labClientOptions({
    plugins: ['connectionTracker', 'failover', 'hostMonitoring', plugin],
    iamRegion: 'us-east-1',
    ssl: { rejectUnauthorized: false },
    credentials: { ...LAB_AWS_CREDENTIALS },
    user: iam.role,
    logger: log.logger,
  } as never)
  const sql = postgresHa(iam.lab.url('cluster'), options) as PostgresHaSql
  const wrong = postgresHa(iam.lab.url('cluster'), {
    ...options,
    plugins: [
      'connectionTracker',
      'failover',
      'hostMonitoring',
      iamPlugin({ importSigner: recordingSigner(tokens) }),
    ],
    iamRegion: 'eu-west-1',
  } as never) as PostgresHaSql
  try {
    await sql`select 1`
    const refused = await wrong`select 1`.catch((e) => e)
    assert.equal(refused?.code, '28000')
    const bad = await sql`select * from no_such_table`.catch((e) => e)
    assert.equal(bad?.code, '42P01')
    assert.ok(tokens.length >= 3, `tokens signed: ${tokens.length}`)
    const haystack = [
      ...log.lines,
      inspect(sql, { depth: 10, showHidden: true }),
      inspect(sql.options, { depth: 10, showHidden: true }),
      inspect(plugin, { depth: 10, showHidden: true }),
      JSON.stringify(sql.options),
      inspect(refused, { depth: 10 }),
      String(refused?.stack),
      inspect(bad, { depth: 10 }),
    ].join('\n')
    assert.ok(log.lines.some((l) => l.includes('signed a new authentication token')))
    for (const token of tokens) {
      assert.ok(!haystack.includes(token), 'a token leaked')
      const signature = /X-Amz-Signature=([0-9a-f]+)/.exec(token)![1]!
      assert.ok(!haystack.includes(signature), 'a token signature leaked')
    }
    assert.ok(!/X-Amz-(Signature|Credential)/.test(haystack), 'token parts leaked')
    assert.ok(!haystack.includes(LAB_AWS_CREDENTIALS.secretAccessKey), 'the AWS secret key leaked')
    assert.ok(!haystack.includes(new URL(iam.lab.url()).password), 'the URL password leaked')
  } finally {
    await Promise.all([sql.end(), wrong.end()])
  }
})

test('aws-e2e: iam — a missing @aws-sdk/rds-signer is a MissingDependencyError naming the package', async () => {
  const absent = '@aws-sdk/rds-signer-that-is-not-installed'
  const sql = postgresHa(
    iam.lab.url('cluster'),
    labClientOptions({
      plugins: [
        'connectionTracker',
        'failover',
        iamPlugin({ importSigner: () => import(absent) as Promise<RdsSignerModule> }),
      ],
      iamRegion: 'us-east-1',
      ssl: { rejectUnauthorized: false },
      user: iam.role,
    } as never),
  )
  await assertMissingPackage(sql, '@aws-sdk/rds-signer')
})

test('aws-e2e: iam — kill writer: failover works, each host (the new writer too) is signed for once', async () => {
  const refusedBefore = iam.refusals().length
  // The plugin object itself, so that its signing counters can be read.
  const plugin = iamPlugin()
  const { sql, credentials, log } = iamClient({
    plugins: ['connectionTracker', 'failover', 'hostMonitoring', plugin],
  })
  const events: string[] = []
  sql.ha.on('failover', (e) => events.push(`failover ${e.ok} ${e.from?.host}->${e.to?.host}`))
  try {
    await sql`create table if not exists iam_kv (id int primary key)`
    await Promise.all(Array.from({ length: 4 }, (_, i) => sql`insert into iam_kv values (${i})`))
    const old = (await iam.lab.status()).writer!
    assert.deepEqual(signedHosts(log.lines), ['127.0.0.10', old])

    await iam.lab.kill(old)
    const [row] = await rerunOnFailover(
      () => sql`select pg_catalog.aurora_db_instance_identifier() as id, pg_is_in_recovery() as ro`,
    )
    const now = row!.id as string
    assert.equal(row!.ro, false)
    await sql`insert into iam_kv values (100)`
    assert.notEqual(now, old)
    assert.equal(events.length, 1, events.join())
    assert.equal(events[0], `failover true ${old}->${now}`)

    // Pool growth on the new writer, and more work: no new signing.
    const signedAfterFailover = credentials.calls
    await Promise.all(Array.from({ length: 6 }, (_, i) => sql`insert into iam_kv values (${200 + i})`))
    await Promise.all(Array.from({ length: 6 }, () => sql`select pg_sleep(0.2)`))
    assert.equal(credentials.calls, signedAfterFailover, 'the new writer’s token is cached')

    const hosts = signedHosts(log.lines)
    console.log(`# iam failover: signed for ${hosts.join(', ')}; stats ${JSON.stringify(plugin.stats())}`)
    // Before: the cluster endpoint and the old writer. The failover's writer search probes every
    // instance of the topology (the dead one with its cached token), so the new writer and the
    // other reader cost one signing each: four in all, one per host.
    const other = ['127.0.0.11', '127.0.0.12', '127.0.0.13'].find((h) => h !== old && h !== now)
    assert.deepEqual([...hosts].sort(), ['127.0.0.10', old, now, other].sort())
    assert.equal(credentials.calls, 4)
    assert.equal(hosts.filter((h) => h === now).length, 1, 'the new writer is signed for exactly once')
    assert.equal(new Set(hosts).size, hosts.length, `no host signed twice: ${hosts}`)
    assert.equal(credentials.calls, hosts.length)
    assert.equal(plugin.stats().tokensSigned, credentials.calls)
    assert.ok(plugin.stats().tokensReused > 0)
    assert.deepEqual(iam.refusals().slice(refusedBefore), [])
  } finally {
    await sql.end()
  }
})

// Last: it runs on the new writer's instance endpoint, after the failover test.
test('aws-e2e: iam — an AWS SDK failure after start-up surfaces at once as itself, without failover', async () => {
  let broken = false
  const credentials = brokenCredentials(() => broken)
  const writer = (await iam.lab.status()).writer!
  const { sql, events } = iamClient({
    url: iam.lab.url(writer),
    credentials,
    iamTokenExpiration: 1,
    failoverTimeoutMs: 3000,
    connectTimeoutMs: 2000,
  })
  try {
    await sql`select 1`
    const long = sql`select pg_sleep(1.5) as slept`.execute() // queries are lazy: start it now
    broken = true
    await new Promise((r) => setTimeout(r, 1100))
    const t0 = performance.now()
    const error = await Promise.all(Array.from({ length: 3 }, () => sql`select pg_sleep(0.1)`)).catch(
      (e) => e,
    )
    const ms = performance.now() - t0
    assert.match(
      String(error?.message),
      /could not sign an IAM authentication token: CredentialsProviderError/,
    )
    assert.ok(!(error instanceof FailoverFailedError), `got ${error?.constructor?.name}`)
    assert.ok(ms < 1000, `surfaced after ${Math.round(ms)} ms`)
    assert.deepEqual(events, [], 'a credentials failure is no reason to fail over or mark the writer down')
    await long // the healthy writer's open connections were left alone
    broken = false
    await new Promise((r) => setTimeout(r, 1100))
    assert.equal((await sql`select 1 as ok`)[0]!.ok, 1)
  } finally {
    await sql.end()
  }
})
