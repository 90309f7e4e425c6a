// The `secretsManager` plugin through a Secrets Manager rotation, run the way AWS runs one:
// createSecret (a new version labelled AWSPENDING), setSecret (the database password changes),
// testSecret, then — after a delay during which AWSCURRENT still holds the old password —
// finishSecret (AWSCURRENT moves to the new version). Meanwhile a write loop runs on pool
// connections that are recycled every second (max_lifetime) and reserved connections are opened
// one after another, so new connections log in throughout the window.
//
// Expected: no statement and no connect fails; the SDK calls of the whole rotation are counted
// (one AWSCURRENT read that returns the refused version, one AWSPENDING read).
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import { type SecretsManagerFake, startSecretsManagerFake } from '../lab/aws/secrets-manager-fake.ts'
import type { Lab } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { type SecretsManagerPlugin, secretsManagerPlugin } from '../src/plugins/secrets-manager/mod.ts'
import { createLabRole, labUrlAs, setLabRolePassword } from './helpers/aws.ts'
import { labClientOptions } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const ROLE = 'app_rotating'
const SECRET = 'lab/app-rotating'
const WINDOW_MS = 5_000
// Test-only passwords.
const OLD_PASSWORD = 'rotation-test-only-pw-old'
const NEW_PASSWORD = 'rotation-test-only-pw-new'
let lab: Lab
let fake: SecretsManagerFake

before(async () => {
  // Each kept as soon as it is up, and both waited for: one that fails to start must not leave
  // the other running unseen by the after hook (the fake's open server kept node from exiting).
  const started = await Promise.allSettled([
    sharedLab({ nodes: 2 }).then((l) => (lab = l)),
    startSecretsManagerFake().then((f) => (fake = f)),
  ])
  for (const s of started) if (s.status === 'rejected') throw s.reason
  await createLabRole(lab, ROLE, OLD_PASSWORD)
  fake.setSecret(SECRET, { username: ROLE, password: OLD_PASSWORD, engine: 'postgres' })
})

after(async () => {
  await Promise.all([lab?.down(), fake?.close()])
})

test('aws secrets rotation: the four rotation steps with a 5 s window — 0 failed statements, 0 failed connects', async () => {
  const plugin: SecretsManagerPlugin = secretsManagerPlugin()
  const sql = postgresHa(
    labUrlAs(lab, ROLE),
    labClientOptions({
      plugins: ['connectionTracker', 'failover', 'hostMonitoring', plugin],
      secretsManagerSecretId: SECRET,
      secretsManagerRegion: fake.region,
      secretsManagerEndpoint: fake.endpoint,
      credentials: { ...fake.credentials },
      max: 4,
      // Pool connections are replaced every second: new logins all through the window.
      max_lifetime: 1,
      connectTimeoutMs: 10_000,
    } as never),
  ) as PostgresHaSql
  const failures: string[] = []
  let statements = 0
  let connects = 0
  let slowestStatementMs = 0
  let slowestConnectMs = 0
  let running = true
  try {
    await sql`create table if not exists rotation_writes (id serial primary key, at timestamptz default now())`
    const writer = async () => {
      while (running) {
        const t0 = performance.now()
        try {
          await sql`insert into rotation_writes default values`
          statements++
          slowestStatementMs = Math.max(slowestStatementMs, performance.now() - t0)
        } catch (error) {
          failures.push(`statement: ${(error as Error).message}`)
        }
        await new Promise((r) => setTimeout(r, 20))
      }
    }
    const connector = async () => {
      while (running) {
        const t0 = performance.now()
        try {
          const reserved = await sql.reserve()
          try {
            await reserved`select 1`
          } finally {
            reserved.release()
          }
          connects++
          slowestConnectMs = Math.max(slowestConnectMs, performance.now() - t0)
        } catch (error) {
          failures.push(`connect: ${(error as Error).message}`)
        }
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    const loops = [writer(), writer(), writer(), connector()]
    await new Promise((r) => setTimeout(r, 1_500))
    const callsBefore = fake.requests.length
    const rotationStarted = performance.now()

    // createSecret: the new version, labelled AWSPENDING.
    fake.createPending(SECRET, { username: ROLE, password: NEW_PASSWORD, engine: 'postgres' })
    // setSecret: the database password changes (on the writer; it replicates).
    await setLabRolePassword(lab, ROLE, NEW_PASSWORD)
    // testSecret: the rotation function logs in with the pending version.
    const tester = postgres(lab.url('cluster'), {
      user: ROLE,
      password: NEW_PASSWORD,
      max: 1,
      connect_timeout: 5,
      onnotice: () => {},
    })
    try {
      await tester`select 1`
    } finally {
      await tester.end({ timeout: 1 })
    }
    // The window: AWSCURRENT still holds the old password, the database only takes the new one.
    await new Promise((r) => setTimeout(r, WINDOW_MS))
    const stageInWindow = plugin.stats().stage
    // finishSecret: AWSCURRENT moves to the new version.
    fake.finishRotation(SECRET)
    await new Promise((r) => setTimeout(r, 1_500))
    running = false
    await Promise.all(loops)

    const calls = fake.requests.slice(callsBefore)
    const figures = {
      windowMs: WINDOW_MS,
      rotationMs: Math.round(performance.now() - rotationStarted),
      statements,
      connects,
      failed: failures.length,
      awsCalls: calls.length,
      awsCallsByStage: calls.reduce<Record<string, number>>(
        (n, c) => ({ ...n, [c.stage]: (n[c.stage] ?? 0) + 1 }),
        {},
      ),
      slowestStatementMs: Math.round(slowestStatementMs),
      slowestConnectMs: Math.round(slowestConnectMs),
      stats: plugin.stats(),
    }
    console.log(`# secrets rotation ${JSON.stringify(figures)}`)
    assert.deepEqual(failures, [], 'no statement and no connect failed')
    assert.ok(
      connects >= 10 && statements >= 50,
      `the loops ran: ${connects} connects, ${statements} statements`,
    )
    assert.equal(stageInWindow, 'AWSPENDING', 'during the window, the pending version is the one that works')
    assert.deepEqual(
      figures.awsCallsByStage,
      { AWSCURRENT: 1, AWSPENDING: 1 },
      'one read of each stage per rotation',
    )
    assert.deepEqual(fake.rejected, [])
  } finally {
    running = false
    await sql.end()
  }
})
