// Replication lag and read-your-writes on a real cluster: replay paused on one reader (the lab's
// Aurora emulation and the pg dialect both report its real, growing lag), maxReplicaLagMs keeps
// reads off it within about a second, and readYourWrites makes every read after a write see it.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type postgres from 'postgres'
import type { Lab, LabStatus } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { allInstancesUrl, eventually, labClientOptions } from './helpers/ha.ts'
import { labAdmins, lagPassed, runningOn } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let status: LabStatus
let readers: string[]
const clients: PostgresHaSql[] = []

const WHO = "select current_setting('pgha_lab.instance_id') as id"

function client(url: string, options: Parameters<typeof labClientOptions>[0] = {}): PostgresHaSql {
  const sql = postgresHa(url, labClientOptions(options))
  clients.push(sql)
  return sql
}

let admin: (id: string) => postgres.Sql
let endAdmins: () => Promise<void>

/** Writes a row every 20 ms until stopped, so that a paused standby falls behind. */
function writeLoop(): () => Promise<void> {
  const w = admin(status.writer!)
  let stop = false
  const done = (async () => {
    while (!stop) {
      await w`insert into lag_ticks default values`
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  return async () => {
    stop = true
    await done
  }
}

before(async () => {
  lab = await sharedLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 0 })
  status = await lab.status()
  ;({ admin, end: endAdmins } = labAdmins(lab))
  readers = status.nodes.filter((n) => n.role === 'reader').map((n) => n.id)
  const w = admin(status.writer!)
  await w`create table lag_ticks (id serial primary key, at timestamptz default now())`
  await w`create table ryw (id int primary key, v int not null)`
  await w`grant all on ryw to ${w(status.user)}`
})

after(async () => {
  await Promise.all(clients.map((c) => c.end({ timeout: 1 })))
  await endAdmins?.()
  await lab?.down()
})

test('read-lag: a paused reader gets no reads within ~1 s of its lag passing maxReplicaLagMs; back once it catches up', async () => {
  const [paused, healthy] = readers as [string, string]
  const aurora = client(lab.url('cluster'), { maxReplicaLagMs: 500 })
  // The writer listed first, as in a fresh lab (a lab another file handed on after a failover has
  // another writer than its first instance); a standby listed first is tests/pg-lag-standby-first.
  const writerFirst = {
    ...status,
    nodes: [...status.nodes].sort((a, b) => Number(b.role === 'writer') - Number(a.role === 'writer')),
  }
  const plain = client(allInstancesUrl(lab, writerFirst), { dialect: 'pg', maxReplicaLagMs: 500 })
  for (const c of [aurora, plain]) await c.ha.reader.unsafe(WHO)
  const lagOf = (c: PostgresHaSql, id: string) => c.ha.topology()?.readers.find((h) => h.host === id)?.lagMs
  // The pg dialect matches each standby to its pg_stat_replication row (the lab's are `n12`, from 127.0.0.1).
  await eventually(
    () => readers.every((id) => lagOf(plain, id) !== undefined),
    5_000,
    'pg dialect lag for both',
  )

  const stopWrites = writeLoop()
  try {
    await admin(paused)`select pg_wal_replay_pause()`
    const crossedAt = await lagPassed(admin(status.writer!), paused, 500)
    // Within about a second of crossing, both dialects know and keep reads off it.
    for (const c of [aurora, plain])
      await eventually(() => (lagOf(c, paused) ?? 0) > 500, 1_500, 'the client learns the lag')
    assert.ok(
      performance.now() - crossedAt < 1_500,
      `lag known ${performance.now() - crossedAt} ms after it crossed`,
    )
    for (const c of [aurora, plain])
      for (let i = 0; i < 20; i++) {
        const [row] = await c.ha.reader.unsafe(WHO)
        assert.equal(row!.id, healthy, 'a reader over maxReplicaLagMs gets no reads')
      }
    // No reader within the limit and readerFallback 'error': NO_READER_AVAILABLE names the lag.
    const strict = client(lab.url('cluster'), { maxReplicaLagMs: 500, readerFallback: 'error' })
    await strict.ha.reader.unsafe(WHO)
    await admin(healthy)`select pg_wal_replay_pause()`
    await eventually(
      async () => {
        const e = await strict.ha.reader.unsafe(WHO).then(
          () => undefined,
          (error: unknown) => error as { code?: string; message?: string },
        )
        return e?.code === 'NO_READER_AVAILABLE' && /maxReplicaLagMs/.test(e.message ?? '')
      },
      5_000,
      'NO_READER_AVAILABLE once both readers lag',
    )
  } finally {
    await Promise.all(readers.map((id) => admin(id)`select pg_wal_replay_resume()`))
    await stopWrites()
  }
  await eventually(
    async () => (await aurora.ha.reader.unsafe(WHO))[0]!.id === paused,
    10_000,
    'the caught-up reader gets reads again',
  )
})

test('read-lag: readYourWrites — with replay paused every read after a write sees it (on the writer); caught up, reads stay on readers', async () => {
  const sql = client(lab.url('cluster'), { readYourWrites: true, readYourWritesTimeoutMs: 100 })
  await sql`insert into ryw values (0, 0) on conflict (id) do update set v = 0`
  // Caught up: reads after writes run on a reader and see them.
  for (let i = 1; i <= 20; i++) {
    await sql`update ryw set v = ${i} where id = 0`
    const [row] = await sql.ha
      .reader`select v, current_setting('pgha_lab.instance_id') as id from ryw where id = 0`
    assert.equal(row!.v, i, 'a read after a write sees it')
    assert.ok(readers.includes(row!.id), `read ran on ${row!.id}, not a reader`)
  }
  // Every kind of committed write counts: unsafe, begin, reserved.
  await Promise.all(readers.map((id) => admin(id)`select pg_wal_replay_pause()`))
  try {
    const writes: Array<(n: number) => Promise<unknown>> = [
      (n) => sql`update ryw set v = ${n} where id = 0`,
      (n) => sql.unsafe('update ryw set v = $1 where id = 0', [n]),
      (n) => sql.begin((tx) => tx`update ryw set v = ${n} where id = 0`),
      async (n) => {
        const r = await sql.reserve()
        try {
          await r`update ryw set v = ${n} where id = 0`
        } finally {
          r.release()
        }
      },
    ]
    let n = 100
    for (const write of writes)
      for (let i = 0; i < 3; i++) {
        await write(++n)
        const [row] = await sql.ha
          .reader`select v, current_setting('pgha_lab.instance_id') as id from ryw where id = 0`
        assert.equal(row!.v, n, 'with replay paused, the read falls back to the writer and sees the write')
        assert.equal(row!.id, status.writer)
      }
    // Without readYourWrites the same read is stale: the test above would have failed.
    const plain = client(lab.url('cluster'))
    const [stale] = await plain.ha.reader`select v from ryw where id = 0`
    assert.notEqual(stale!.v, n)
  } finally {
    await Promise.all(readers.map((id) => admin(id)`select pg_wal_replay_resume()`))
  }
})

test('read-lag: a hot-standby conflict (40001) on a reader is an ordinary error — no failover, no host marked down', async () => {
  const sql = client(lab.url('cluster'))
  let trouble = 0
  sql.ha.on('hostDown', () => trouble++)
  sql.ha.on('failoverStart', () => trouble++)
  const w = admin(status.writer!)
  await w`create table conflict_t as select g from generate_series(1, 1000) as g`
  await w`grant select on conflict_t to ${w(status.user)}`
  const settings = async (set: (a: postgres.Sql) => Promise<unknown>) => {
    for (const id of readers) {
      const a = admin(id)
      await set(a)
      await a`select pg_reload_conf()`
    }
  }
  // Cancel a conflicting query at once (the lab normally protects them with feedback).
  await settings(async (a) => {
    await a`alter system set hot_standby_feedback = off`
    await a`alter system set max_standby_streaming_delay = 0`
  })
  try {
    await eventually(
      async () => (await sql.ha.reader`select to_regclass('conflict_t') is not null as ok`)[0]!.ok === true,
      5_000,
      'the readers have the table',
    )
    const slow = sql.ha.reader`select count(*), pg_backend_pid() from conflict_t, pg_sleep(5)`.then(
      () => undefined,
      (e: unknown) => e as { code?: string },
    )
    await runningOn(
      readers.map((id) => admin(id)),
      '%conflict_t, pg_sleep%',
    )
    await w`delete from conflict_t`
    await w`vacuum conflict_t`
    const error = await slow
    assert.equal(error?.code, '40001', `expected a recovery conflict, got ${JSON.stringify(error)}`)
    assert.equal(trouble, 0, 'a recovery conflict is no host failure')
    assert.equal((await sql.ha.reader`select pg_is_in_recovery() as r`)[0]!.r, true)
  } finally {
    // Reset, not set back: the lab's own settings again, and no postgresql.auto.conf entry left,
    // which would keep the lab from being handed to the next file (lab/pool.ts).
    await settings(async (a) => {
      await a`alter system reset hot_standby_feedback`
      await a`alter system reset max_standby_streaming_delay`
    })
  }
})

test("read-lag: a reader session the server ends mid-statement for a recovery conflict (FATAL 57P04) gets the server's error — no failover — and the reconnected session runs the next statement", async () => {
  // postgres.js reports a FATAL that ends a running statement as a bare CONNECTION_CLOSED (it
  // keeps the error for the ReadyForQuery that never comes) and raises it, stale, on the first
  // statement of the reconnected connection. Dropping a database on the writer ends every standby
  // session in it at once, mid-statement, with FATAL 57P04 "conflict with recovery".
  const w = admin(status.writer!)
  await w`create database fatal_db`
  const onReaders = () =>
    eventually(
      async () =>
        (
          await Promise.all(
            readers.map((id) => admin(id)`select 1 from pg_database where datname = 'fatal_db'`),
          )
        ).every((rows) => rows.length > 0),
      5_000,
      'fatal_db on the readers',
    )
  // Before the client's first topology read: a standby without the database has no known role.
  await onReaders()
  // Every instance listed (the emulated Aurora topology lives in the lab's own database).
  const url = allInstancesUrl(lab, status).replace(/\/[^/?]*(\?.*)?$/, '/fatal_db')
  // One connection per reader, so that the next statement on a reader reuses the ended one.
  const sql = client(url, { dialect: 'pg', max: 1, readerHostSelectorStrategy: 'roundRobin' })
  let trouble = 0
  sql.ha.on('hostDown', () => trouble++)
  sql.ha.on('failoverStart', () => trouble++)
  for (let i = 0; i < 2; i++) assert.equal((await sql.ha.reader`select pg_is_in_recovery() as r`)[0]!.r, true)
  const slow = sql.ha.reader`select pg_sleep(5)`.then(
    () => undefined,
    (e: unknown) => e as { code?: string; severity?: string; name?: string },
  )
  await runningOn(
    readers.map((id) => admin(id)),
    '%pg_sleep(5)%',
    'fatal_db',
  )
  await w`drop database fatal_db with (force)`
  const error = await slow
  assert.equal(
    error?.code,
    '57P04',
    `expected the server's 57P04, got ${JSON.stringify(error)} (${error?.name})`,
  )
  assert.equal(error?.severity, 'FATAL')
  assert.equal(error?.name, 'PostgresError')
  assert.equal(trouble, 0, 'a session ended by a recovery conflict is no host failure')
  // The same database again: the ended connection reconnects, and its first statement runs
  // instead of getting the old session's stale 57P04.
  await w`create database fatal_db`
  await onReaders()
  for (let i = 0; i < 4; i++) assert.equal((await sql.ha.reader`select pg_is_in_recovery() as r`)[0]!.r, true)
  assert.equal(trouble, 0)
})

test('read-lag: readYourWrites — a read after a write the reader has replayed costs one round trip to it, like a plain read (the replay check is pipelined with the read)', async () => {
  // 100 ms each way on both readers (the writer has none): a round trip to a reader is 200 ms,
  // far above this machine's noise, so the elapsed time counts round trips.
  const ONE_WAY_MS = 100
  const sql = client(lab.url('cluster'), { readYourWrites: true, readYourWritesTimeoutMs: 2_000 })
  const plain = client(lab.url('cluster'))
  await sql`insert into ryw values (0, 0) on conflict (id) do update set v = 0`
  // Connections open to both readers (and the writer) before the latency: opening one costs several round trips.
  for (let i = 0; i < 6; i++) {
    await sql`update ryw set v = 0 where id = 0`
    await sql.ha.reader`select v from ryw where id = 0`
    await plain.ha.reader`select v from ryw where id = 0`
  }
  const w = admin(status.writer!)
  const replicas = readers.map((id) => admin(id))
  await Promise.all(replicas.map((r) => r`select 1`))
  await Promise.all(readers.map((id) => lab.latency(id, ONE_WAY_MS)))
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  try {
    const alone: number[] = []
    const afterWrite: number[] = []
    for (let i = 1; i <= 5; i++) {
      let t = performance.now()
      await plain.ha.reader`select v from ryw where id = 0`
      alone.push(performance.now() - t)
      await sql`update ryw set v = ${i} where id = 0`
      // Untimed: both readers replay the write before the read starts.
      const [{ lsn }] = (await w`select pg_current_wal_lsn()::text as lsn`) as unknown as [{ lsn: string }]
      await eventually(
        async () =>
          (
            await Promise.all(replicas.map((r) => r`select pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn as ok`))
          ).every(([row]) => row!.ok === true),
        10_000,
        'both readers replayed the write',
      )
      t = performance.now()
      const [row] = await sql.ha.reader`select v, pg_is_in_recovery() as standby from ryw where id = 0`
      afterWrite.push(performance.now() - t)
      assert.equal(row!.v, i, 'the read sees the write')
      assert.equal(row!.standby, true, 'on a reader')
    }
    const rtt = 2 * ONE_WAY_MS
    assert.ok(
      median(afterWrite) < median(alone) + rtt / 2,
      `a read after a write took ${Math.round(median(afterWrite))} ms, a plain read ${Math.round(median(alone))} ms: more than one round trip (${rtt} ms) to the reader`,
    )
  } finally {
    await Promise.all(readers.map((id) => lab.latency(id, 0)))
  }
})
