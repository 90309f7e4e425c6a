// Every connection of a client — its internal ones (topology, probes, monitoring) and its pools' —
// logs in with SCRAM-SHA-256 through one salted-password cache: the synchronous PBKDF2 runs once
// per client, not once per connection (after a failover the writer search's probes and the new
// writer's whole pool connect at once).
import assert from 'node:assert/strict'
import { pbkdf2Sync } from 'node:crypto'
import { after, before, test } from 'node:test'
import {
  classify,
  createConnectionFactory,
  createHostPools,
  parseConnection,
} from '../src/drivers/postgresjs/mod.ts'
import { createSaltedPasswords } from '../src/drivers/postgresjs/salted-passwords.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'

let pg: PgServer
before(async () => {
  pg = await startPgServer()
})
after(async () => {
  await pg?.stop()
})

test('scram once: internal and pool connections of a client derive the salted password once', async () => {
  let derivations = 0
  const salted = createSaltedPasswords((password, salt, iterations) => {
    derivations++
    return pbkdf2Sync(password, salt, iterations, 32, 'sha256')
  })
  const parsed = parseConnection(pg.url, { onnotice: () => {}, max: 5 })
  const host = parsed.hosts[0]!
  const factory = createConnectionFactory({ parsed, salted })
  const pools = createHostPools({
    parsed,
    salted,
    connectHook: async (start, open, timeoutMs) => {
      await open({ user: start.user, password: start.password }, timeoutMs)
    },
  })
  try {
    for (let i = 0; i < 3; i++) {
      const conn = await factory.connect({ host, purpose: 'probe', timeoutMs: 10_000 })
      const [row] = await conn.query<{ who: string }>('select current_user as who', [], { timeoutMs: 10_000 })
      assert.equal(row!.who, pg.user)
      conn.abort()
    }
    assert.equal(derivations, 1, 'three internal logins')

    // Five statements at once on a pool of five: five logins.
    const sql = pools.get(host)
    await Promise.all(Array.from({ length: 5 }, () => sql`select pg_sleep(0.2)`))
    assert.equal(pools.connectionCount(host), 5)
    assert.equal(derivations, 1, 'and five pool logins')

    // Another password is another key: refused by the server, never the cached proof.
    const refused = await factory
      .connect({ host, purpose: 'probe', timeoutMs: 10_000, password: 'not-the-password' })
      .catch((e: unknown) => e)
    assert.equal(classify(refused), 'auth-failed', String(refused))
    assert.equal(derivations, 2)
  } finally {
    await pools.endAll({ timeout: 0 })
  }
  // Ended: forgotten; a later login derives again.
  const conn = await factory.connect({ host, purpose: 'probe', timeoutMs: 10_000 })
  conn.abort()
  assert.equal(derivations, 3)
})
