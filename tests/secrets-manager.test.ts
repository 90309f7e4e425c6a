import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { inspect } from 'node:util'
import type postgres from 'postgres'
import { type ScratchPostgres, scratchAdmin, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { type SecretsManagerFake, startSecretsManagerFake } from '../lab/aws/secrets-manager-fake.ts'
import { HaError, InvalidOptionError, MissingDependencyError } from '../src/core/errors.ts'
import { secretsManagerOptionSpecs, secretsManagerPlugin } from '../src/plugins/secrets-manager/mod.ts'
import { pluginHarness } from './helpers/plugin-harness.ts'

// Test-only passwords of a throwaway role; each rotation picks the next.
let rotation = 0
const passwordNo = (n: number) => `rotated-test-only-pw-${n}`
let pg: ScratchPostgres
let fake: SecretsManagerFake
let admin: ReturnType<typeof postgres>

before(async () => {
  // Each kept as soon as it is up, and both waited for: one that fails to start must not leave
  // the other running unseen by the after hook (the fake's open server kept node from exiting).
  const started = await Promise.allSettled([
    startScratchPostgres().then((s) => (pg = s)),
    startSecretsManagerFake().then((f) => (fake = f)),
  ])
  for (const s of started) if (s.status === 'rejected') throw s.reason
  admin = scratchAdmin(pg)
  await admin.unsafe(`create role app_user login password '${passwordNo(0)}'`)
  fake.setSecret('app/db', { username: 'app_user', password: passwordNo(0), engine: 'postgres' })
})

after(async () => {
  await admin?.end({ timeout: 1 })
  await Promise.all([pg?.stop(), fake?.close()])
})

/** Changes the role's password in the database and in the secret, as a rotation lambda does. */
async function rotate(): Promise<void> {
  rotation++
  await admin.unsafe(`alter role app_user password '${passwordNo(rotation)}'`)
  fake.setSecret('app/db', { username: 'app_user', password: passwordNo(rotation), engine: 'postgres' })
}

const baseOptions = () => ({
  secretsManagerSecretId: 'app/db',
  secretsManagerRegion: fake.region,
  secretsManagerEndpoint: fake.endpoint,
  credentials: fake.credentials,
})

async function setUp(options: Record<string, unknown> = baseOptions()) {
  const h = pluginHarness(options)
  const plugin = secretsManagerPlugin()
  await plugin.init!(h.services)
  const host = { host: pg.host, port: pg.port }
  const connect = async () => {
    const ctx = h.connectContext(host, 'placeholder')
    let who = ''
    await plugin.connect!(ctx, async () => {
      who = await h.login(ctx)
    })
    return who
  }
  return { h, plugin, host, connect }
}

test('secrets: connects with the secret and reuses it: 6 connects, 1 fetch', async () => {
  const { plugin, connect } = await setUp()
  const before = fake.getSecretValueCount('app/db')
  assert.equal(await connect(), 'app_user')
  assert.equal(await connect(), 'app_user')
  assert.deepEqual(await Promise.all([connect(), connect(), connect(), connect()]), Array(4).fill('app_user'))
  assert.equal(fake.getSecretValueCount('app/db') - before, 1)
  assert.deepEqual(plugin.stats(), {
    fetches: 1,
    authRetries: 0,
    calls: { AWSCURRENT: 1, AWSPENDING: 0 },
    stage: 'AWSCURRENT',
  })
  await plugin.end!()
})

test('secrets: after a rotation, connects succeed after exactly one re-fetch (concurrent and sequential)', async () => {
  const { plugin, connect } = await setUp()
  await connect()
  const start = fake.getSecretValueCount('app/db')
  await rotate()
  fake.setResponseDelay(30)
  assert.deepEqual(await Promise.all(Array.from({ length: 5 }, connect)), Array(5).fill('app_user'))
  fake.setResponseDelay(0)
  assert.equal(
    fake.getSecretValueCount('app/db') - start,
    1,
    'one re-fetch for five concurrent refused connects',
  )
  await rotate()
  for (let i = 0; i < 3; i++) assert.equal(await connect(), 'app_user')
  assert.equal(fake.getSecretValueCount('app/db') - start, 2, 'one re-fetch for the second rotation')
  assert.equal(plugin.stats().fetches, 3)
  await plugin.end!()
})

test('secrets: rotation window — AWSCURRENT still old, the database takes AWSPENDING: one read of each stage for 5 connects', async () => {
  const { plugin, connect } = await setUp()
  await connect()
  const before = fake.requests.length
  // createSecret, then setSecret: the database takes only the new password; AWSCURRENT is still the old one.
  rotation++
  fake.createPending('app/db', { username: 'app_user', password: passwordNo(rotation), engine: 'postgres' })
  await admin.unsafe(`alter role app_user password '${passwordNo(rotation)}'`)
  fake.setResponseDelay(30)
  assert.deepEqual(await Promise.all(Array.from({ length: 5 }, connect)), Array(5).fill('app_user'))
  fake.setResponseDelay(0)
  assert.deepEqual(
    fake.requests.slice(before).map((r) => r.stage),
    ['AWSCURRENT', 'AWSPENDING'],
    'one shared read of each stage',
  )
  assert.equal(plugin.stats().stage, 'AWSPENDING')
  // finishSecret: AWSCURRENT moves; the cached (pending) value stays right, nothing is read.
  fake.finishRotation('app/db')
  for (let i = 0; i < 3; i++) assert.equal(await connect(), 'app_user')
  assert.equal(fake.requests.length - before, 2)
  await plugin.end!()
})

test('secrets: the stage that worked is read first when the cache expires; AWSCURRENT once the rotation finished', async () => {
  const { h, plugin, connect } = await setUp({ ...baseOptions(), secretsManagerExpirationSec: 60 })
  await connect()
  rotation++
  fake.createPending('app/db', { username: 'app_user', password: passwordNo(rotation) })
  await admin.unsafe(`alter role app_user password '${passwordNo(rotation)}'`)
  await connect()
  const before = fake.requests.length
  h.clock.advance(61_000)
  await connect()
  assert.deepEqual(
    fake.requests.slice(before).map((r) => r.stage),
    ['AWSPENDING'],
  )
  fake.finishRotation('app/db')
  h.clock.advance(61_000)
  await connect()
  assert.deepEqual(
    fake.requests.slice(before).map((r) => r.stage),
    ['AWSPENDING', 'AWSPENDING', 'AWSCURRENT'],
    'AWSPENDING is gone after finishSecret: back to AWSCURRENT',
  )
  assert.equal(plugin.stats().stage, 'AWSCURRENT')
  await plugin.end!()
})

test('secrets: neither stage accepted yet — re-reads with back-off until one is, bounded by secretsManagerConnectRetryTimeoutMs', async () => {
  const { plugin, connect } = await setUp({ ...baseOptions(), secretsManagerConnectRetryTimeoutMs: 1_500 })
  await connect()
  // The database changed first; the secret learns the password only 600 ms later (a manual rotation).
  rotation++
  await admin.unsafe(`alter role app_user password '${passwordNo(rotation)}'`)
  const before = fake.requests.length
  const late = setTimeout(
    () => fake.setSecret('app/db', { username: 'app_user', password: passwordNo(rotation) }),
    600,
  )
  const t0 = performance.now()
  assert.equal(await connect(), 'app_user')
  const ms = performance.now() - t0
  clearTimeout(late)
  // The budget bounds when a retry may start; the last read and login come on top.
  assert.ok(ms >= 500 && ms < 1_500 + 1_000, `took ${ms} ms`)
  const calls = fake.requests.length - before
  assert.ok(calls >= 3 && calls <= 12, `${calls} calls in ${ms} ms`)

  // Never accepted: the database's own refusal after the retry budget, with few calls.
  rotation++
  await admin.unsafe(`alter role app_user password '${passwordNo(rotation)}'`)
  const start = fake.requests.length
  const t1 = performance.now()
  const error = await connect().catch((e) => e)
  const waited = performance.now() - t1
  fake.setSecret('app/db', { username: 'app_user', password: passwordNo(rotation) })
  assert.equal(error.code, '28P01')
  assert.ok(waited >= 1_000 && waited < 3_000, `gave up after ${waited} ms`)
  const spent = fake.requests.length - start
  assert.ok(spent <= 16, `${spent} calls in ${waited} ms`)
  fake.setSecret('app/db', { username: 'app_user', password: passwordNo(rotation) })
  await plugin.end!()
})

test('secrets: the cache lasts secretsManagerExpirationSec (default 870 s); expiry re-reads once for concurrent connects', async () => {
  const { h, plugin, connect } = await setUp()
  await connect()
  const start = fake.getSecretValueCount('app/db')
  h.clock.advance(869_000)
  await connect()
  assert.equal(fake.getSecretValueCount('app/db'), start)
  h.clock.advance(2_000)
  fake.setResponseDelay(30)
  await Promise.all([connect(), connect(), connect()])
  fake.setResponseDelay(0)
  assert.equal(fake.getSecretValueCount('app/db') - start, 1)
  await plugin.end!()

  const short = await setUp({ ...baseOptions(), secretsManagerExpirationSec: 60 })
  await short.connect()
  short.h.clock.advance(61_000)
  await short.connect()
  assert.equal(short.plugin.stats().fetches, 2)
  await short.plugin.end!()
})

test('secrets: the region comes from an ARN secret id; aliases of the AWS Node wrapper work', async () => {
  const arn = fake.arnOf('app/db')
  const { connect, plugin } = await setUp({
    secretId: arn,
    secretEndpoint: fake.endpoint,
    credentials: fake.credentials,
  })
  assert.equal(await connect(), 'app_user')
  assert.equal(plugin.stats().fetches, 1)
  await plugin.end!()
})

test('secrets: a missing secret or a bad secret fails clearly without showing the secret', async () => {
  const missing = await setUp({ ...baseOptions(), secretsManagerSecretId: 'no/such/secret' })
  const e1 = await missing.connect().catch((e) => e)
  assert.ok(e1 instanceof HaError)
  assert.equal(e1.code, 'CREDENTIALS_UNAVAILABLE')
  assert.match(e1.message, /secret "no\/such\/secret": ResourceNotFoundException/)

  fake.setSecret('bad/json', '{"username": "app_user", "password": "leaky-test-only-pw"')
  const bad = await setUp({ ...baseOptions(), secretsManagerSecretId: 'bad/json' })
  const e2 = await bad.connect().catch((e) => e)
  assert.match(e2.message, /is not a JSON object with non-empty string keys "username" and "password"/)
  assert.doesNotMatch(inspect(e2, { depth: 10 }), /leaky-test-only-pw/)
  assert.equal(e2.cause, undefined)

  fake.setSecret('other/keys', { user: 'app_user', pass: passwordNo(rotation) })
  const keys = await setUp({
    ...baseOptions(),
    secretsManagerSecretId: 'other/keys',
    secretsManagerSecretUsernameProperty: 'user',
    secretsManagerSecretPasswordProperty: 'pass',
  })
  assert.equal(await keys.connect(), 'app_user')
})

test('secrets: options are validated, and a missing SDK names the package to install', async () => {
  const h = pluginHarness({})
  await assert.rejects(secretsManagerPlugin().init!(h.services) as Promise<void>, (e: any) => {
    assert.ok(e instanceof InvalidOptionError)
    assert.equal(e.option, 'secretsManagerSecretId')
    return true
  })
  await assert.rejects(
    secretsManagerPlugin({ secretsManagerSecretId: 'x', secretsManagerExpirationSec: -1 }).init!(
      h.services,
    ) as Promise<void>,
    /Invalid option secretsManagerExpirationSec: got -1/,
  )
  const absent = '@aws-sdk/package-that-is-not-installed'
  await assert.rejects(
    secretsManagerPlugin({ secretsManagerSecretId: 'x', importSdk: () => import(absent) }).init!(
      h.services,
    ) as Promise<void>,
    (e: any) => {
      assert.ok(e instanceof MissingDependencyError)
      assert.equal(e.packageName, '@aws-sdk/client-secrets-manager')
      assert.match(e.message, /npm install @aws-sdk\/client-secrets-manager/)
      return true
    },
  )
  assert.equal(secretsManagerOptionSpecs.secretsManagerExpirationSec.default, 870)
})

test('secrets: no password or AWS secret key in logs, errors or inspect output', async () => {
  // A refused login re-reads the secret with back-off for the whole retry budget: 1 s of it (the
  // default, bounded by the 10 s connect deadline, spent 10 s re-logging the same lines).
  const { h, plugin, connect, host } = await setUp({
    ...baseOptions(),
    secretsManagerConnectRetryTimeoutMs: 1_000,
  })
  await connect()
  await rotate()
  await connect()
  const denied = await plugin.connect!(h.connectContext(host, 'x'), async () => {
    throw Object.assign(new Error('password authentication failed for user "app_user"'), { code: '28P01' })
  }).catch((e) => e)
  const haystack = [
    ...h.logLines,
    inspect(plugin, { depth: Number.POSITIVE_INFINITY, showHidden: true }),
    inspect(secretsManagerOptionSpecs, { depth: Number.POSITIVE_INFINITY }),
    inspect(denied, { depth: 10 }),
    String(denied?.stack),
  ].join('\n')
  assert.ok(h.logLines.length > 0, 'the plugin logs its fetches')
  for (let n = 0; n <= rotation; n++) assert.ok(!haystack.includes(passwordNo(n)), `password ${n} leaked`)
  assert.ok(!haystack.includes(fake.credentials.secretAccessKey), 'AWS secret key leaked')
  await plugin.end!()
})
