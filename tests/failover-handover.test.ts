// The hand-over: the first statement on the new writer after a failover runs on a connection
// opened while the writer search was still probing, not on one it has to open and authenticate.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import postgres from 'postgres'
import { FailoverSuccessError, type HaPlugin, type PostgresHaSql, postgresHa } from '../mod.ts'
import { appBackends } from './helpers/backends.ts'
import { eventually, labClientOptions } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

/** Resolves once `started` does; rejects if no hand-over connection was asked for within 15 s. */
async function handOverStarted(started: Promise<unknown>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([
    started,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('no hand-over connection within 15 s')), 15_000)
    }),
  ]).finally(() => clearTimeout(timer))
}

/**
 * Four statements at once, each run again once on FailoverSuccessError (the failover contract):
 * for each, the backend that ran it, when that backend logged in, and on which instance.
 */
function fourStatementsRetried(sql: PostgresHaSql) {
  const run = () =>
    sql`select (select backend_start from pg_stat_activity where pid = pg_backend_pid()) as opened,
      pg_backend_pid() as pid, (select aurora_db_instance_identifier()) as instance, pg_sleep(0.1)`
  return Promise.all(
    Array.from({ length: 4 }, () =>
      run().catch((error) => {
        if (!(error instanceof FailoverSuccessError)) throw error
        return run()
      }),
    ),
  )
}
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

test('failover: the new writer takes as many connections logged in during the search as the old writer had open', async () => {
  // After a writer is lost, the statements that waited open the new writer's pool at once. With
  // only the one hand-over connection open there, each other connection waited for its own login
  // (60-100 ms on a busy machine) and the pool's rate stayed at what one connection carries.
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 1500, endpointLagMs: 60_000 })
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ max: 4 }))
  try {
    // Four connections open on the writer at once.
    await Promise.all(Array.from({ length: 4 }, () => sql`select pg_sleep(0.1)`))
    let failoverDoneAt: number | undefined
    sql.ha.on('failover', (e) => {
      if (e.ok) failoverDoneAt = Date.now()
    })
    const old = (await lab.status()).writer!
    await lab.kill(old)
    const rows = await fourStatementsRetried(sql)
    assert.ok(failoverDoneAt, 'a failover happened')
    const doneAt = failoverDoneAt
    for (const [row] of rows) assert.notEqual(row!.instance, old)
    assert.equal(new Set(rows.map(([row]) => row!.pid)).size, 4, 'four connections ran the four statements')
    const late = rows.map(([row]) => (row!.opened as Date).getTime() - doneAt).filter((ms) => ms > 0)
    assert.deepEqual(late, [], 'connections logged in after the failover ended (ms after it)')
    // The logins no connection took (those on the reader that was not promoted) are closed: no
    // session of the client is left that never ran a statement (its last statement is empty).
    let found: Record<string, string[]> = {}
    const unused = () => Object.values(found).flatMap((list) => list.filter((b) => b.endsWith(' ')))
    await eventually(
      async () => {
        found = await appBackends(lab)
        return unused().length === 0
      },
      8_000,
      'the logins made ahead and not taken to be closed',
    ).catch(() => assert.fail(`sessions that never ran a statement: ${JSON.stringify(found)}`))
  } finally {
    await sql.end()
  }
})

test('failover: with failoverLoginsAhead: false the hand-over opens one connection per host it reaches, no logins ahead', async () => {
  // Logins made ahead hold up to max - 1 sessions per client on every host the search reaches,
  // readers included, for the whole search: a reader with a tight max_connections (or pgbouncer)
  // cannot give them. Off, each host reached gets only the one hand-over connection, and the new
  // writer's other connections log in after the failover. Same load as the test above.
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 1500, endpointLagMs: 60_000 })
  let old: string | undefined
  let failoverDoneAt: number | undefined
  // Every user login (the connect plugins run for logins made ahead too) on a host other than the
  // lost writer, from the kill until the failover ended, by host.
  const logins: Record<string, number> = {}
  const counter: HaPlugin = {
    name: 'login-counter',
    connect(ctx, next) {
      if (
        old !== undefined &&
        failoverDoneAt === undefined &&
        ctx.purpose === 'user' &&
        ctx.host.host !== old
      ) {
        const key = `${ctx.host.host}:${ctx.host.port}`
        logins[key] = (logins[key] ?? 0) + 1
      }
      return next()
    },
  }
  const sql = postgresHa(
    lab.url('cluster'),
    labClientOptions({
      max: 4,
      failoverLoginsAhead: false,
      plugins: ['connectionTracker', 'failover', 'hostMonitoring', counter],
    }),
  )
  try {
    // Four connections open on the writer at once: with logins ahead, each host reached would get
    // three of them besides its hand-over connection.
    await Promise.all(Array.from({ length: 4 }, () => sql`select pg_sleep(0.1)`))
    sql.ha.on('failover', (e) => {
      if (e.ok) failoverDoneAt = Date.now()
    })
    old = (await lab.status()).writer!
    await lab.kill(old)
    const rows = await fourStatementsRetried(sql)
    assert.ok(failoverDoneAt, 'a failover happened')
    const doneAt = failoverDoneAt
    for (const [row] of rows) assert.notEqual(row!.instance, old)
    // Client side: the hosts the search reached (the instance id is its address) got one login each.
    assert.ok(
      Object.keys(logins).length >= 1,
      `no hand-over connection was opened: ${JSON.stringify(logins)}`,
    )
    for (const [host, n] of Object.entries(logins))
      assert.ok(
        n <= 1,
        `${n} logins on ${host} during the search (logins made ahead): ${JSON.stringify(logins)}`,
      )
    // Server side: of the new writer's connections that ran the four statements, only the
    // hand-over connection was logged in before the failover ended.
    const early = new Set(
      rows.filter(([row]) => (row!.opened as Date).getTime() <= doneAt).map(([row]) => row!.pid),
    )
    assert.ok(
      early.size <= 1,
      `${early.size} connections on the new writer logged in before the failover ended`,
    )
  } finally {
    await sql.end()
  }
})

test('failover: a login made ahead that the server ended while it waited is not handed to a connection', async () => {
  // A session the server closed (here pg_terminate_backend; a restart, idle_session_timeout) must
  // not reach postgres.js as a connection: its first statement would fail on a healthy writer.
  await using lab = await sharedLab({ nodes: 3, promoteAfterMs: 1500, endpointLagMs: 60_000 })
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ max: 4 }))
  try {
    await Promise.all(Array.from({ length: 4 }, () => sql`select pg_sleep(0.1)`))
    const failedOver = new Promise<void>((resolve) =>
      sql.ha.on('failover', (e) => {
        if (e.ok) resolve()
      }),
    )
    // In flight at the kill: they fail over (FailoverSuccessError), and nothing else runs until
    // the logins made ahead were ended below.
    const lost = Array.from({ length: 4 }, () => sql`select pg_sleep(1)`.catch((error: unknown) => error))
    const old = (await lab.status()).writer!
    await lab.kill(old)
    await failedOver
    for (const error of await Promise.all(lost))
      assert.ok(error instanceof FailoverSuccessError, String(error))
    const to = sql.ha.writer()!
    const writer = (await lab.status()).nodes.find((n) => n.host === to.host && n.port === to.port)!.id
    assert.notEqual(writer, old)
    // The logins made ahead: the client's sessions on the new writer that never ran a statement.
    const own = postgres(lab.url(writer), { max: 1, onnotice: () => {} })
    try {
      const unused = () => own`select count(*)::int as n from pg_stat_activity where usename = current_user
        and pid <> pg_backend_pid() and backend_type = 'client backend' and query = ''`
      const [{ n: parked }] = (await unused()) as unknown as [{ n: number }]
      assert.ok(parked >= 1, 'logins made ahead wait on the new writer')
      await own`select pg_terminate_backend(pid) from pg_stat_activity where usename = current_user
        and pid <> pg_backend_pid() and backend_type = 'client backend' and query = ''`
      await eventually(
        async () => ((await unused()) as unknown as [{ n: number }])[0].n === 0,
        5_000,
        'the ended sessions to be gone',
      )
    } finally {
      await own.end({ timeout: 1 })
    }
    const rows = await Promise.all(
      Array.from(
        { length: 4 },
        () => sql`select (select aurora_db_instance_identifier()) as instance, pg_sleep(0.1)`,
      ),
    )
    for (const [row] of rows) assert.equal(row!.instance, writer)
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
    // Load on the writer before the failover, as in production; the hand-over opens one connection
    // on each host the writer search reaches.
    await Promise.all(Array.from({ length: 4 }, () => busy()))
    old = (await lab.status()).writer!
    await lab.kill(old)
    const lost = sql`select 1`.catch((error: unknown) => error)
    await handOverStarted(warmStarted)
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
    await handOverStarted(warmStarted)
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
