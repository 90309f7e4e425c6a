import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type CrashWatch, describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { driverClient } from './helpers/passthrough.ts'
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
 * A relay that calls the armed function as soon as a connection sends its first statement
 * (postgres.js's array-type fetch, or the caller's statement marked `marker`), before passing it
 * on: a host abort that lands exactly then.
 */
async function tripwire(port: number, marker: string) {
  let onFirstStatement: (() => void) | undefined
  const relay = await statementRelay(port, (text) => {
    if (onFirstStatement && (text.includes('typcategory') || text.includes(marker))) {
      const trip = onFirstStatement
      onFirstStatement = undefined
      trip()
    }
    return 'pass'
  })
  return {
    port: relay.port,
    arm(fn: () => void) {
      onFirstStatement = fn
    },
    close: () => relay.close(),
  }
}

test('a host aborted while a new connection starts its first statement leaves no unhandled rejection', async () => {
  const marker = 'first_on_new_connection'
  const relay = await tripwire(pg.port, marker)
  const url = pg.url.replace(`:${pg.port}/`, `:${relay.port}/`)
  const { sql, pools, target } = driverClient(url, { max: 2 })
  try {
    // The first connection of the client fetches the array types (postgres.js's own first statement).
    await sql`select 1`
    pools.abort(target.host, 'test')
    for (let round = 0; round < 3; round++) {
      // The next connection is aborted the moment it sends its first statement. postgres.js fetched
      // the array types again there and dropped that fetch's promise: its rejection went unhandled.
      let tripped = false
      relay.arm(() => {
        tripped = true
        pools.abort(target.host, 'test')
      })
      const error = (await sql.unsafe(`select 1 as ${marker}`).catch((e: unknown) => e)) as {
        code?: string
      }
      assert.ok(tripped, 'the relay saw no statement on the new connection')
      assert.equal(error.code, 'CONNECTION_DROPPED')
      // The client goes on: the next statement opens a connection that works.
      const [row] = await sql`select 2 as x`
      assert.equal(row!.x, 2)
    }
    // Rejections are reported a turn or two after they happen.
    await new Promise((r) => setTimeout(r, 100))
    assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))

    // Array values still go through as arrays on a connection that did not fetch the types itself.
    const [arrays] = await sql`select ${sql.array([1, 2, 3])}::int[] as a, ${sql.array(['x', 'y'])} as t`
    assert.deepEqual(arrays!.a, [1, 2, 3])
    assert.deepEqual(arrays!.t, ['x', 'y'])
  } finally {
    await sql.end({ timeout: 0 })
    relay.close()
  }
})
