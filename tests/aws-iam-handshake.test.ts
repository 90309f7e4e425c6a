import assert from 'node:assert/strict'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { after, before, test } from 'node:test'
import { Signer } from '@aws-sdk/rds-signer'
import postgres from 'postgres'
import {
  createIamHandshake,
  type IamEndpointOptions,
  type IamRefusedError,
} from '../lab/aws/iam-handshake.ts'
import { type ScratchPostgres, scratchAdmin, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { LAB_AWS_CREDENTIALS } from '../lab/aws/sigv4.ts'
import { labTlsCertificate } from '../lab/aws/test-tls.ts'

// Test-only passwords of throwaway roles in a throwaway server.
const passwords = new Map([
  ['iam_user', 'iam-user-test-only-pw'],
  ['md5_user', 'md5-user-test-only-pw'],
  ['clear_user', 'clear-user-test-only-pw'],
])
const PLAIN_PASSWORD = 'plain-user-test-only-pw'

let pg: ScratchPostgres
let front: Server
let port = 0
let options: Partial<IamEndpointOptions> = {}
const refusals: IamRefusedError[] = []

before(async () => {
  pg = await startScratchPostgres({
    hba: ['host all md5_user 127.0.0.1/32 md5', 'host all clear_user 127.0.0.1/32 password'],
  })
  const admin = scratchAdmin(pg)
  await admin.unsafe(`create role iam_user login password '${passwords.get('iam_user')}'`)
  await admin.unsafe(`create role clear_user login password '${passwords.get('clear_user')}'`)
  await admin.unsafe(`create role plain_user login password '${PLAIN_PASSWORD}'`)
  await admin.begin(async (tx) => {
    await tx.unsafe(`set local password_encryption = 'md5'`)
    await tx.unsafe(`create role md5_user login password '${passwords.get('md5_user')}'`)
  })
  await admin.end()
  const tls = labTlsCertificate()
  const upstream = () =>
    new Promise<Socket>((resolve, reject) => {
      const s = tcpConnect(pg.port, '127.0.0.1')
      s.once('connect', () => resolve(s))
      s.once('error', reject)
    })
  front = createServer((client) => {
    createIamHandshake({
      tls,
      upstreamPassword: (u) => passwords.get(u),
      onRefused: (r) => refusals.push(r),
      ...options,
    })(client, upstream).catch(() => {})
  })
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.2', resolve))
  port = (front.address() as { port: number }).port
})

after(async () => {
  await new Promise((resolve) => front?.close(resolve))
  await pg?.stop()
})

const token = (o: { user?: string; region?: string; host?: string } = {}) =>
  new Signer({
    hostname: o.host ?? '127.0.0.2',
    port,
    region: o.region ?? 'us-east-1',
    username: o.user ?? 'iam_user',
    credentials: LAB_AWS_CREDENTIALS,
  }).getAuthToken()

async function login(
  user: string,
  password: string | (() => Promise<string>),
  ssl: false | object = { rejectUnauthorized: false },
) {
  const sql = postgres({
    host: '127.0.0.2',
    port,
    user,
    password,
    database: 'postgres',
    ssl,
    max: 1,
    connect_timeout: 5,
    onnotice: () => {},
  })
  try {
    const [row] =
      await sql`select current_user as who, (select count(*) from generate_series(1, 5000))::int as n`
    return row
  } finally {
    await sql.end({ timeout: 1 })
  }
}

async function refused(user: string, password: string, ssl?: false): Promise<any> {
  const before = refusals.length
  const error = await login(user, password, ssl).then(
    () => assert.fail('login should have been refused'),
    (e) => e,
  )
  await new Promise((r) => setTimeout(r, 20))
  return {
    error,
    reason: refusals
      .slice(before)
      .map((r) => r.reason)
      .join('; '),
  }
}

test('aws-iam-handshake: a valid token logs in over TLS and the session works', async () => {
  options = {}
  const row = await login('iam_user', () => token())
  assert.deepEqual({ ...row }, { who: 'iam_user', n: 5000 })
})

test('aws-iam-handshake: upstream login uses whatever the server asks: SCRAM, md5 or cleartext', async () => {
  options = {}
  for (const user of ['iam_user', 'md5_user', 'clear_user']) {
    const row = await login(user, await token({ user }))
    assert.equal(row!.who, user)
  }
})

test('aws-iam-handshake: a wrong region is refused with the PAM error RDS sends', async () => {
  options = {}
  const { error, reason } = await refused('iam_user', await token({ region: 'eu-west-1' }))
  assert.equal(error.code, '28000')
  assert.equal(error.severity, 'FATAL')
  assert.equal(error.message, 'PAM authentication failed for user "iam_user"')
  assert.match(reason, /region eu-west-1/)
})

test('aws-iam-handshake: an expired token and a token for another host are refused', async () => {
  options = { now: () => Date.now() + 16 * 60_000 }
  const expired = await refused('iam_user', await token())
  assert.equal(expired.error.code, '28000')
  assert.match(expired.reason, /expired/)
  options = {}
  const other = await refused('iam_user', await token({ host: '127.0.0.3' }))
  assert.equal(other.error.code, '28000')
  assert.match(other.reason, /host 127\.0\.0\.3/)
  const wrongUser = await refused('iam_user', await token({ user: 'md5_user' }))
  assert.match(wrongUser.reason, /user "md5_user"/)
})

test('aws-iam-handshake: an IAM login without TLS is refused by pg_hba, as on RDS', async () => {
  options = {}
  const { error, reason } = await refused('iam_user', await token(), false)
  assert.equal(error.code, '28000')
  assert.match(
    error.message,
    /^pg_hba\.conf rejects connection for host "127\.0\.0\.1", user "iam_user", database "postgres", no encryption$/,
  )
  assert.match(reason, /requires TLS/)
})

test('aws-iam-handshake: a role without rds_iam authenticates with the server as usual', async () => {
  options = {}
  assert.equal((await login('plain_user', PLAIN_PASSWORD))!.who, 'plain_user')
  const wrong = await login('plain_user', 'not-the-password').catch((e) => e)
  assert.equal(wrong.code, '28P01')
})

test('aws-iam-handshake: cancel requests reach the upstream server', async () => {
  options = {}
  const sql = postgres({
    host: '127.0.0.2',
    port,
    user: 'iam_user',
    password: await token(),
    database: 'postgres',
    ssl: { rejectUnauthorized: false },
    max: 1,
    connect_timeout: 5,
    onnotice: () => {},
  })
  try {
    await sql`select 1`
    const started = Date.now()
    const q = sql`select pg_sleep(10)`
    const outcome = q.catch((e) => e)
    setTimeout(() => q.cancel(), 200)
    const error = await outcome
    assert.equal(error.code, '57014')
    assert.ok(Date.now() - started < 5000)
  } finally {
    await sql.end({ timeout: 1 })
  }
})
