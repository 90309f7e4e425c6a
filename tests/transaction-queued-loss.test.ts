// A transaction body that makes more statements at once than postgres.js pipelines on its
// connection (`max_pipeline`, 100): postgres.js keeps the rest in the transaction's own queue and
// hands them to the connection one by one as it frees. When the connection is lost, postgres.js
// rejects those it sent, but never those still in that queue: a body awaiting them all
// (`Promise.allSettled`) waited forever. Each of them rejects with TransactionResolutionUnknownError
// (it never reached a server), none reaches a connection, and nothing of the transaction commits.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type postgres from 'postgres'
import { TransactionResolutionUnknownError } from '../mod.ts'
import { describeCrashes } from './helpers/crash-watch.ts'
import { sleeping, within } from './helpers/ha.ts'
import { beginLosing, lossLab } from './helpers/loss-lab.ts'

const t = lossLab('queued_loss')
const { table, crashes } = t
/** More than postgres.js's `max_pipeline` (100): the rest wait in the transaction's queue. */
const STATEMENTS = 250

type Scope = postgres.TransactionSql

for (const where of ['transaction', 'savepoint'] as const) {
  const base = where === 'transaction' ? 0 : 1000
  test(`begin: ${STATEMENTS} statements at once in a ${where}, the connection lost — each settles, those postgres.js queued with TransactionResolutionUnknownError`, async () => {
    const seen = crashes.seen.length
    let outcomes: PromiseSettledResult<unknown>[] | undefined
    const result = await beginLosing(t.sql, where, async (scope: Scope) => {
      const [{ pid }] = (await scope`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
      const statements: Promise<unknown>[] = [scope`select pg_sleep(10)`]
      for (let i = 1; i < STATEMENTS; i++)
        statements.push(scope`insert into ${scope(table)} values (${base + i})`)
      const all = Promise.allSettled(statements)
      await sleeping(t.admin, pid)
      await t.admin`select pg_terminate_backend(${pid})`
      outcomes = await within(all, `the ${STATEMENTS} statements`)
    })
    assert.equal(describeCrashes(crashes.seen.slice(seen)), '', 'nothing thrown outside the caller')
    assert.ok(outcomes, 'the statements never settled')
    assert.deepEqual(
      outcomes.filter((o) => o.status === 'fulfilled'),
      [],
      'a statement of the lost transaction resolved',
    )
    const refused = outcomes.filter(
      (o) => o.status === 'rejected' && o.reason instanceof TransactionResolutionUnknownError,
    ).length
    // Those postgres.js had sent reject with its connection error; at least the queued rest are refused.
    assert.ok(refused >= STATEMENTS - 100, `only ${refused} rejected with TransactionResolutionUnknownError`)
    assert.equal(result.ok, false)
    if (!result.ok)
      assert.ok(result.error instanceof TransactionResolutionUnknownError, `got ${result.error}`)
    const rows =
      await t.admin`select count(*)::int as n from ${t.admin(table)} where id between ${base} and ${base + 999}`
    assert.equal(rows[0].n, 0, 'a statement of the lost transaction committed')
    assert.deepEqual([...(await t.sql`select 1 as x`)], [{ x: 1 }], 'the sql works afterwards')
  })
}
