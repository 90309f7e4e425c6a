// A `sql.begin` body that catches the error of its lost connection and carries on: the process
// survives, every later `tx` statement rejects with TransactionResolutionUnknownError, and so does
// `begin`; nothing of the transaction commits.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Lab } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa, TransactionResolutionUnknownError } from '../mod.ts'
import { labClientOptions, settle, terminateBackend } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let sql: PostgresHaSql
const uncaught: unknown[] = []
const onUncaught = (error: unknown) => uncaught.push(error)

before(async () => {
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)
  lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  sql = postgresHa(lab.url('cluster'), labClientOptions())
  await sql`create table kv (id int primary key)`
})

after(async () => {
  await sql?.end()
  await lab?.down()
  process.off('uncaughtException', onUncaught)
  process.off('unhandledRejection', onUncaught)
})

const terminate = (pid: number) => terminateBackend(lab.url('cluster'), pid)

/** Terminates backend `pid` while a statement of `scope` runs on it; what that statement failed with. */
async function terminateWhileRunning(
  scope: (strings: TemplateStringsArray) => Promise<unknown>,
  pid: number,
): Promise<unknown> {
  let failed: unknown
  const sleeping = scope`select pg_sleep(5)`.then(
    () => undefined,
    (error: unknown) => {
      failed = error
    },
  )
  await new Promise((r) => setTimeout(r, 200))
  await terminate(pid)
  await sleeping
  return failed
}

for (const how of ['terminated while running', 'terminated while idle'] as const) {
  test(`begin: a body that catches its lost connection (${how}) and goes on — no crash, TransactionResolutionUnknownError`, async () => {
    const later: Array<Awaited<ReturnType<typeof settle>>> = []
    let caught: unknown
    const id = how === 'terminated while running' ? 1 : 10
    // postgres.js rejects `begin` as soon as the connection closes, the body may still be running.
    let bodyDone!: () => void
    const body = new Promise<void>((resolve) => (bodyDone = resolve))
    const result = await settle(
      sql.begin(async (tx) => {
        try {
          await tx`insert into kv values (${id})`
          const [{ pid }] = (await tx`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
          if (how === 'terminated while running') {
            caught = await terminateWhileRunning(tx, pid)
          } else {
            await terminate(pid)
            await new Promise((r) => setTimeout(r, 200))
            caught = await tx`select 1`.then(
              () => undefined,
              (error: unknown) => error,
            )
          }
          // The body ignores the error and carries on, as real code sometimes does.
          later.push(await settle(tx`insert into kv values (${id + 1})`))
          later.push(await settle(tx`select 1`))
        } finally {
          bodyDone()
        }
      }),
    )
    await body
    // Outlive anything postgres.js might still do with the dead connection.
    await new Promise((r) => setTimeout(r, 300))
    assert.deepEqual(uncaught.map(String), [], 'nothing thrown outside the caller')
    assert.ok(caught, 'the body saw an error')
    assert.equal(result.ok, false)
    if (!result.ok)
      assert.ok(result.error instanceof TransactionResolutionUnknownError, `got ${result.error}`)
    for (const r of later) {
      assert.equal(r.ok, false, 'a statement after the loss ran')
      if (!r.ok) assert.ok(r.error instanceof TransactionResolutionUnknownError, `got ${r.error}`)
    }
    assert.equal((await sql`select id from kv where id in (${id}, ${id + 1})`).length, 0)
  })
}

test('begin: a body that outlives its connection never runs a statement in the transaction that reuses it', async () => {
  // One connection: postgres.js reconnects that same connection for the next transaction, which the
  // first body's statements would reach if anything let them through.
  const one = postgresHa(lab.url('cluster'), labClientOptions({ max: 1 }))
  // The bound's timer is cleared once `p` settles: left running, it kept node's test process alive
  // for 10 s after the file's tests were done.
  const within = async <T>(p: Promise<T>, what: string): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within 10 s`)), 10_000)
    })
    try {
      return await Promise.race([p, bound])
    } finally {
      clearTimeout(timer)
    }
  }
  try {
    // Before its first success a client reports a lost connection as it is (nothing to fail over in).
    await one`select 1`
    let resume!: () => void
    const resumed = new Promise<void>((resolve) => (resume = resolve))
    let staleDone!: () => void
    const staleSettled = new Promise<void>((resolve) => (staleDone = resolve))
    const stale: Array<Awaited<ReturnType<typeof settle>>> = []
    let firstPid = 0
    const first = await settle(
      one.begin(async (tx) => {
        try {
          await tx`insert into kv values (30)`
          const [row] = (await tx`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
          firstPid = row.pid
          await terminate(firstPid)
          await resumed
          stale.push(await settle(tx`insert into kv values (31)`))
          stale.push(await settle(tx.savepoint((sp) => sp`insert into kv values (32)`)))
        } finally {
          staleDone()
        }
      }),
    )
    let secondPid = 0
    const second = await settle(
      one.begin(async (tx) => {
        const [row] = (await tx`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
        secondPid = row.pid
        resume()
        await within(staleSettled, 'the first body')
        await tx`insert into kv values (33)`
      }),
    )
    assert.deepEqual(uncaught.map(String), [], 'nothing thrown outside the caller')
    assert.equal(first.ok, false)
    if (!first.ok) assert.ok(first.error instanceof TransactionResolutionUnknownError, `got ${first.error}`)
    assert.ok(second.ok, `the second transaction failed: ${second.ok ? '' : second.error}`)
    assert.notEqual(secondPid, firstPid, 'the second transaction ran on a new session')
    assert.equal(stale.length, 2)
    for (const r of stale) {
      assert.equal(r.ok, false, 'a statement of the lost transaction ran')
      if (!r.ok) assert.ok(r.error instanceof TransactionResolutionUnknownError, `got ${r.error}`)
    }
    const rows = (await sql`select id from kv where id between 30 and 33 order by id`).map((r) => r.id)
    assert.deepEqual(rows, [33])
  } finally {
    await one.end()
  }
})

test('begin: a savepoint body that catches its lost connection and goes on — no crash, TransactionResolutionUnknownError', async () => {
  const later: Array<Awaited<ReturnType<typeof settle>>> = []
  let caught: unknown
  const result = await settle(
    sql.begin(async (tx) => {
      await tx`insert into kv values (40)`
      await tx.savepoint(async (sp) => {
        await sp`insert into kv values (41)`
        const [{ pid }] = (await sp`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
        caught = await terminateWhileRunning(sp, pid)
        // The savepoint's body carries on; so does the transaction's after it.
        later.push(await settle(sp`insert into kv values (42)`))
        later.push(await settle(sp.savepoint((inner) => inner`insert into kv values (43)`)))
      })
      later.push(await settle(tx`insert into kv values (44)`))
    }),
  )
  await new Promise((r) => setTimeout(r, 300))
  assert.deepEqual(uncaught.map(String), [], 'nothing thrown outside the caller')
  assert.ok(caught, 'the savepoint body saw an error')
  assert.equal(result.ok, false)
  if (!result.ok) assert.ok(result.error instanceof TransactionResolutionUnknownError, `got ${result.error}`)
  for (const r of later) {
    assert.equal(r.ok, false, 'a statement after the loss ran')
    if (!r.ok) assert.ok(r.error instanceof TransactionResolutionUnknownError, `got ${r.error}`)
  }
  assert.equal((await sql`select id from kv where id between 40 and 44`).length, 0)
})
