// A reserved connection (`sql.reserve()`) that loses its connection: nothing of an open transaction
// may commit afterwards, and the reservation leaves a dead or demoted host after at most one error.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import { type Lab, nowMs } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa, TransactionResolutionUnknownError } from '../mod.ts'
import { eventually, labClientOptions, settle } from './helpers/ha.ts'
import { labAdmins, runningOn } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const instanceId = 'select pg_catalog.aurora_db_instance_identifier() as id, pg_is_in_recovery() as reader'

let lab: Lab
let sql: PostgresHaSql

before(async () => {
  lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 })
  sql = postgresHa(lab.url('cluster'), labClientOptions())
  await sql`create table kv (id int primary key)`
})

after(async () => {
  await sql?.end()
  await lab?.down()
})

/** Brings a killed instance back (as a reader) and waits for a settled cluster. */
async function restore(old: string): Promise<void> {
  if ((await lab.status()).nodes.find((n) => n.id === old)?.state !== 'running') await lab.start(old)
  await lab.waitForWriter({ timeoutMs: 20_000 })
}

type Reserved = Awaited<ReturnType<PostgresHaSql['reserve']>>

/** The statements after the loss reject with TransactionResolutionUnknownError until the caller ends the transaction. */
async function assertLostTransaction(reserved: Reserved, ids: number[], end: 'commit' | 'rollback') {
  for (const id of ids) {
    const r = await settle(reserved`insert into kv values (${id})`)
    assert.equal(r.ok, false, `insert ${id} after the loss must not run (it would commit on its own)`)
    if (!r.ok) assert.ok(r.error instanceof TransactionResolutionUnknownError, `insert ${id}: got ${r.error}`)
  }
  const closing = await settle(end === 'commit' ? reserved`commit` : reserved`rollback`)
  if (end === 'commit') {
    assert.equal(closing.ok, false, 'commit after the loss must reject')
    if (!closing.ok) assert.ok(closing.error instanceof TransactionResolutionUnknownError, `${closing.error}`)
  } else
    assert.equal(
      closing.ok,
      true,
      `rollback after the loss ends the transaction: ${!closing.ok && closing.error}`,
    )
  // The transaction is over: the reservation works again, in autocommit.
  const [row] = await reserved`select 1 as one`
  assert.equal(row!.one, 1)
}

test('reserve: backend terminated inside a transaction — every later statement rejects, commit rejects, nothing commits', async () => {
  const reserved = await sql.reserve()
  try {
    const [{ pid }] = (await reserved`select pg_backend_pid() as pid`) as unknown as Array<{ pid: number }>
    await reserved`begin`
    await reserved`insert into kv values (1)`
    const admin = postgres(lab.url('cluster'), { max: 1, onnotice: () => {} })
    await admin`select pg_terminate_backend(${pid})`
    await admin.end()
    await assertLostTransaction(reserved, [2, 3], 'commit')
  } finally {
    reserved.release()
  }
  assert.equal(
    (await sql`select id from kv where id between 1 and 3`).length,
    0,
    'nothing of the transaction',
  )
})

test('reserve: idle_in_transaction_session_timeout — later statements reject until rollback, nothing commits', async () => {
  const reserved = await sql.reserve()
  try {
    await reserved`set idle_in_transaction_session_timeout = 100`
    await reserved`begin`
    await reserved`insert into kv values (11)`
    await new Promise((r) => setTimeout(r, 600))
    await assertLostTransaction(reserved, [12, 13], 'rollback')
  } finally {
    reserved.release()
  }
  assert.equal(
    (await sql`select id from kv where id between 11 and 13`).length,
    0,
    'nothing of the transaction',
  )
})

test('reserve: writer killed mid-statement inside a transaction — TransactionResolutionUnknownError, then nothing commits', async () => {
  const reserved = await sql.reserve()
  const old = (await lab.status()).writer!
  try {
    await reserved`begin`
    await reserved`insert into kv values (21)`
    const running = settle(reserved`select pg_sleep(5)`)
    // Killed once the statement runs on the writer, not after a fixed pause.
    const admins = labAdmins(lab)
    try {
      await runningOn([admins.admin(old)], 'select pg_sleep(5)')
    } finally {
      await admins.end()
    }
    await lab.kill(old)
    const first = await running
    assert.equal(first.ok, false)
    if (!first.ok) assert.ok(first.error instanceof TransactionResolutionUnknownError, `got ${first.error}`)
    await assertLostTransaction(reserved, [22, 23], 'commit')
    const [row] = (await reserved.unsafe(instanceId)) as unknown as Array<{ id: string; reader: boolean }>
    assert.notEqual(row!.id, old, 'the reservation moved to the new writer')
    assert.equal(row!.reader, false)
    assert.equal(
      (await sql`select id from kv where id between 21 and 23`).length,
      0,
      'nothing of the transaction',
    )
  } finally {
    reserved.release()
    await restore(old)
  }
})

test('reserve: its host killed while idle — after at most one error, statements run on the new writer', async () => {
  const reserved = await sql.reserve()
  const old = (await lab.status()).writer!
  try {
    await reserved`select 1`
    await lab.kill(old)
    await new Promise((r) => setTimeout(r, 150))
    const errors: unknown[] = []
    const answers: Array<{ id: string; reader: boolean }> = []
    for (let i = 0; i < 4; i++) {
      const r = await settle(
        reserved.unsafe(instanceId) as unknown as Promise<Array<{ id: string; reader: boolean }>>,
      )
      if (r.ok) answers.push(r.value[0]!)
      else errors.push(r.error)
    }
    assert.ok(errors.length <= 1, `${errors.length} errors: ${errors.map(String).join('; ')}`)
    for (const a of answers) {
      assert.notEqual(a.id, old)
      assert.equal(a.reader, false)
    }
  } finally {
    reserved.release()
    await restore(old)
  }
})

test('reserve: its writer switched over and rejoined as a reader — the reservation follows the writer, not the replica', async () => {
  // Quick topology polling (its own monitor: a shared one keeps its first client's interval), so
  // that the client itself learns of the new writer soon.
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({ topologyRefreshMs: 500, clusterId: 'reserve-switchover' }),
  )
  const reserved = await sql.reserve()
  try {
    const [{ id: old, reader }] = (await reserved.unsafe(instanceId)) as unknown as Array<{
      id: string
      reader: boolean
    }>
    assert.equal(reader, false)
    const before = nowMs()
    await lab.switchover()
    await lab.waitForEvent('reader-rejoined', { afterMs: before, node: old, timeoutMs: 30_000 })
    await lab.waitForWriter({ timeoutMs: 20_000 })
    // The client itself has learnt the new writer.
    await eventually(
      async () => {
        const r = await settle(
          sql.unsafe(instanceId) as unknown as Promise<Array<{ id: string; reader: boolean }>>,
        )
        return r.ok && r.value[0]!.id !== old && r.value[0]!.reader === false
      },
      20_000,
      'the client to use the new writer',
    )
    const errors: unknown[] = []
    const answers: Array<{ id: string; reader: boolean }> = []
    for (let i = 0; i < 3; i++) {
      const r = await settle(
        reserved.unsafe(instanceId) as unknown as Promise<Array<{ id: string; reader: boolean }>>,
      )
      if (r.ok) answers.push(r.value[0]!)
      else errors.push(r.error)
    }
    assert.ok(errors.length <= 1, `${errors.length} errors: ${errors.map(String).join('; ')}`)
    for (const a of answers) {
      assert.notEqual(a.id, old, 'read from the demoted writer, now a replica')
      assert.equal(a.reader, false)
    }
  } finally {
    reserved.release()
    await sql.end()
  }
})
