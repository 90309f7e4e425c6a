// The hand-over: the first statement on the new writer after a failover runs on a connection
// opened while the writer search was still probing, not on one it has to open and authenticate.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FailoverSuccessError, type HaPlugin, postgresHa } from '../mod.ts'
import { labClientOptions } from './helpers/ha.ts'
import { labAdmins } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('failover: the first statement on the new writer finds a connection opened during the search', async () => {
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 1500, endpointLagMs: 60_000 })
  const sql = postgresHa(lab.url('cluster'), labClientOptions())
  try {
    await sql`create table h (id int)`
    let failoverDoneAt: number | undefined
    sql.ha.on('failover', (e) => {
      if (e.ok) failoverDoneAt = Date.now()
    })
    const old = (await lab.status()).writer!
    await lab.kill(old)
    const insert = () => sql`insert into h values (1)
      returning (select backend_start from pg_stat_activity where pid = pg_backend_pid()) as opened,
        (select aurora_db_instance_identifier()) as instance`
    // The pool connection to the old writer is dead: the statement fails over, then runs (or, if
    // it was already on its way, is reported with FailoverSuccessError and re-run).
    const [row] = await insert().catch((error) => {
      if (!(error instanceof FailoverSuccessError)) throw error
      return insert()
    })
    assert.notEqual(row!.instance, old)
    assert.ok(failoverDoneAt, 'a failover happened')
    const opened = (row!.opened as Date).getTime()
    assert.ok(
      opened < failoverDoneAt,
      `the connection was opened ${opened - failoverDoneAt} ms after the failover ended: a fresh connect`,
    )
  } finally {
    await sql.end()
  }
})

test('failover: statements waiting for the new writer find as many connections as the old one had, opened during the search', async () => {
  // Under load, every waiting statement needs a connection at once: a pool that logged them in
  // only after the failover ended (one connection opened during the search, the rest after it)
  // made the ramp back to full throughput pay a login per connection.
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 1500, endpointLagMs: 60_000 })
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ max: 4 }))
  try {
    let failoverDoneAt: number | undefined
    sql.ha.on('failover', (e) => {
      if (e.ok) failoverDoneAt = Date.now()
    })
    // Four at once, each holding its connection a while: four different connections of the pool.
    const busy = () => sql`select pg_sleep(0.3),
      (select backend_start from pg_stat_activity where pid = pg_backend_pid()) as opened,
      pg_backend_pid() as pid, aurora_db_instance_identifier() as instance`
    // The load the new writer is to take over: four connections on the old one.
    await Promise.all(Array.from({ length: 4 }, () => busy()))
    const old = (await lab.status()).writer!
    await lab.kill(old)
    const rows = await Promise.all(
      Array.from({ length: 4 }, () =>
        busy().catch((error) => {
          if (!(error instanceof FailoverSuccessError)) throw error
          return busy()
        }),
      ),
    )
    assert.ok(failoverDoneAt, 'a failover happened')
    const done = failoverDoneAt
    assert.equal(new Set(rows.map(([r]) => r!.pid)).size, 4, 'four connections')
    for (const [r] of rows) {
      assert.notEqual(r!.instance, old)
      const opened = (r!.opened as Date).getTime()
      assert.ok(opened < done, `a connection was opened ${opened - done} ms after the failover ended`)
    }
  } finally {
    await sql.end()
  }
})

test('failover: sql.end() during the hand-over resolves only once the connections it was opening are settled', async () => {
  // The hand-over opens connections on the hosts the writer search reaches; end() stops the
  // search, which closes those pools. end() must not resolve while they are still logging in: a
  // login that completes after `await sql.end()` is a session the caller believes closed.
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 1500, endpointLagMs: 60_000 })
  let old: string | undefined
  let endedAt: number | undefined
  const logins: Promise<void>[] = []
  const late: string[] = []
  let warming: (() => void) | undefined
  const warmStarted = new Promise<void>((resolve) => {
    warming = resolve
  })
  // Once the old writer is gone, a user connection to another host is the hand-over's: it is
  // made to take 300 ms to log in, so that end() comes while it does.
  const slowHandOver: HaPlugin = {
    name: 'slow-hand-over',
    async connect(ctx, next) {
      if (old === undefined || ctx.purpose !== 'user' || ctx.host.host === old) return next()
      warming!()
      const login = (async () => {
        await new Promise((r) => setTimeout(r, 300))
        await next()
        if (endedAt !== undefined) late.push(`${ctx.host.host}:${ctx.host.port}`)
      })()
      logins.push(login.catch(() => {}))
      return login
    },
  }
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({ max: 4, plugins: ['connectionTracker', 'failover', 'hostMonitoring', slowHandOver] }),
  )
  let ended = false
  try {
    const busy = () => sql`select pg_sleep(0.2)`
    // Four connections on the writer: the hand-over opens as many on the first hosts it reaches.
    await Promise.all(Array.from({ length: 4 }, () => busy()))
    old = (await lab.status()).writer!
    await lab.kill(old)
    const lost = sql`select 1`.catch((error: unknown) => error)
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      warmStarted,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('no hand-over connection within 15 s')), 15_000)
      }),
    ]).finally(() => clearTimeout(timer))
    await sql.end()
    ended = true
    endedAt = Date.now()
    await lost
    // Every hand-over login has settled by now if end() waited for them; bounded either way.
    await Promise.race([Promise.all(logins), new Promise((r) => setTimeout(r, 5_000))])
    assert.deepEqual(late, [], 'hand-over logins completed after sql.end() resolved')
  } finally {
    if (!ended) await sql.end()
  }
})

test('failover: a read on a reader the hand-over warmed is not cut off when that reader is not promoted', async () => {
  // The hand-over closes what it opened on the hosts that did not become the writer. A read the
  // client sent to such a reader meanwhile (read scaling) runs on those very connections: closing
  // them would end a healthy reader's statement with a connection error (and a reader failover).
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 1500, endpointLagMs: 60_000 })
  let old: string | undefined
  let warming: (() => void) | undefined
  const warmStarted = new Promise<void>((resolve) => {
    warming = resolve
  })
  const handOverSeen: HaPlugin = {
    name: 'hand-over-seen',
    connect(ctx, next) {
      if (old !== undefined && ctx.purpose === 'user' && ctx.host.host !== old) warming!()
      return next()
    },
  }
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({
      max: 4,
      readerHostSelectorStrategy: 'roundRobin',
      plugins: ['connectionTracker', 'failover', 'hostMonitoring', handOverSeen],
    }),
  )
  try {
    const readersDown: string[] = []
    sql.ha.on('hostDown', (e) => readersDown.push(`${e.host.host}`))
    // Load on the writer only: the readers have no connection of this client before the failover.
    await Promise.all(Array.from({ length: 4 }, () => sql`select pg_sleep(0.2)`))
    old = (await lab.status()).writer!
    await lab.kill(old)
    const write = sql`select 1`.catch((error: unknown) => error)
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      warmStarted,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('no hand-over connection within 15 s')), 15_000)
      }),
    ]).finally(() => clearTimeout(timer))
    // One long read on each reader (round robin), both started during the writer search: one of
    // the two readers is promoted, the other stays a healthy reader.
    const read = () =>
      sql.ha.reader`select pg_sleep(6), aurora_db_instance_identifier() as instance`.then(
        ([row]) => ({ ok: true, instance: String(row!.instance) }),
        (error: unknown) => ({ ok: false, error: String(error), instance: undefined }),
      )
    const reads = await Promise.all([read(), read()])
    await write
    for (const r of reads) assert.ok(r.ok, `a read on a healthy reader failed: ${JSON.stringify(reads)}`)
    assert.notEqual(reads[0]!.instance, reads[1]!.instance, 'one read on each reader')
    assert.deepEqual(
      readersDown.filter((h) => h !== old),
      [],
      'a reader was marked down',
    )
  } finally {
    await sql.end()
  }
})

test('failover: with failoverPrewarmPool false, the hand-over opens one connection per host reached, not the lost pool', async () => {
  // Readers with little room in max_connections: a user trades the ramp for fewer connections.
  // The same load with the default opens the lost writer's four on a reader (4 !== 1 when run so).
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 1500, endpointLagMs: 60_000 })
  const admins = labAdmins(lab)
  const peakOnReaders = async (prewarmPool: boolean) => {
    const app = `handover-${prewarmPool}`
    const sql = postgresHa(
      lab.url('cluster'),
      labClientOptions({ max: 4, failoverPrewarmPool: prewarmPool, connection: { application_name: app } }),
    )
    try {
      const busy = () => sql`select pg_sleep(0.3)`
      await Promise.all(Array.from({ length: 4 }, () => busy()))
      const { writer: old, nodes } = await lab.status()
      const readers = nodes.map((n) => n.id).filter((id) => id !== old)
      let done = false
      sql.ha.on('failover', () => {
        done = true
      })
      await lab.kill(old!)
      const waiting = Promise.all(
        Array.from({ length: 4 }, () =>
          busy().catch((error) => {
            if (!(error instanceof FailoverSuccessError)) throw error
            return busy()
          }),
        ),
      )
      // Until the failover ends (then the new writer's pool grows by the statements' own demand).
      // The hand-over's connections are the ones that ran its 'select 1' (postgres-ha's own probe
      // connections carry the same application_name).
      let peak = 0
      for (let i = 0; i < 200 && !done; i++) {
        for (const id of readers) {
          const [row] = await admins.admin(id)`select count(*)::int as n from pg_stat_activity
              where application_name = ${app} and query = 'select 1'`
          peak = Math.max(peak, row!.n as number)
        }
        await new Promise((r) => setTimeout(r, 20))
      }
      assert.ok(done, 'a failover happened')
      await waiting
      return peak
    } finally {
      await sql.end()
    }
  }
  try {
    assert.equal(await peakOnReaders(false), 1)
  } finally {
    await admins.end()
  }
})
