// Writer loss by SIGKILL: idle, mid-statement, mid-transaction, before and after COMMIT.
// One lab for the file; each test brings the killed instance back as a reader before it ends.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Lab } from '../lab/mod.ts'
import {
  FailoverSuccessError,
  type PostgresHaSql,
  postgresHa,
  TransactionResolutionUnknownError,
} from '../mod.ts'
import { eventually, labClientOptions, settle } from './helpers/ha.ts'
import { labAdmins, runningOn } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let sql: PostgresHaSql
let admins: ReturnType<typeof labAdmins>

before(async () => {
  lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 })
  sql = postgresHa(lab.url('cluster'), labClientOptions())
  admins = labAdmins(lab)
  await sql`create table kv (id int primary key, v text)`
})

after(async () => {
  await sql?.end()
  await admins?.end()
  await lab?.down()
})

/** Kills the writer and returns its id; `restore` brings it back as a reader. */
async function killWriter(): Promise<string> {
  const old = (await lab.status()).writer!
  await lab.kill(old)
  return old
}

async function restore(old: string): Promise<void> {
  await lab.start(old)
  await lab.waitForWriter({ timeoutMs: 20_000 })
}

/**
 * Waits until the writer runs `select pg_sleep(5)` (from the client under test): the kill lands
 * mid-statement however slow the machine, not before the statement reached the server.
 */
async function sleepRunsOnWriter(): Promise<void> {
  await runningOn([admins.admin((await lab.status()).writer!)], 'select pg_sleep(5)%')
}

async function writerId(): Promise<string> {
  const [row] =
    await sql`select pg_catalog.aurora_db_instance_identifier() as id, pg_is_in_recovery() as reader`
  assert.equal(row!.reader, false)
  return row!.id as string
}

test('failover: writer killed while idle — the next statement succeeds transparently on the new writer', async () => {
  await sql`insert into kv values (1, 'before')`
  const old = await killWriter()
  // Brought back in finally: a failed assertion must not leave the next tests one instance short.
  try {
    // Give the dead connections time to be noticed as closed, as they would be on an idle app.
    await new Promise((r) => setTimeout(r, 150))
    const [row] = await sql`insert into kv values (2, 'after') returning id`
    assert.equal(row!.id, 2)
    const now = await writerId()
    assert.notEqual(now, old)
    assert.equal((await lab.status()).writer, now)
  } finally {
    await restore(old)
  }
})

test('failover: writer killed mid-statement — FailoverSuccessError, then statements work', async () => {
  const events: string[] = []
  const offs = [
    sql.ha.on('failover', (e) => events.push(`${e.ok}:${e.from?.host}->${e.to?.host}`)),
    sql.ha.on('hostDown', (e) => events.push(`down:${e.host.host}`)),
    sql.ha.on('hostUp', (e) => events.push(`up:${e.host.host}`)),
  ]
  let old = ''
  let restored = false
  try {
    const running = settle(sql`select pg_sleep(5)`)
    await sleepRunsOnWriter()
    old = await killWriter()
    const result = await running
    assert.equal(result.ok, false)
    if (result.ok) return
    assert.ok(result.error instanceof FailoverSuccessError, `got ${result.error}`)
    assert.equal(result.error.code, 'FAILOVER_SUCCESS')
    assert.equal(result.error.fromHost?.split(':')[0], old)
    assert.ok(result.error.cause, 'keeps the original error as cause')
    assert.equal(events.filter((e) => e.startsWith('true:')).length, 1, `one failover: ${events}`)
    assert.ok(events.includes(`down:${old}`), `hostDown for ${old}: ${events}`)
    assert.notEqual(await writerId(), old)
    await restore(old)
    restored = true
    // Back as a reader, the old writer is reported up again.
    await eventually(() => events.includes(`up:${old}`), 5_000, `hostUp for ${old}`)
  } finally {
    if (old && !restored) await restore(old)
    for (const o of offs) o()
  }
})

test('failover: writer killed mid-transaction — TransactionResolutionUnknownError and no partial commit', async () => {
  let old = ''
  try {
    const running = settle(
      sql.begin(async (tx) => {
        await tx`insert into kv values (10, 'tx')`
        await tx`select pg_sleep(5)`
        await tx`insert into kv values (11, 'tx')`
      }),
    )
    await sleepRunsOnWriter()
    old = await killWriter()
    const result = await running
    assert.equal(result.ok, false)
    if (result.ok) return
    assert.ok(result.error instanceof TransactionResolutionUnknownError, `got ${result.error}`)
    assert.equal(result.error.code, 'TRANSACTION_RESOLUTION_UNKNOWN')
    const rows = await sql`select id from kv where id in (10, 11)`
    assert.equal(rows.length, 0, 'nothing of the transaction is visible')
  } finally {
    if (old) await restore(old)
  }
})

test('failover: writer killed before COMMIT — TransactionResolutionUnknownError, nothing committed', async () => {
  let old = ''
  try {
    const result = await settle(
      sql.begin(async (tx) => {
        await tx`insert into kv values (20, 'tx')`
        old = await killWriter()
        await new Promise((r) => setTimeout(r, 100))
      }),
    )
    assert.equal(result.ok, false)
    if (result.ok) return
    assert.ok(result.error instanceof TransactionResolutionUnknownError, `got ${result.error}`)
    assert.equal((await sql`select id from kv where id = 20`).length, 0)
  } finally {
    if (old) await restore(old)
  }
})

test('failover: writer lost after COMMIT was sent — TransactionResolutionUnknownError, all or nothing', async () => {
  let old = ''
  let frozen = false
  let killed: Promise<void> | undefined
  try {
    const result = await settle(
      sql.begin(async (tx) => {
        await tx`insert into kv values (30, 'a')`
        await tx`insert into kv values (31, 'b')`
        old = (await lab.status()).writer!
        // Frozen, the server never answers the COMMIT that follows; then it dies.
        await lab.freeze(old)
        frozen = true
        setTimeout(() => {
          killed = lab.kill(old)
        }, 300)
      }),
    )
    assert.equal(result.ok, false)
    if (result.ok) return
    assert.ok(result.error instanceof TransactionResolutionUnknownError, `got ${result.error}`)
    const rows = await sql`select id from kv where id in (30, 31)`
    assert.ok(rows.length === 0 || rows.length === 2, `partial commit: ${rows.length} of 2 rows`)
  } finally {
    // Brought back once the timer above killed it (starting a frozen instance would not thaw it).
    if (frozen) await eventually(() => killed !== undefined, 5_000, 'the kill of the frozen writer')
    if (killed) {
      await killed
      await restore(old)
    }
  }
})

test('failover: writer killed inside a savepoint — TransactionResolutionUnknownError, the process survives', async () => {
  let old = ''
  try {
    const running = settle(
      sql.begin(async (tx) => {
        await tx`insert into kv values (40, 'outer')`
        await tx.savepoint(async (sp) => {
          await sp`insert into kv values (41, 'inner')`
          await sp`select pg_sleep(5)`
        })
      }),
    )
    await sleepRunsOnWriter()
    old = (await lab.status()).writer!
    await lab.kill(old)
    const result = await running
    assert.equal(result.ok, false)
    if (result.ok) return
    assert.ok(result.error instanceof TransactionResolutionUnknownError, `got ${result.error}`)
    assert.equal((await sql`select id from kv where id in (40, 41)`).length, 0)
    // Outlive postgres.js's would-be ROLLBACK TO SAVEPOINT on the dead socket.
    await new Promise((r) => setTimeout(r, 100))
  } finally {
    if (old) await restore(old)
  }
})
