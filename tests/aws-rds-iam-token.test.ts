import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Signer } from '@aws-sdk/rds-signer'
import { verifyRdsIamToken } from '../lab/aws/rds-iam-token.ts'
import { LAB_AWS_CREDENTIALS } from '../lab/aws/sigv4.ts'

const endpoint = { host: '127.0.0.2', port: 5432 }
const sign = (o: { host?: string; port?: number; region?: string; user?: string; credentials?: any } = {}) =>
  new Signer({
    hostname: o.host ?? endpoint.host,
    port: o.port ?? endpoint.port,
    region: o.region ?? 'us-east-1',
    username: o.user ?? 'iam_user',
    credentials: o.credentials ?? LAB_AWS_CREDENTIALS,
  }).getAuthToken()
const check = (token: string, extra: { now?: number; user?: string } = {}) =>
  verifyRdsIamToken({
    token,
    user: extra.user ?? 'iam_user',
    region: 'us-east-1',
    endpoints: [endpoint],
    credentials: LAB_AWS_CREDENTIALS,
    now: extra.now,
  })
const refusal = (verdict: ReturnType<typeof check>) => (verdict.ok ? 'accepted' : verdict.reason)

test('aws-iam-token: a token from the real rds-signer is accepted', async () => {
  const token = await sign()
  assert.match(token, /^127\.0\.0\.2:5432\/\?Action=connect&DBUser=iam_user&X-Amz-Algorithm=AWS4-HMAC-SHA256/)
  const verdict = check(token)
  assert.equal(verdict.ok, true)
  assert.ok(verdict.ok && verdict.expiresAt > Date.now() + 14 * 60_000)
})

test('aws-iam-token: a wrong region is refused with a clear reason', async () => {
  assert.match(
    refusal(check(await sign({ region: 'eu-west-1' }))),
    /region eu-west-1, but this database is in us-east-1/,
  )
})

test('aws-iam-token: an expired token is refused (clock moved past 15 minutes)', async () => {
  const token = await sign()
  assert.equal(check(token, { now: Date.now() + 14 * 60_000 }).ok, true)
  assert.match(refusal(check(token, { now: Date.now() + 16 * 60_000 })), /token expired at/)
  assert.match(refusal(check(token, { now: Date.now() - 10 * 60_000 })), /signed in the future/)
})

test('aws-iam-token: a token for another host or port is refused', async () => {
  assert.match(
    refusal(check(await sign({ host: '127.0.0.3' }))),
    /token is for host 127\.0\.0\.3:5432, not for this endpoint/,
  )
  assert.match(refusal(check(await sign({ port: 5433 }))), /token is for host 127\.0\.0\.2:5433/)
})

test('aws-iam-token: a token for another user is refused', async () => {
  assert.match(refusal(check(await sign({ user: 'admin' }))), /token is for user "admin", not "iam_user"/)
})

test('aws-iam-token: a tampered signature or claim, or another secret key, is refused', async () => {
  const token = await sign()
  const sig = /X-Amz-Signature=([0-9a-f]{64})/.exec(token)![1]!
  const flipped = (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1)
  assert.match(refusal(check(token.replace(sig, flipped))), /signature does not match/)
  assert.match(
    refusal(check(token.replace('DBUser=iam_user', 'DBUser=admin'), { user: 'admin' })),
    /signature does not match/,
  )
  const forged = await sign({
    credentials: {
      accessKeyId: LAB_AWS_CREDENTIALS.accessKeyId,
      secretAccessKey: 'another-test-only-secret-key-00000000000',
    },
  })
  assert.match(refusal(check(forged)), /signature does not match/)
  const unknown = await sign({
    credentials: { accessKeyId: 'AKIDTESTSTRANGER0000', secretAccessKey: 'x'.repeat(40) },
  })
  assert.match(refusal(check(unknown)), /unknown access key/)
  assert.match(refusal(check('not a token')), /malformed token/)
})

test('aws-iam-token: temporary credentials must carry their session token', async () => {
  const temporary = { ...LAB_AWS_CREDENTIALS, sessionToken: 'test-only-session-token' }
  const token = await sign({ credentials: temporary })
  assert.match(token, /X-Amz-Security-Token=test-only-session-token/)
  const verify = (t: string) =>
    verifyRdsIamToken({
      token: t,
      user: 'iam_user',
      region: 'us-east-1',
      endpoints: [endpoint],
      credentials: temporary,
    })
  assert.equal(verify(token).ok, true)
  assert.match(refusal(verify(await sign())), /lacks the session token/)
})
