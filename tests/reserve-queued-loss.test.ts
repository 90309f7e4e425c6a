// A reserved connection (`sql.reserve()`) given more statements at once than postgres.js pipelines
// on its connection: postgres.js keeps the rest in the reservation's own queue and hands them to
// the connection one by one as it frees. When the connection is lost, postgres.js rejects those it
// sent, but never those still in that queue: a caller awaiting them all (`Promise.allSettled`)
// waited forever. Each of them now rejects — inside a transaction with
// TransactionResolutionUnknownError, as every other statement of the lost transaction; outside one
// with the connection error the statements in flight got — none of them runs anywhere (not on the
// new connection the reservation opens next), and the reservation and the client go on.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { TransactionResolutionUnknownError } from '../mod.ts'
import { describeCrashes } from './helpers/crash-watch.ts'
import { settle, sleeping, within } from './helpers/ha.ts'
import { lossLab } from './helpers/loss-lab.ts'

const t = lossLab('reserve_queued')
const { table, crashes } = t
/** More than postgres.js's `max_pipeline` (100): the rest wait in the reservation's queue. */
const STATEMENTS = 250

const errorOf = (o: PromiseSettledResult<unknown>) => (o.status === 'rejected' ? o.reason : undefined)

for (const where of ['autocommit', 'transaction'] as const) {
  const base = where === 'autocommit' ? 0 : 1000
  test(`reserve: ${STATEMENTS} statements at once (${where}), the connection terminated — each settles, none runs, the reservation goes on`, async () => {
    const seen = crashes.seen.length
    const r = await t.sql.reserve()
    let released = false
    try {
      const [{ pid }] = (await r`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
      if (where === 'transaction') await r`begin`
      const statements: Promise<unknown>[] = [r`select pg_sleep(10)`]
      for (let i = 1; i < STATEMENTS; i++) statements.push(r`insert into ${r(table)} values (${base + i})`)
      const all = Promise.allSettled(statements)
      await sleeping(t.admin, pid)
      await t.admin`select pg_terminate_backend(${pid})`
      const outcomes = await within(all, `the ${STATEMENTS} statements`)
      // Outlive anything postgres.js might still do with the dead connection.
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.equal(describeCrashes(crashes.seen.slice(seen)), '', 'nothing thrown outside the caller')
      assert.deepEqual(
        outcomes.filter((o) => o.status === 'fulfilled'),
        [],
        'a statement of the lost connection resolved',
      )
      if (where === 'transaction') {
        const other = outcomes.map(errorOf).filter((e) => !(e instanceof TransactionResolutionUnknownError))
        assert.deepEqual(
          other.map(String),
          [],
          'each statement of the lost transaction rejects with TransactionResolutionUnknownError',
        )
      } else {
        // What the statement that was running got: the lost connection's error, which every other gets too.
        const first = errorOf(outcomes[0]!) as { code?: unknown }
        assert.equal(first?.code, 'CONNECTION_CLOSED', `pg_sleep: got ${first}`)
        const other = outcomes
          .map(errorOf)
          .filter((e) => (e as { code?: unknown })?.code !== 'CONNECTION_CLOSED')
        assert.deepEqual(other.map(String), [], 'each statement rejects with the connection error')
      }
      const rows =
        await t.admin`select count(*)::int as n from ${t.admin(table)} where id between ${base} and ${base + 999}`
      assert.equal(rows[0].n, 0, 'a statement of the lost connection ran')
      if (where === 'transaction') {
        const closing = await settle(r`rollback`)
        assert.equal(closing.ok, true, `rollback ends the lost transaction: ${!closing.ok && closing.error}`)
      }
      // The reservation goes on, on a new connection.
      const [{ pid: next }] = (await within(
        r`select pg_backend_pid() as pid` as unknown as Promise<[{ pid: number }]>,
        'a statement on the reservation after the loss',
      )) as [{ pid: number }]
      assert.notEqual(next, pid, 'the reservation is on a new connection')
      r.release()
      released = true
      assert.deepEqual([...(await within(t.sql`select 1 as x`, 'sql after the loss'))], [{ x: 1 }])
      await new Promise((resolve) => setTimeout(resolve, 300))
      const again =
        await t.admin`select count(*)::int as n from ${t.admin(table)} where id between ${base} and ${base + 999}`
      assert.equal(again[0].n, 0, 'a queued statement ran later')
      assert.equal(describeCrashes(crashes.seen.slice(seen)), '', 'nothing thrown outside the caller')
    } finally {
      if (!released) r.release()
    }
  })
}
