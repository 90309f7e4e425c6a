// A write refused with 25006 because the caller asked for read-only work is the caller's error,
// not a demoted writer: no failover, no writer search, the PostgresError as it is.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Lab } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { labClientOptions, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let sql: PostgresHaSql
const events: string[] = []

before(async () => {
  lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  sql = postgresHa(lab.url('cluster'), labClientOptions())
  for (const name of ['failoverStart', 'failover', 'hostDown', 'writerChanged'] as const)
    sql.ha.on(name, () => events.push(name))
  await sql`create table kv (id int primary key)`
})

after(async () => {
  await sql?.end()
  await lab?.down()
})

/** The error is PostgreSQL's 25006 itself, and nothing of failover happened. */
function assertCallersError(r: Awaited<ReturnType<typeof settle>>): void {
  assert.equal(r.ok, false)
  if (r.ok) return
  assert.equal(r.error.code, '25006', `got ${r.error}`)
  assert.equal(r.error.name, 'PostgresError', `got ${r.error?.name}`)
  assert.deepEqual(events, [], 'no failover for a read-only transaction the caller asked for')
}

test("read only: a write inside sql.begin('read only') is the caller's 25006 — no failover", async () => {
  events.length = 0
  assertCallersError(await settle(sql.begin('read only', (tx) => tx`insert into kv values (1)`)))
  // The client still writes where it did.
  await sql`insert into kv values (2)`
})

test("read only: a write after SET TRANSACTION READ ONLY is the caller's 25006 — no failover", async () => {
  events.length = 0
  assertCallersError(
    await settle(
      sql.begin(async (tx) => {
        await tx`set transaction read only`
        await tx`insert into kv values (3)`
      }),
    ),
  )
})

test("read only: a write on a reader client is the caller's 25006 — no failover, no writer search", async () => {
  const reader = postgresHa(lab.url('cluster'), labClientOptions({ targetRole: 'reader' }))
  const seen: string[] = []
  for (const name of ['failoverStart', 'failover', 'hostDown', 'writerChanged'] as const)
    reader.ha.on(name, () => seen.push(name))
  try {
    await reader`select 1`
    const r = await settle(reader`insert into kv values (4)`)
    assert.equal(r.ok, false)
    if (!r.ok) {
      assert.equal(r.error.code, '25006', `got ${r.error}`)
      assert.equal(r.error.name, 'PostgresError', `got ${r.error?.name}`)
    }
    const t = await settle(reader.begin((tx) => tx`insert into kv values (5)`))
    assert.equal(t.ok, false)
    if (!t.ok) assert.equal(t.error.code, '25006', `got ${t.error}`)
    assert.deepEqual(seen, [])
  } finally {
    await reader.end()
  }
})
