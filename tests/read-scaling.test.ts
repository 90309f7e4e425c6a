// sql.ha.reader on a real 3-instance cluster: reads run on standbys, every strategy spreads them
// over both readers (lowestLag over those tied for the lowest lag), a transaction stays on one reader, reader loss never fails over the writer,
// readerFallback decides what happens with no reader (reads issued after a reader loss get no
// error), restarted readers get reads again, and Drizzle's withReplicas and Kysely work over it.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { sql as dsql } from 'drizzle-orm'
import { integer, pgTable, text, withReplicas } from 'drizzle-orm/pg-core'
import { drizzle } from 'drizzle-orm/postgres-js'
import { Kysely, sql as ksql } from 'kysely'
import { PostgresJSDialect } from 'kysely-postgres-js'
import type { Lab, LabStatus } from '../lab/mod.ts'
import {
  FailoverSuccessError,
  type HaError,
  type HostInfo,
  NoReaderAvailableError,
  type PostgresHaSql,
  postgresHa,
  type Topology,
} from '../mod.ts'
import { LAG_TIE_MS } from '../src/core/routing.ts'
import { eventually, labClientOptions, restoreNode } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let status: LabStatus
let readers: string[]
const clients: PostgresHaSql[] = []

const WHO = "select current_setting('pgha_lab.instance_id') as id, pg_is_in_recovery() as standby"

function client(options: Parameters<typeof labClientOptions>[0] = {}): PostgresHaSql {
  const sql = postgresHa(lab.url('cluster'), labClientOptions(options))
  clients.push(sql)
  return sql
}

async function who(sql: { unsafe(q: string): Promise<any> }): Promise<{ id: string; standby: boolean }> {
  const [row] = await sql.unsafe(WHO)
  return { id: row.id, standby: row.standby }
}

before(async () => {
  lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 0 })
  status = await lab.status()
  readers = status.nodes.filter((n) => n.role === 'reader').map((n) => n.id)
})

after(async () => {
  await Promise.all(clients.map((c) => c.end({ timeout: 1 })))
  await lab?.down()
})

/**
 * The readers `lowestLag` may pick in `topology` (README: the readers within LAG_TIE_MS of the
 * lowest reported lag share the reads); an unknown lag ranks behind every measured one.
 */
function lowestLagReaders(topology: Topology): string[] {
  const lagOf = (h: HostInfo) => h.lagMs ?? Number.MAX_SAFE_INTEGER
  const lowest = Math.min(...topology.readers.map(lagOf))
  return topology.readers.filter((h) => lagOf(h) <= lowest + LAG_TIE_MS).map((h) => h.host)
}

test('read-scaling: every strategy sends reads to standbys and spreads them over both readers (lowestLag: over those tied for the lowest lag)', async () => {
  for (const strategy of ['random', 'roundRobin', 'leastConnections', 'lowestLag'] as const) {
    const sql = client({ readerHostSelectorStrategy: strategy })
    const seen = new Map<string, number>()
    // lowestLag: reads the client routed with both readers within LAG_TIE_MS of the lowest lag. On
    // a loaded machine one reader can report 20+ ms more lag than the other for a while (the lab
    // reports the real replay lag), and then every read rightly goes to the other.
    let bothTied = 0
    for (let i = 0; i < 40; i++) {
      const view = sql.ha.topology()
      const r = await who(sql.ha.reader)
      assert.equal(r.standby, true, `${strategy}: read ran on ${r.id}, not a standby`)
      seen.set(r.id, (seen.get(r.id) ?? 0) + 1)
      // The reading the read was routed by, when no new one came in meanwhile (one every 500 ms).
      if (strategy === 'lowestLag' && view && sql.ha.topology() === view) {
        const tied = lowestLagReaders(view)
        const lags = JSON.stringify(view.readers.map((h) => [h.host, h.lagMs]))
        assert.ok(tied.includes(r.id), `lowestLag: read ran on ${r.id}; reader lags ${lags}`)
        if (readers.every((id) => tied.includes(id))) bothTied++
      }
    }
    // With 20 or more reads among two tied readers, missing one has a chance of 2 in a million.
    if (strategy !== 'lowestLag' || bothTied >= 20)
      assert.deepEqual(
        [...seen.keys()].sort(),
        [...readers].sort(),
        `${strategy}: ${JSON.stringify([...seen])}${strategy === 'lowestLag' ? `, ${bothTied} reads tied` : ''}`,
      )
    // The client’s own sql still writes on the writer.
    assert.equal((await who(sql)).id, status.writer)
  }
})

test('read-scaling: sql.ha.reader.begin keeps the whole transaction on one reader', async () => {
  const sql = client({ readerHostSelectorStrategy: 'roundRobin' })
  for (let t = 0; t < 4; t++) {
    const ids = await sql.ha.reader.begin(async (tx) => {
      const out: string[] = []
      for (let i = 0; i < 5; i++) out.push((await who(tx)).id)
      return out
    })
    assert.equal(new Set(ids).size, 1, `one transaction ran on ${ids}`)
    assert.ok(readers.includes(ids[0]!))
  }
})

test('read-scaling: Drizzle withReplicas and Kysely over sql.ha.reader', async () => {
  const sql = client()
  await sql`create table if not exists rs_items (id int primary key, name text not null)`
  await sql`insert into rs_items values (1, 'one') on conflict do nothing`
  const items = pgTable('rs_items', { id: integer('id').primaryKey(), name: text('name').notNull() })
  const db = withReplicas(drizzle(sql), [drizzle(sql.ha.reader)])
  await db.insert(items).values({ id: 2, name: 'two' }).onConflictDoNothing()
  await eventually(async () => (await db.select().from(items)).length === 2, 5_000, 'the replica sees row 2')
  const [where] = await db.execute<{ standby: boolean }>(dsql`select pg_is_in_recovery() as standby`)
  assert.equal(where!.standby, false, 'db.execute goes to the primary')
  // Drizzle's selects go to the replica (sql.ha.reader: a standby), $primary and transactions to sql.
  const standbyOf = { standby: dsql<boolean>`pg_is_in_recovery()`.as('standby') }
  for (let i = 0; i < 6; i++)
    assert.deepEqual(
      await db.select(standbyOf).from(items).limit(1),
      [{ standby: true }],
      'select on a standby',
    )
  assert.deepEqual(await db.$primary.select(standbyOf).from(items).limit(1), [{ standby: false }])
  assert.deepEqual(
    await db.transaction((tx) => tx.select(standbyOf).from(items).limit(1)),
    [{ standby: false }],
    'db.transaction on the primary',
  )
  const kysely = new Kysely<{ rs_items: { id: number; name: string } }>({
    dialect: new PostgresJSDialect({ postgres: sql.ha.reader }),
  })
  const rows = await kysely.selectFrom('rs_items').select(['id', 'name']).orderBy('id').execute()
  assert.deepEqual(rows, [
    { id: 1, name: 'one' },
    { id: 2, name: 'two' },
  ])
  const { rows: standby } = await ksql<{ s: boolean }>`select pg_is_in_recovery() as s`.execute(kysely)
  assert.equal(standby[0]!.s, true)
  // A Kysely transaction over sql.ha.reader runs on one standby from begin to commit.
  for (let t = 0; t < 3; t++) {
    const ids = await kysely.transaction().execute(async (trx) => {
      const out: string[] = []
      for (let i = 0; i < 3; i++)
        out.push(
          (await ksql<{ id: string }>`select current_setting('pgha_lab.instance_id') as id`.execute(trx))
            .rows[0]!.id,
        )
      return out
    })
    assert.equal(new Set(ids).size, 1, `one Kysely transaction ran on ${ids}`)
    assert.ok(readers.includes(ids[0]!), `on ${ids[0]}, not a reader`)
  }
})

/**
 * Runs `workers` loops of sequential reads until each made `reads`, and sorts each outcome by
 * whether the read was issued before or after the first error any of them saw.
 */
async function readLoops(
  c: PostgresHaSql,
  workers: number,
  reads: number,
): Promise<{ before: unknown[]; after: unknown[] }> {
  let firstError = Number.POSITIVE_INFINITY
  const before: unknown[] = []
  const after: unknown[] = []
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let i = 0; i < reads; i++) {
        const issued = performance.now()
        const r = await who(c.ha.reader).catch((e: unknown) => {
          firstError = Math.min(firstError, performance.now())
          return e
        })
        ;(issued > firstError ? after : before).push(r)
      }
    }),
  )
  return { before, after }
}

/** Both clients hold several pooled connections to each reader (max 4 per host). */
async function warm(...cs: PostgresHaSql[]): Promise<void> {
  for (const c of cs)
    for (let k = 0; k < 3; k++) {
      const rows = await Promise.all(Array.from({ length: 16 }, () => who(c.ha.reader)))
      assert.ok(rows.every((r) => r.standby))
    }
}

/**
 * Reads of both clients right after both readers were lost: each read sent on a pooled connection
 * before the first error may have run, and is a FailoverSuccessError by contract; every read issued
 * after it runs on the writer (`readerFallback: 'writer'`) or rejects with NoReaderAvailableError.
 */
async function readsAfterLoss(
  toWriter: PostgresHaSql,
  strict: PostgresHaSql,
  errorsSure: boolean,
): Promise<void> {
  const fromALostReader = (r: unknown) =>
    r instanceof FailoverSuccessError && readers.some((id) => r.fromHost?.startsWith(`${id}:`))
  const [loose, tight] = await Promise.all([readLoops(toWriter, 4, 8), readLoops(strict, 4, 8)])
  for (const r of [...loose.before, ...tight.before])
    assert.ok(
      (r as { id?: string }).id === status.writer ||
        r instanceof NoReaderAvailableError ||
        fromALostReader(r),
      `a read issued before the first error: ${r}`,
    )
  for (const r of loose.after)
    assert.equal((r as { id?: string }).id, status.writer, `a read issued after the first error: ${r}`)
  for (const r of tight.after) {
    assert.ok(r instanceof NoReaderAvailableError, `a read issued after the first error: ${r}`)
    assert.equal((r as HaError).code, 'NO_READER_AVAILABLE')
  }
  // A reader cut off holds the reads sent to it until they fail; killed readers' closed
  // connections may all be noticed before any read goes out, and then nothing fails at all.
  if (errorsSure)
    assert.ok(loose.after.length > 0 && tight.after.length > 0, 'no read was issued after the first error')
}

async function readersBack(...cs: PostgresHaSql[]): Promise<void> {
  await Promise.all(readers.map((id) => lab.start(id)))
  await lab.waitForWriter({ timeoutMs: 30_000 })
  for (const c of cs)
    for (const id of readers)
      await eventually(
        async () => (await who(c.ha.reader).catch(() => undefined))?.id === id,
        15_000,
        `restarted reader ${id} takes reads again`,
      )
}

test('read-scaling: both readers lost → reads issued after the first error run on the writer (or NoReaderAvailableError) without one, no failover; back → readers again', async () => {
  const toWriter = client()
  const strict = client({ readerFallback: 'error' })
  let failovers = 0
  for (const c of [toWriter, strict]) c.ha.on('failoverStart', () => failovers++)
  try {
    await warm(toWriter, strict)
    const [killed, cut] = readers as [string, string]
    // One killed, one cut off: the cut-off reader's connections stay open and silent, so the client
    // cannot tell it is gone until it asks (deterministic: a killed reader's closed connections race
    // with the reads).
    await lab.blackhole(cut)
    await lab.kill(killed)
    await readsAfterLoss(toWriter, strict, true)
    // The cut-off reader dies too: both killed, the client knows; reads go on as before.
    await lab.kill(cut)
    await lab.heal(cut)
    for (let i = 0; i < 10; i++)
      assert.equal(
        (await who(toWriter.ha.reader)).id,
        status.writer,
        'with readerFallback writer, on the writer',
      )
    for (let i = 0; i < 3; i++) {
      const error = await who(strict.ha.reader).then(
        () => undefined,
        (e: unknown) => e,
      )
      assert.ok(error instanceof NoReaderAvailableError, `expected NoReaderAvailableError, got ${error}`)
    }
    // The writer is untouched: writes still work, and no failover started.
    assert.equal((await who(strict)).id, status.writer)
    assert.equal(failovers, 0)
    await readersBack(toWriter, strict)

    // Both killed at once (one host, one zone): the client hears of one loss first.
    await warm(toWriter, strict)
    await Promise.all(readers.map((id) => lab.kill(id)))
    await readsAfterLoss(toWriter, strict, false)
    await readersBack(toWriter, strict)
    assert.equal(failovers, 0)
  } finally {
    // Healed and started (a no-op once readersBack ran): the file's later tests use this lab.
    for (const id of readers) await restoreNode(lab, id)
  }
})

test('read-scaling: LISTEN through sql.ha.reader runs on the writer; ending the reader ends the client', async () => {
  const sql = postgresHa(lab.url('cluster'), labClientOptions())
  const got = new Promise<string>((resolve) => {
    void sql.ha.reader.listen('rs_channel', resolve)
  })
  // The listen request resolves once subscribed; a notify on the writer reaches it.
  await eventually(
    async () => {
      await sql.notify('rs_channel', 'hello')
      return (await Promise.race([got, new Promise((r) => setTimeout(() => r(''), 100))])) === 'hello'
    },
    5_000,
    'the notification',
  )
  await sql.ha.reader.end()
  const error = await sql`select 1`.then(
    () => undefined,
    (e: unknown) => e as { code?: string },
  )
  assert.equal(error?.code, 'CONNECTION_ENDED')
})
