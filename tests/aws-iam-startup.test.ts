import assert from 'node:assert/strict'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { after, before, test } from 'node:test'
import { Signer } from '@aws-sdk/rds-signer'
import postgres from 'postgres'
import { createIamStartupHandler } from '../lab/aws/iam-startup.ts'
import { type ScratchPostgres, scratchAdmin, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { LAB_AWS_CREDENTIALS } from '../lab/aws/sigv4.ts'
import { labTlsCertificate } from '../lab/aws/test-tls.ts'

// The real password of a throwaway role, known only to the IAM endpoint.
const REAL_PASSWORD = 'startup-test-only-pw'
let pg: ScratchPostgres
let relay: Server
let port = 0
const reasons: string[] = []
const relayed = new Set<Socket>()

/** Relays like the lab's fault proxy: the hook returns the upstream, the relay moves the client's raw bytes. */
function proxyLike(
  hook: (client: Socket, connectUpstream: () => Promise<Socket>) => Promise<Socket>,
): Server {
  return createServer((client) => {
    client.pause()
    client.on('error', () => {})
    const connectUpstream = () =>
      new Promise<Socket>((resolve, reject) => {
        const s = tcpConnect(pg.port, '127.0.0.1')
        s.once('connect', () => resolve(s))
        s.once('error', reject)
      })
    hook(client, connectUpstream).then(
      (upstream) => {
        relayed.add(client)
        upstream.setNoDelay(true)
        upstream.on('error', () => client.destroy())
        upstream.on('data', (d: Buffer) => client.write(d))
        upstream.on('end', () => client.end())
        upstream.on('close', () => client.destroy())
        client.on('data', (d: Buffer) => upstream.write(d))
        client.on('end', () => upstream.end())
        client.on('close', () => upstream.destroy())
        client.resume()
        upstream.resume()
      },
      () => client.resetAndDestroy(),
    )
  })
}

before(async () => {
  pg = await startScratchPostgres()
  const admin = scratchAdmin(pg)
  await admin.unsafe(`create role iam_user login password '${REAL_PASSWORD}'`)
  await admin.end()
  relay = proxyLike(
    createIamStartupHandler({
      tls: labTlsCertificate(),
      upstreamPassword: (u) => (u === 'iam_user' ? REAL_PASSWORD : undefined),
      onRefused: (r) => reasons.push(r.reason),
    }),
  )
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.4', resolve))
  port = (relay.address() as { port: number }).port
})

after(async () => {
  for (const c of relayed) c.destroy()
  await new Promise((resolve) => relay?.close(resolve))
  await pg?.stop()
})

const token = (region = 'us-east-1') =>
  new Signer({
    hostname: '127.0.0.4',
    port,
    region,
    username: 'iam_user',
    credentials: LAB_AWS_CREDENTIALS,
  }).getAuthToken()
const client = (
  password: string | (() => Promise<string>),
  ssl: false | object = { rejectUnauthorized: false },
) =>
  postgres({
    host: '127.0.0.4',
    port,
    user: 'iam_user',
    password,
    database: 'postgres',
    ssl,
    max: 1,
    onnotice: () => {},
  })

test('aws-iam-startup: behind a proxy-shaped relay, a valid token logs in and queries run', async () => {
  const sql = client(() => token())
  try {
    const [row] = await sql`select current_user as who, count(*)::int as n from generate_series(1, 20000)`
    assert.deepEqual({ ...row }, { who: 'iam_user', n: 20000 })
    const rows = await sql`select repeat('x', 100000) as big`
    assert.equal(rows[0]!.big.length, 100000)
  } finally {
    await sql.end({ timeout: 1 })
  }
})

test('aws-iam-startup: a refused token reaches the client as the PAM error, not a reset', async () => {
  const sql = client(await token('eu-west-1'))
  try {
    const error = await sql`select 1`.catch((e) => e)
    assert.equal(error.code, '28000')
    assert.equal(error.message, 'PAM authentication failed for user "iam_user"')
    assert.match(reasons.join(), /region eu-west-1/)
  } finally {
    await sql.end({ timeout: 1 })
  }
  const plain = client(await token(), false)
  try {
    const error = await plain`select 1`.catch((e) => e)
    assert.equal(error.code, '28000')
    assert.match(error.message, /no encryption$/)
  } finally {
    await plain.end({ timeout: 1 })
  }
})
