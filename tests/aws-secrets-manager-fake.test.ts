import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager'
import { startSecretsManagerFake } from '../lab/aws/secrets-manager-fake.ts'

const clientFor = (
  fake: { region: string; endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string } },
  overrides: { region?: string; secretAccessKey?: string; accessKeyId?: string } = {},
) =>
  new SecretsManagerClient({
    region: overrides.region ?? fake.region,
    endpoint: fake.endpoint,
    maxAttempts: 1,
    credentials: {
      accessKeyId: overrides.accessKeyId ?? fake.credentials.accessKeyId,
      secretAccessKey: overrides.secretAccessKey ?? fake.credentials.secretAccessKey,
    },
  })

test('aws-fake: the real SDK reads a secret by name and by ARN, and calls are counted', async () => {
  const fake = await startSecretsManagerFake()
  try {
    const { arn, versionId } = fake.setSecret('app/db', { username: 'app', password: 'pw-one' })
    const client = clientFor(fake)
    const out = await client.send(new GetSecretValueCommand({ SecretId: 'app/db' }))
    assert.equal(out.Name, 'app/db')
    assert.equal(out.ARN, arn)
    assert.equal(out.VersionId, versionId)
    assert.deepEqual(out.VersionStages, ['AWSCURRENT'])
    assert.ok(out.CreatedDate instanceof Date)
    assert.deepEqual(JSON.parse(out.SecretString!), { username: 'app', password: 'pw-one' })
    const byArn = await client.send(new GetSecretValueCommand({ SecretId: arn }))
    assert.equal(byArn.VersionId, versionId)
    assert.equal(fake.getSecretValueCount('app/db'), 2)
    assert.equal(fake.getSecretValueCount(arn), 2)
    assert.equal(fake.getSecretValueCount(), 2)
    client.destroy()
  } finally {
    await fake.close()
  }
})

test('aws-fake: rotation makes the new value current and keeps the old as AWSPREVIOUS', async () => {
  const fake = await startSecretsManagerFake()
  try {
    const first = fake.setSecret('rot', { username: 'u', password: 'old' })
    const second = fake.setSecret('rot', { username: 'u', password: 'new' })
    assert.equal(first.arn, second.arn)
    assert.notEqual(first.versionId, second.versionId)
    const client = clientFor(fake)
    const current = await client.send(new GetSecretValueCommand({ SecretId: 'rot' }))
    assert.equal(JSON.parse(current.SecretString!).password, 'new')
    const previous = await client.send(
      new GetSecretValueCommand({ SecretId: 'rot', VersionStage: 'AWSPREVIOUS' }),
    )
    assert.equal(previous.VersionId, first.versionId)
    assert.deepEqual(previous.VersionStages, ['AWSPREVIOUS'])
    client.destroy()
  } finally {
    await fake.close()
  }
})

test('aws-fake: an unknown secret is a ResourceNotFoundException, as from AWS', async () => {
  const fake = await startSecretsManagerFake()
  try {
    const client = clientFor(fake)
    await assert.rejects(client.send(new GetSecretValueCommand({ SecretId: 'nope' })), (e: any) => {
      assert.equal(e.name, 'ResourceNotFoundException')
      assert.equal(e.$metadata.httpStatusCode, 400)
      assert.match(e.message, /can't find the specified secret/)
      return true
    })
    client.destroy()
  } finally {
    await fake.close()
  }
})

test('aws-fake: requests signed with the wrong key, unknown key or wrong region are refused', async () => {
  const fake = await startSecretsManagerFake()
  try {
    fake.setSecret('s', 'plain text')
    const cases = [
      {
        overrides: { secretAccessKey: 'wrong-test-secret-key-000000000000000000' },
        name: 'InvalidSignatureException',
      },
      { overrides: { accessKeyId: 'AKIDTESTUNKNOWN00000' }, name: 'UnrecognizedClientException' },
      { overrides: { region: 'eu-west-1' }, name: 'InvalidSignatureException' },
    ]
    for (const { overrides, name } of cases) {
      const client = clientFor(fake, overrides)
      await assert.rejects(client.send(new GetSecretValueCommand({ SecretId: 's' })), (e: any) => {
        assert.equal(e.name, name)
        return true
      })
      client.destroy()
    }
    assert.equal(fake.getSecretValueCount('s'), 0)
    assert.deepEqual(
      fake.rejected.map((r) => r.type),
      cases.map((c) => c.name),
    )
  } finally {
    await fake.close()
  }
})
