import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { sql as dsql, eq } from 'drizzle-orm'
import { integer, jsonb, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core'
import { drizzle } from 'drizzle-orm/postgres-js'
import type { HaSql } from '../src/drivers/postgresjs/mod.ts'
import { driverClient } from './helpers/passthrough.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'

const users = pgTable('drizzle_users', {
  id: serial('id').primaryKey(),
  name: text('name').notNull(),
  age: integer('age'),
  meta: jsonb('meta').$type<{ tags: string[] }>(),
  createdAt: timestamp('created_at', { withTimezone: true }).defaultNow().notNull(),
})

let pg: PgServer
let sql: HaSql
let executor: ReturnType<typeof driverClient>['executor']
before(async () => {
  pg = await startPgServer()
  ;({ sql, executor } = driverClient(pg.url))
  await sql`create table drizzle_users (
    id serial primary key, name text not null, age int, meta jsonb,
    created_at timestamptz not null default now())`
})
after(async () => {
  await sql?.end({ timeout: 0 })
  await pg?.stop()
})

test('orm: drizzle accepts the sql and inserts and selects through it', async () => {
  const db = drizzle(sql)
  const inserted = await db
    .insert(users)
    .values([
      { name: 'ada', age: 36, meta: { tags: ['math'] } },
      { name: 'alan', age: 41 },
    ])
    .returning()
  assert.equal(inserted.length, 2)
  assert.ok(inserted[0]!.createdAt instanceof Date)
  const rows = await db.select().from(users).where(eq(users.name, 'ada'))
  assert.equal(rows.length, 1)
  assert.deepEqual(rows[0]!.meta, { tags: ['math'] })
  assert.ok(rows[0]!.createdAt instanceof Date)
  const [{ n }] = (await db.execute<{ n: number }>(
    dsql`select count(*)::int as n from drizzle_users`,
  )) as unknown as [{ n: number }]
  assert.equal(n, 2)
  assert.ok(
    executor.log.some((e) => e.request.kind === 'statement' && /drizzle_users/.test(e.request.description!)),
  )
})

test('orm: drizzle transactions commit, roll back and nest through sql.begin', async () => {
  const db = drizzle(sql)
  await db.transaction(async (tx) => {
    await tx.insert(users).values({ name: 'grace', age: 85 })
    await tx
      .transaction(async (inner) => {
        await inner.insert(users).values({ name: 'nested-rolled-back' })
        inner.rollback()
      })
      .catch(() => {})
  })
  await db
    .transaction(async (tx) => {
      await tx.insert(users).values({ name: 'never' })
      throw new Error('abort')
    })
    .catch(() => {})
  const names = (await db.select({ name: users.name }).from(users)).map((r) => r.name).sort()
  assert.deepEqual(names, ['ada', 'alan', 'grace'])
  assert.equal(executor.log.filter((e) => e.request.kind === 'transaction').length, 2)
})

test('orm: drizzle wrote its parsers into sql.options, seen by every host pool', async () => {
  // Drizzle makes timestamps raw strings at the driver level and parses them itself.
  const [row] = await sql`select now() as t`
  assert.equal(typeof row!.t, 'string')
})
