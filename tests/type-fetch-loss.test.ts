// A failed array-type fetch (postgres.js's first statement on every new connection) must not end
// the process: postgres.js drops that fetch's promise, so its failure is an unhandled rejection no
// caller can catch. A connection reset during the fetch crashed tests/failover-load on Deno and
// Bun (the killed writer reset connections that had just logged in); here the proxy makes the
// fetch fail deterministically, with the error a server sends for a cancelled statement.
import assert from 'node:assert/strict'
import { createServer, connect as dial, type Server, type Socket } from 'node:net'
import { after, before, test } from 'node:test'
import { postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { settle } from './helpers/ha.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'

let pg: PgServer
let proxy: Server
let cuts = 0
const crashes = watchCrashes()
const open = new Set<Socket>()

/** An ErrorResponse (57014, as for a statement cancelled by statement_timeout), then ReadyForQuery. */
function cancelled(): Buffer {
  const fields = Buffer.from('SERROR\0VERROR\0C57014\0Mcanceling statement due to statement timeout\0\0')
  const error = Buffer.alloc(5)
  error.write('E')
  error.writeInt32BE(4 + fields.length, 1)
  return Buffer.concat([error, fields, Buffer.from([90, 0, 0, 0, 5, 73])])
}

/** A proxy to `pg` that fails the type fetch of the first `cuts` connections (never sent upstream). */
before(async () => {
  pg = await startPgServer()
  proxy = createServer((client) => {
    const upstream = dial({ host: pg.host, port: pg.port })
    for (const s of [client, upstream]) {
      open.add(s)
      s.on('error', () => {})
      s.on('close', () => open.delete(s))
    }
    upstream.on('data', (chunk) => client.write(chunk))
    upstream.on('close', () => client.destroy())
    client.on('close', () => upstream.destroy())
    client.on('data', (chunk: Buffer) => {
      if (cuts > 0 && chunk.includes('b.typarray')) {
        cuts--
        client.write(cancelled())
        return
      }
      upstream.write(chunk)
    })
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
})

after(async () => {
  for (const s of open) s.destroy()
  await new Promise((resolve) => proxy?.close(resolve))
  await pg?.stop()
  crashes.stop()
})

test('a failed array-type fetch is no unhandled rejection, and statements still run', async () => {
  const { port } = proxy.address() as { port: number }
  const url = `postgres://${pg.user}:${encodeURIComponent(pg.password)}@127.0.0.1:${port}/${pg.database}`
  const sql = postgresHa(url, { max: 1, connectTimeoutMs: 5_000 })
  try {
    cuts = 1
    const result = await settle(sql`select 1::int as x`)
    // Give a dropped promise the turns it needs to be reported.
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(cuts, 0, 'the proxy failed the type fetch')
    assert.deepEqual(crashes.seen.length, 0, describeCrashes(crashes.seen))
    // postgres.js hands the fetch's error to the first statement too (porsager/postgres#1223):
    // that statement settles with it; the next one runs.
    if (!result.ok) assert.equal(result.error?.code, '57014')
    const [{ x }] = (await sql`select 1::int as x`) as unknown as [{ x: number }]
    assert.equal(x, 1)
  } finally {
    await sql.end({ timeout: 1 })
  }
})
