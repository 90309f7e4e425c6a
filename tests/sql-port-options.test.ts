/**
 * Options are taken as postgres.js takes them: its transform helpers (functions with `column` and
 * `value` properties) and the `{ column: { from, to } }` form, `no_prepare` (postgres.js writes
 * into the options object), a `connect_timeout` with `valueOf` (read once per connect), and values
 * postgres.js only looks at when a statement runs. Unknown names and plainly wrong values are
 * still refused at once.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import postgres from 'postgres'
import { InvalidOptionError, postgresHa } from '../mod.ts'
import { singlePg } from './helpers/single-pg.ts'

const db = singlePg()

// biome-ignore lint/suspicious/noExplicitAny: the options postgres.js takes, including what its types omit
function client(options: Record<string, any> = {}) {
  const sql = postgresHa(db.pg.url, { onnotice: () => {}, max: 1, ...options })
  db.track(sql)
  return sql
}

test('options: transform given as postgres.toCamel, postgres.fromCamel or postgres.camel', async () => {
  const toCamel = client({ transform: postgres.toCamel })
  const [row] = await toCamel`select 1 as some_column`
  assert.deepEqual(Object.keys(row!), ['someColumn'])

  const fromCamel = client({ transform: postgres.fromCamel })
  await fromCamel`create table opt_from (a_b int)`
  await fromCamel`insert into opt_from ${fromCamel([{ aB: 7 }])}`
  const [stored] = await fromCamel`select ${fromCamel('aB')} from opt_from`
  assert.equal(stored!.a_b, 7)

  const camel = client({ transform: postgres.camel })
  const [both] = await camel`select ${camel('aB')} from opt_from`
  assert.equal(both!.aB, 7)
  await camel`drop table opt_from`
})

test('options: transform given as { column: { from, to } } and as plain functions per part', async () => {
  const sql = client({ transform: { column: { from: postgres.toCamel, to: postgres.fromCamel } } })
  await sql`create table opt_cols (first_name text)`
  await sql`insert into opt_cols ${sql({ firstName: 'Ada' })}`
  const [row] = await sql`select * from opt_cols`
  assert.equal(row!.firstName, 'Ada')
  await sql`drop table opt_cols`

  const rows = client({ transform: { row: (r: Record<string, unknown>) => Object.values(r).join('+') } })
  assert.equal((await rows`select 1 as a, 2 as b`)[0], '1+2')
})

test('options: no_prepare works on an options object postgres-ha froze nothing of', async () => {
  const sql = client({ no_prepare: true })
  await sql`select ${1}::int as x`
  const prepared = await sql`select count(*)::int as n from pg_prepared_statements`
  assert.equal(prepared[0]!.n, 0)
  const prepares = client({ prepare: true })
  await prepares`select ${1}::int as x`
  assert.ok((await prepares`select count(*)::int as n from pg_prepared_statements`)[0]!.n > 0)
})

test('options: connect_timeout with valueOf is read once per connect, as postgres.js reads it', async () => {
  let reads = 0
  const sql = client({
    connect_timeout: {
      valueOf() {
        reads++
        // The first connect gets no time at all; later ones a second.
        return reads === 1 ? 0.0001 : 1
      },
    },
  })
  const first = await sql`select 1 as x`.then(
    () => 'ran',
    (e: { code?: string }) => e.code,
  )
  assert.equal(first, 'CONNECT_TIMEOUT')
  assert.equal((await sql`select 1 as x`)[0]!.x, 1)
})

test('options: a value postgres.js only reads when it connects fails the statement, not postgresHa()', async () => {
  const sql = client({
    user: {
      toString() {
        throw new Error('no user today')
      },
    },
  })
  const message = await sql`select 1`.catch((e: Error) => e.message)
  assert.equal(message, 'no user today')
})

test('options: timeouts as numeric strings and functions, as postgres.js takes them', async () => {
  const sql = client({ idle_timeout: '1', connect_timeout: () => 2, max_lifetime: () => 60 })
  assert.equal((await sql`select 1 as x`)[0]!.x, 1)
})

test('options: unknown names and plainly wrong values are still refused, naming the option', () => {
  assert.throws(
    () => postgresHa(db.pg.url, { conect_timeout: 1 } as never),
    (e: unknown) => e instanceof InvalidOptionError && /did you mean connect_timeout/.test(e.message),
  )
  assert.throws(
    () => postgresHa(db.pg.url, { connect_timeout: {} } as never),
    (e: unknown) => e instanceof InvalidOptionError && e.option === 'connect_timeout',
  )
  assert.throws(
    () => postgresHa(db.pg.url, { transform: 5 } as never),
    (e: unknown) => e instanceof InvalidOptionError && e.option === 'transform',
  )
})
