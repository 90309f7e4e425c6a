/**
 * How connections are opened, as postgres.js opens them: Unix-domain sockets (a host that is a
 * directory, the `path` option, libpq's `?host=/directory`), and the user's own `socket`
 * function, called per host with the host and port postgres-ha chose, under postgres-ha's own
 * timeouts and aborts. A socket host is one host like any other: failover moves off it.
 */
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { test } from 'node:test'
import postgres from 'postgres'
import { postgresHa } from '../mod.ts'
import { settle } from './helpers/ha.ts'
import { driverClient } from './helpers/passthrough.ts'
import { startPgServer } from './helpers/pg-server.ts'
import { runningOn } from './helpers/replicas.ts'
import { silentServer } from './helpers/silent-server.ts'
import { singlePg } from './helpers/single-pg.ts'

const db = singlePg()

// biome-ignore lint/suspicious/noExplicitAny: the options postgres.js takes, including what its types omit
function client(urlOrOptions: string | Record<string, any>, options: Record<string, any> = {}) {
  const sql =
    typeof urlOrOptions === 'string'
      ? postgresHa(urlOrOptions, { onnotice: () => {}, ...options })
      : postgresHa({ onnotice: () => {}, ...urlOrOptions })
  db.track(sql)
  return sql
}

const login = () => ({ user: db.pg.user, pass: db.pg.password, database: db.pg.database })

/** Whether the session runs over a Unix-domain socket (the server sees no client address). */
const OVER_SOCKET = 'select inet_client_addr() is null as local, current_setting($1) as port'

test('sockets: a host that is a directory connects to its .s.PGSQL.<port> socket', async () => {
  const sql = client({ ...login(), host: db.pg.socketDir, port: db.pg.port })
  const [row] = await sql.unsafe(OVER_SOCKET, ['port'])
  assert.deepEqual({ ...row }, { local: true, port: String(db.pg.port) })
  assert.equal(sql.options.path, `${db.pg.socketDir}/.s.PGSQL.${db.pg.port}`)
})

test("sockets: after end(), a socket host's statements fail with postgres.js's own error, naming the socket file", async () => {
  const options = { ...login(), host: db.pg.socketDir, port: db.pg.port, onnotice: () => {} }
  const errorOf = async (sql: postgres.Sql) => {
    await sql`select 1`
    await sql.end()
    const e = (await sql`select 1`.catch((x: unknown) => x)) as Record<string, unknown>
    return { code: e.code, message: e.message, address: e.address, port: e.port }
  }
  const expected = await errorOf(postgres(options))
  assert.equal(expected.message, `write CONNECTION_ENDED ${db.pg.socketDir}/.s.PGSQL.${db.pg.port}`)
  assert.deepEqual(await errorOf(client(options)), expected)
})

test('sockets: the path option names the socket file itself', async () => {
  const sql = client({ ...login(), path: `${db.pg.socketDir}/.s.PGSQL.${db.pg.port}` })
  const [row] = await sql.unsafe(OVER_SOCKET, ['port'])
  assert.equal(row!.local, true)
})

test('sockets: ?host=/directory in the URL, with or without a host before it', async () => {
  const dir = encodeURIComponent(db.pg.socketDir)
  for (const url of [
    `postgres://${db.pg.user}:${db.pg.password}@/${db.pg.database}?host=${dir}&port=${db.pg.port}`,
    `postgres://${db.pg.user}:${db.pg.password}@localhost:${db.pg.port}/${db.pg.database}?host=${dir}`,
  ]) {
    const sql = client(url)
    const [row] = await sql.unsafe(OVER_SOCKET, ['port'])
    assert.equal(row!.local, true, url)
  }
})

test('sockets: a stopped server behind a socket directory is a connect failure', async () => {
  const gone = await startPgServer()
  const dir = gone.socketDir
  const port = gone.port
  await gone.stop()
  const sql = client({ ...login(), host: dir, port })
  const error = (await sql`select 1`.catch((e: unknown) => e)) as { code?: string }
  assert.ok(['ENOENT', 'ECONNREFUSED'].includes(error.code ?? ''), String(error))
})

test('sockets: failover moves from a socket host that died to the next one', async () => {
  const first = await startPgServer()
  try {
    const sql = client({
      user: db.pg.user,
      pass: db.pg.password,
      database: db.pg.database,
      host: [first.socketDir, db.pg.socketDir],
      port: [first.port, db.pg.port],
      dialect: 'pg',
      failoverTimeoutMs: 10_000,
      max: 2,
    })
    const portOf = async () => (await sql`select current_setting('port') as p`)[0]!.p
    assert.equal(await portOf(), String(first.port))
    await first.stop()
    // The first statement after the loss may be told the writer moved; the next runs there.
    const moved = await settle(portOf())
    if (!moved.ok) assert.equal(moved.error.code, 'FAILOVER_SUCCESS', String(moved.error))
    assert.equal(await portOf(), String(db.pg.port))
    assert.equal(sql.ha.topology()?.writer?.host ?? sql.ha.writer()?.host, db.pg.socketDir)
  } finally {
    await first.stop()
  }
})

test('sockets: the socket option is called per connection with the host and port chosen', async () => {
  const calls: Array<{ host: string[]; port: number[] }> = []
  const sql = client(db.pg.url, {
    socket: (o: { host: string[]; port: number[] }) => {
      calls.push({ host: o.host, port: o.port })
      return new Promise<Socket>((resolve, reject) => {
        const s = connect(o.port[0]!, o.host[0]!)
        s.once('connect', () => resolve(s))
        s.once('error', reject)
      })
    },
  })
  assert.equal((await sql`select 1 as x`)[0]!.x, 1)
  assert.ok(calls.length >= 1)
  for (const c of calls) assert.deepEqual(c, { host: ['127.0.0.1'], port: [db.pg.port] })
})

test('sockets: what the socket option throws fails the statement; reserve() gets it as it is', async () => {
  const sql = client(db.pg.url, {
    socket: () => {
      throw 'no tunnel'
    },
  })
  assert.equal(await sql`select 1`.catch((e: Error) => e.message), 'no tunnel')
  assert.equal(await sql.reserve().catch((e: unknown) => e), 'no tunnel')
  const nothing = client(db.pg.url, {
    socket: () => {
      throw null
    },
  })
  assert.equal(await nothing`select 1`.catch((e: Error) => e.message), 'null')
})

test('sockets: the connect timeout holds on a socket from the socket option', async () => {
  const { port } = db.closeAfter(await silentServer())
  const sql = client(`postgres://a:b@127.0.0.1:${port}/db`, {
    connect_timeout: 0.3,
    socket: (o: { host: string[]; port: number[] }) => connect(o.port[0]!, o.host[0]!),
  })
  const t0 = performance.now()
  const error = (await sql`select 1`.catch((e: unknown) => e)) as { code?: string }
  assert.equal(error.code, 'CONNECT_TIMEOUT', String(error))
  assert.ok(performance.now() - t0 < 2000)
})

test('sockets: aborting a host destroys the sockets the socket option gave', async () => {
  const given: Socket[] = []
  const { sql, pools, target } = driverClient(db.pg.url, {
    max: 1,
    socket: (o: { host: string[]; port: number[] }) => {
      const s = connect(o.port[0]!, o.host[0]!)
      given.push(s)
      return s
    },
  } as never)
  db.track(sql)
  const admin = db.track(postgres(db.pg.adminUrl, { max: 1, onnotice: () => {} }))
  await sql`select 1`
  const running = settle(sql`select pg_sleep(5) as abort_given`)
  // Aborted once it runs on the server (a fixed pause was not enough on a busy machine).
  await runningOn([admin], '%abort_given%')
  // What host monitoring and failover do to a host that stopped answering.
  pools.abort(target.host, 'test')
  const result = await running
  assert.equal(result.ok, false)
  // postgres-ha dropped it: its own error says so (issue 14), with postgres.js's as the cause.
  assert.equal(result.ok ? '' : result.error.code, 'CONNECTION_DROPPED')
  assert.ok(given.length > 0 && given.every((s) => s.destroyed))
})
