// Drizzle and Kysely through postgresHa() on a real cluster, across a failover: the ORMs take the
// sql as it is, and after a writer loss they keep working on the new writer.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { eq } from 'drizzle-orm'
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core'
import { drizzle } from 'drizzle-orm/postgres-js'
import { type Generated, Kysely } from 'kysely'
import { PostgresJSDialect } from 'kysely-postgres-js'
import type { Lab } from '../lab/mod.ts'
import { FailoverSuccessError, haErrorOf, type PostgresHaSql, postgresHa } from '../mod.ts'
import { labClientOptions } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const items = pgTable('orm_items', {
  id: serial('id').primaryKey(),
  name: text('name').notNull(),
  qty: integer('qty').notNull(),
})

interface Database {
  orm_items: { id: Generated<number>; name: string; qty: number }
}

let lab: Lab
let sql: PostgresHaSql

before(async () => {
  lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 60_000 })
  sql = postgresHa(lab.url('cluster'), labClientOptions())
  await sql`create table orm_items (id serial primary key, name text not null, qty int not null)`
})

after(async () => {
  await sql?.end()
  await lab?.down()
})

/** Kills the writer, waits for the new one, and brings the old one back as a reader. */
async function failover(): Promise<void> {
  const old = (await lab.status()).writer!
  await lab.kill(old)
  await lab.waitForWriter({ timeoutMs: 20_000 })
  await lab.start(old)
  await lab.waitForWriter({ timeoutMs: 20_000 })
}

/** Runs `work`; a FailoverSuccessError (possibly wrapped by the ORM) means "re-run", as the README says. */
async function rerunOnFailover<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    assert.ok(haErrorOf(error) instanceof FailoverSuccessError, `unexpected ${error}`)
    return work()
  }
}

test('orm-lab: drizzle runs queries and transactions through postgresHa, before and after a failover', async () => {
  const db = drizzle(sql)
  await db.insert(items).values({ name: 'before', qty: 1 })
  await db.transaction(async (tx) => {
    await tx.insert(items).values({ name: 'tx', qty: 2 })
    await tx.update(items).set({ qty: 3 }).where(eq(items.name, 'tx'))
  })
  await failover()
  await rerunOnFailover(() => db.insert(items).values({ name: 'after', qty: 4 }))
  await db.transaction(async (tx) => {
    await tx.update(items).set({ qty: 5 }).where(eq(items.name, 'after'))
  })
  const rows = await db.select().from(items).orderBy(items.id)
  assert.deepEqual(
    rows.map((r) => [r.name, r.qty]),
    [
      ['before', 1],
      ['tx', 3],
      ['after', 5],
    ],
  )
  const rolledBack = await db
    .transaction(async (tx) => {
      await tx.insert(items).values({ name: 'never', qty: 0 })
      tx.rollback()
    })
    .catch((e) => e)
  assert.ok(rolledBack instanceof Error)
  assert.equal((await db.select().from(items).where(eq(items.name, 'never'))).length, 0)
})

test('orm-lab: kysely runs queries and transactions through postgresHa, before and after a failover', async () => {
  const db = new Kysely<Database>({ dialect: new PostgresJSDialect({ postgres: sql }) })
  await db.insertInto('orm_items').values({ name: 'k-before', qty: 10 }).execute()
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('orm_items').values({ name: 'k-tx', qty: 11 }).execute()
  })
  await failover()
  await rerunOnFailover(() => db.insertInto('orm_items').values({ name: 'k-after', qty: 12 }).execute())
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('orm_items').set({ qty: 13 }).where('name', '=', 'k-after').execute()
  })
  const rows = await db
    .selectFrom('orm_items')
    .select(['name', 'qty'])
    .where('name', 'like', 'k-%')
    .orderBy('id')
    .execute()
  assert.deepEqual(rows, [
    { name: 'k-before', qty: 10 },
    { name: 'k-tx', qty: 11 },
    { name: 'k-after', qty: 13 },
  ])
  // Kysely's dialect does not own the sql: destroying it must leave the client usable.
  await db.destroy().catch(() => {})
})
