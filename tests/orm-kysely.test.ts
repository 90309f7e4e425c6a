import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type Generated, Kysely, sql as ksql } from 'kysely'
import { PostgresJSDialect } from 'kysely-postgres-js'
import type { HaSql } from '../src/drivers/postgresjs/mod.ts'
import { driverClient } from './helpers/passthrough.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'

interface Database {
  kysely_pets: { id: Generated<number>; name: string; species: string }
}

let pg: PgServer
let sql: HaSql
let executor: ReturnType<typeof driverClient>['executor']
let db: Kysely<Database>
before(async () => {
  pg = await startPgServer()
  ;({ sql, executor } = driverClient(pg.url))
  db = new Kysely<Database>({ dialect: new PostgresJSDialect({ postgres: sql }) })
  await db.schema
    .createTable('kysely_pets')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('species', 'text', (c) => c.notNull())
    .execute()
})
after(async () => {
  await db?.destroy()
  await sql?.end({ timeout: 0 })
  await pg?.stop()
})

test('orm: kysely runs queries through the sql (on reserved connections)', async () => {
  const inserted = await db
    .insertInto('kysely_pets')
    .values([
      { name: 'rex', species: 'dog' },
      { name: 'tom', species: 'cat' },
    ])
    .returning(['id', 'name'])
    .execute()
  assert.equal(inserted.length, 2)
  const cats = await db.selectFrom('kysely_pets').selectAll().where('species', '=', 'cat').execute()
  assert.deepEqual(
    cats.map((c) => c.name),
    ['tom'],
  )
  const result = await db
    .updateTable('kysely_pets')
    .set({ species: 'wolf' })
    .where('name', '=', 'rex')
    .executeTakeFirst()
  assert.equal(result.numUpdatedRows, 1n)
  const { rows } = await ksql<{ n: number }>`select count(*)::int as n from kysely_pets`.execute(db)
  assert.equal(rows[0]!.n, 2)
  assert.ok(executor.log.some((e) => e.request.kind === 'reserved'))
})

test('orm: kysely transactions commit and roll back; the reserved connection reports them', async () => {
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('kysely_pets').values({ name: 'nemo', species: 'fish' }).execute()
  })
  await db
    .transaction()
    .execute(async (trx) => {
      await trx.insertInto('kysely_pets').values({ name: 'ghost', species: 'cat' }).execute()
      throw new Error('abort')
    })
    .catch(() => {})
  const names = (await db.selectFrom('kysely_pets').select('name').orderBy('name').execute()).map(
    (r) => r.name,
  )
  assert.deepEqual(names, ['nemo', 'rex', 'tom'])
  const inTx = executor.log.filter((e) => e.request.kind === 'reserved' && e.request.inTransaction)
  assert.ok(inTx.some((e) => /insert into "kysely_pets"/.test(e.request.description!)))
})

test('orm: kysely streams with a cursor through a reserved connection', async () => {
  const seen: string[] = []
  for await (const row of db.selectFrom('kysely_pets').select('name').orderBy('name').stream(1))
    seen.push(row.name)
  assert.deepEqual(seen, ['nemo', 'rex', 'tom'])
})
