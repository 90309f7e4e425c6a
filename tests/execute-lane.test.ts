/**
 * The statement fast path (src/core/execute-lane.ts) never goes around a plugin: a plugin with an
 * `execute` hook of its own (one without a lane) sees every statement and transaction, before and
 * after the client connected, and what it does to them holds; with the built-in plugins alone the
 * same statements run on the lane with the same results.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type HaPlugin, postgresHa } from '../mod.ts'
import { singlePg } from './helpers/single-pg.ts'

const db = singlePg()

test('execute lane: a plugin with its own execute hook sees every statement and transaction', async () => {
  const kinds: string[] = []
  const counting: HaPlugin = {
    name: 'counting',
    execute(ctx, next) {
      kinds.push(ctx.kind)
      return next()
    },
  }
  const sql = db.track(
    postgresHa(db.pg.url, {
      onnotice: () => {},
      plugins: [counting, 'connectionTracker', 'failover', 'hostMonitoring'],
    }),
  )
  await sql`select 1`
  kinds.length = 0
  for (let i = 0; i < 5; i++) await sql`select ${i}::int as x`
  await Promise.all([1, 2, 3].map((i) => sql`select ${i}::int as x`))
  await sql.begin((tx) => tx`select 1`)
  assert.deepEqual(kinds, [...Array(8).fill('statement'), 'transaction'])
})

test('execute lane: what a plugin without a lane does to a statement holds', async () => {
  const refusing: HaPlugin = {
    name: 'refusing',
    execute(ctx, next) {
      if (ctx.description.includes('refuse_me')) return Promise.reject(new Error('refused by the plugin'))
      return next()
    },
  }
  const sql = db.track(postgresHa(db.pg.url, { onnotice: () => {}, plugins: [refusing, 'failover'] }))
  await sql`select 1`
  await assert.rejects(sql`select 1 as refuse_me`, /refused by the plugin/)
  assert.deepEqual([...(await sql`select 2 as x`)], [{ x: 2 }])
})

test('execute lane: with the built-in plugins, statements, errors and transactions behave as on the chain', async () => {
  const sql = db.track(postgresHa(db.pg.url, { onnotice: () => {} }))
  await sql`select 1`
  const rows = await Promise.all([1, 2, 3].map((i) => sql`select ${i}::int as x`))
  assert.deepEqual(
    rows.map((r) => r[0]!.x),
    [1, 2, 3],
  )
  const error = await sql`select nope`.catch((e: unknown) => e)
  assert.equal((error as { code?: string }).code, '42703')
  // postgres.js appends the caller's frame to a failed statement's stack.
  assert.match((error as Error).stack ?? '', /execute-lane\.test\.ts/)
  assert.equal(await sql.begin(async (tx) => (await tx`select 7 as x`)[0]!.x), 7)
  await assert.rejects(
    sql.begin(async (tx) => {
      await tx`select 1`
      throw new Error('rolled back')
    }),
    /rolled back/,
  )
})
