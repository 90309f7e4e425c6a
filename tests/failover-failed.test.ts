// When no writer can be found, FailoverFailedError alone is only for work that provably never
// reached a server; a sent statement says it may have run, a transaction's fate stays unknown.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FailoverFailedError, postgresHa, TransactionResolutionUnknownError } from '../mod.ts'
import { eventually, labClientOptions, settle } from './helpers/ha.ts'
import { labAdmins } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('failover failed: sent statement says it may have run, transactions are unknown, unsent work is FailoverFailedError', async () => {
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ failoverTimeoutMs: 1_500 }))
  const admins = labAdmins(lab)
  try {
    await sql`create table kv (id int primary key)`
    const reserved = await sql.reserve()
    await reserved`begin`
    await reserved`insert into kv values (3)`
    const statement = settle(sql`select pg_sleep(5)`)
    const transaction = settle(
      sql.begin(async (tx) => {
        await tx`insert into kv values (1)`
        await tx`select pg_sleep(5)`
      }),
    )
    const inReserved = settle(reserved`select pg_sleep(5)`)
    // All three run on the writer before every host dies (the statement and the transaction may
    // need new connections first, which a busy machine does not log in within a fixed pause).
    const writer = admins.admin((await lab.status()).writer!)
    await eventually(
      async () =>
        (
          await writer`select 1 from pg_stat_activity where state = 'active'
          and query = 'select pg_sleep(5)' and pid <> pg_backend_pid()`
        ).length === 3,
      10_000,
      'the three statements running on the writer',
    )
    const ids = (await lab.status()).nodes.map((n) => n.id)
    await Promise.all(ids.map((id) => lab.kill(id)))

    const sent = await statement
    assert.equal(sent.ok, false)
    if (!sent.ok) {
      assert.ok(sent.error instanceof FailoverFailedError, `got ${sent.error}`)
      assert.equal(sent.error.mayHaveRun, true, 'a sent statement may have run')
      assert.match(sent.error.message, /may have run/)
    }
    for (const r of [await transaction, await inReserved]) {
      assert.equal(r.ok, false)
      if (r.ok) continue
      assert.ok(r.error instanceof TransactionResolutionUnknownError, `got ${r.error}`)
      assert.ok(r.error.cause instanceof FailoverFailedError, `cause: ${r.error.cause}`)
    }
    // Made while every host is down: it never reaches a server.
    const unsent = await settle(sql`select 1`)
    assert.equal(unsent.ok, false)
    if (!unsent.ok) {
      assert.ok(unsent.error instanceof FailoverFailedError, `got ${unsent.error}`)
      assert.equal(unsent.error.mayHaveRun, false)
    }
    reserved.release()
  } finally {
    await sql.end({ timeout: 1 })
    await admins.end()
  }
})
