// No plugin runs a statement twice once it may have reached the server: a server-raised error
// that looks like a refused login (SQLSTATE 28000 from PL/pgSQL) reaches the caller once.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type SecretsManagerFake, startSecretsManagerFake } from '../lab/aws/secrets-manager-fake.ts'
import { postgresHa } from '../mod.ts'
import { settle } from './helpers/ha.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'

let pg: PgServer
let fake: SecretsManagerFake

before(async () => {
  // Each kept as soon as it is up, and both waited for: one that fails to start must not leave
  // the other running unseen by the after hook (the fake's open server kept node from exiting).
  const started = await Promise.allSettled([
    startPgServer().then((s) => (pg = s)),
    startSecretsManagerFake().then((f) => (fake = f)),
  ])
  for (const s of started) if (s.status === 'rejected') throw s.reason
  fake.setSecret('app/db', { username: pg.user, password: pg.password, engine: 'postgres' })
})

after(async () => {
  await Promise.all([pg?.stop(), fake?.close()])
})

test('secretsManager: a 28000 raised by the server after the statement was sent reaches the caller once, unretried', async () => {
  const url = new URL(pg.url)
  url.password = ''
  const sql = postgresHa(url.toString(), {
    plugins: 'connectionTracker,failover,hostMonitoring,secretsManager',
    secretsManagerSecretId: 'app/db',
    secretsManagerRegion: fake.region,
    secretsManagerEndpoint: fake.endpoint,
    credentials: fake.credentials,
    connectTimeoutMs: 5_000,
  } as Record<string, unknown>)
  try {
    // A sequence counts calls: nextval is not rolled back with the statement that raised.
    await sql.unsafe(`
      create sequence calls;
      create function guarded() returns void language plpgsql as $$
      begin
        perform nextval('calls');
        raise exception 'not allowed here' using errcode = '28000';
      end $$;
    `)
    const reads = fake.getSecretValueCount('app/db')
    const result = await settle(sql`select guarded()`)
    assert.equal(result.ok, false)
    if (!result.ok) assert.equal(result.error.code, '28000', `got ${result.error}`)
    const [{ n }] = (await sql`select last_value as n from calls`) as unknown as [{ n: string }]
    assert.equal(Number(n), 1, 'the function ran more than once')
    assert.equal(
      fake.getSecretValueCount('app/db') - reads,
      0,
      'the secret was read again for a statement error',
    )
  } finally {
    await sql.end()
  }
})
