// end() while the pool's new connections are still starting leaves no unhandled rejection. After a
// failover the new writer's pool opens its connections under load, and postgres.js runs its own
// array-type fetch as the first statement of each, dropping that fetch's promise
// (porsager/postgres#1192): `end({ timeout })` terminating such a connection rejected the fetch with
// CONNECTION_DESTROYED and nobody held it (bench/recovery.ts once counted one on Bun, at end()
// after a failover). Here the fetch is held by a relay, so end() always lands while it runs.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { postgresHa } from '../mod.ts'
import { type CrashWatch, describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'
import { statementRelay } from './helpers/statement-relay.ts'

let pg: PgServer
let crashes: CrashWatch
before(async () => {
  crashes = watchCrashes()
  pg = await startPgServer()
})
after(async () => {
  crashes?.stop()
  await pg?.stop()
})

/**
 * A relay that holds back every array-type fetch a connection sends (it never reaches the server,
 * so the fetch stays in flight) and calls `onFetch` on the first.
 */
async function fetchHolder(port: number, onFetch: () => void) {
  let held = 0
  const relay = await statementRelay(port, (text) => {
    if (!text.includes('typcategory')) return 'pass'
    if (held++ === 0) onFetch()
    return 'hold'
  })
  return { port: relay.port, held: () => held, close: () => relay.close() }
}

for (const timeout of [0, 1]) {
  test(`end({ timeout: ${timeout} }) while new pool connections fetch their array types: no unhandled rejection`, async () => {
    let ended: Promise<void> | undefined
    let sql: ReturnType<typeof postgresHa> | undefined
    const relay = await fetchHolder(pg.port, () => {
      ended = sql!.end({ timeout })
    })
    sql = postgresHa(pg.url.replace(`:${pg.port}/`, `:${relay.port}/`), { max: 10, connectTimeoutMs: 5_000 })
    try {
      // Fifty statements open the whole pool; each connection's first statement is the fetch.
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          sql!.unsafe(`select ${i} as x`).then(
            () => 'ok',
            (e) => e.code,
          ),
        ),
      )
      assert.ok(ended, 'no connection sent an array-type fetch')
      await ended
      // Every statement was queued behind a fetch that never answered: end() rejected each.
      assert.equal(results.filter((r) => r === 'ok').length, 0, String(results))
      assert.ok(relay.held() >= 1)
      // Rejections are reported a turn or more after they happen.
      await new Promise((r) => setTimeout(r, 200))
      assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
    } finally {
      await (ended ?? sql.end({ timeout: 0 }))
      relay.close()
    }
  })
}
