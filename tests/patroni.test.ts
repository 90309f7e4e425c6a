// A real Patroni cluster (etcd + 3 Patroni members, Debian packages `patroni etcd-server
// etcd-client`): the lab's Patroni manager, and postgres-ha recovering from what Patroni does.
// One cluster for the file: Patroni needs ~7 s (ttl) to replace a killed leader. Under the suite's
// runner the three runtimes' copies take turns on one cluster (tests/helpers/shared-lab.ts): its
// start costs ~4 s of CPU, mostly Python. Nothing here assumes which member leads. Without the
// packages every test is skipped, and `npm test` says so in one line.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import { type Lab, type LabStatus, nowMs } from '../lab/mod.ts'
import { findPatroniBins, PATRONI_PACKAGES } from '../lab/patroni/config.ts'
import {
  FailoverFailedError,
  FailoverSuccessError,
  type PostgresHaOptions,
  type PostgresHaSql,
  postgresHa,
} from '../mod.ts'
import { eventually, settle } from './helpers/ha.ts'
import { sleep } from './helpers/lab.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const skip = findPatroniBins() === undefined
if (skip) console.error(`patroni tests skipped: apt-get install -y ${PATRONI_PACKAGES}`)

let lab: Lab

before(async () => {
  if (skip) return
  lab = await sharedLab({ manager: 'patroni', nodes: 3 })
})

after(async () => {
  await lab?.down()
})

interface PatroniMember {
  name: string
  role: string
  state: string
  host: string
  port: number
}

async function patroniCluster(): Promise<PatroniMember[]> {
  const status = await lab.status()
  const res = await fetch(`${status.patroni!.members[0]!.restUrl}/cluster`)
  return ((await res.json()) as { members: PatroniMember[] }).members
}

test('patroni lab: three members, one writer, and Patroni names the same leader', { skip }, async () => {
  const status = await lab.status()
  assert.equal(status.manager, 'patroni')
  assert.equal(status.nodes.length, 3)
  const writers = status.nodes.filter((n) => n.role === 'writer')
  assert.equal(writers.length, 1)
  assert.equal(status.nodes.filter((n) => n.role === 'reader').length, 2)
  const members = await patroniCluster()
  assert.equal(members.length, 3)
  const leader = members.find((m) => m.role === 'leader')!
  assert.equal(leader.host, writers[0]!.host)
  assert.equal(leader.port, status.port)
  assert.ok(
    members.some((m) => m.role === 'sync_standby'),
    'synchronous_mode is on: one member is the sync standby',
  )
})

/** A write loop: one insert every 10 ms; what each write's caller was told. */
function writeLoop(sql: PostgresHaSql, client: string) {
  const acked: number[] = []
  const failed: { id: number; error: unknown }[] = []
  const ackedOn = new Map<number, string>()
  let stop = false
  let next = 0
  const done = (async () => {
    for (let i = 0; !stop && i < 20_000; i++) {
      const id = ++next
      try {
        const [row] =
          await sql`insert into w (id, client) values (${id}, ${client}) returning host(inet_server_addr()) as inst`
        acked.push(id)
        ackedOn.set(id, row!.inst as string)
      } catch (error) {
        failed.push({ id, error })
      }
      await new Promise((r) => setTimeout(r, 10))
    }
  })()
  return {
    acked,
    failed,
    ackedOn,
    /** Ids acknowledged by `inst`. */
    on: (inst: string) => acked.filter((id) => ackedOn.get(id) === inst),
    stop: async () => {
      stop = true
      await done
    },
  }
}

/** Lost (acknowledged, absent) and duplicated (stored twice) writes of `client`, read on the writer. */
async function ledger(client: string, acked: number[]) {
  const status = await lab.status()
  const direct = postgres(lab.url(status.writer!), { max: 1, onnotice: () => {} })
  try {
    const rows = await direct`select id, count(*)::int as n from w where client = ${client} group by id`
    const counts = new Map(rows.map((r) => [r.id as number, r.n as number]))
    return {
      lost: acked.filter((id) => !counts.has(id)).length,
      duplicated: rows.filter((r) => (r.n as number) > 1).length,
    }
  } finally {
    await direct.end()
  }
}

function allHostsUrl(status: LabStatus): string {
  const hosts = status.nodes.map((n) => `${n.host}:${n.port}`).join(',')
  return `postgres://${status.user}:${status.password}@${hosts}/${status.database}`
}

const clientOptions = (extra: PostgresHaOptions = {}): PostgresHaOptions => ({
  failoverTimeoutMs: 40_000,
  connectTimeoutMs: 5_000,
  max: 2,
  // Patroni's switchover ends sessions waiting for the sync standby with a WARNING notice.
  onnotice: () => {},
  ...extra,
})

/**
 * Runs `fault` while three clients write: one host given with `dialect: 'patroni'`, one host
 * given and the dialect detected, every host given. Each must lose and duplicate nothing, and go
 * on writing on the new leader.
 */
async function writesSurvive(trial: string, fault: (oldWriter: string) => Promise<void>): Promise<string> {
  const status = await lab.status()
  const old = status.writer!
  const restPort = status.patroni!.restPort
  const clients = {
    // Distinct cluster ids: clients of one cluster id share a monitor, and its dialect.
    explicit: postgresHa(
      lab.url(old),
      clientOptions({ dialect: 'patroni', patroniRestPort: restPort, clusterId: 'explicit' }),
    ),
    detected: postgresHa(lab.url(old), clientOptions({ patroniRestPort: restPort, clusterId: 'detected' })),
    allHosts: postgresHa(allHostsUrl(status), clientOptions({ patroniRestPort: restPort, clusterId: 'all' })),
  }
  try {
    for (const sql of Object.values(clients)) await sql`select 1`
    const loops = Object.entries(clients).map(([client, sql]) => {
      const name = `${trial}-${client}`
      return { name, sql, loop: writeLoop(sql, name) }
    })
    await sleep(300)
    const before = nowMs()
    // Awaited once the loops stop: a switchover returns only once the old leader has rejoined,
    // seconds after the new one took writes, and writing on through that cost CPU and proved nothing.
    const faulted = fault(old)
    faulted.catch(() => {})
    const writerReady = lab.waitForEvent('writer-ready', { afterMs: before, timeoutMs: 60_000 })
    writerReady.catch(() => {})
    // A fault that fails ends the wait at once.
    const ready = await Promise.race([writerReady, faulted.then(() => writerReady)])
    assert.notEqual(ready.node, old)
    // Every client must write on the new leader, within a bound well below failoverTimeoutMs.
    await eventually(
      () => loops.every((l) => l.loop.on(ready.node!).length >= 3),
      30_000,
      'writes on the new leader',
    )
    for (const l of loops) await l.loop.stop()
    await faulted
    for (const l of loops) {
      const { lost, duplicated } = await ledger(l.name, l.loop.acked)
      assert.equal(lost, 0, `${l.name}: acknowledged writes lost`)
      assert.equal(duplicated, 0, `${l.name}: writes stored twice`)
      for (const f of l.loop.failed) {
        assert.ok(
          f.error instanceof FailoverSuccessError,
          `${l.name}: write ${f.id} failed with ${String(f.error)}`,
        )
      }
      assert.equal(l.sql.ha.writer()?.host, ready.node, `${l.name} routes writes to the new leader`)
    }
    return old
  } finally {
    await Promise.all(Object.values(clients).map((sql) => sql.end()))
  }
}

test('patroni: one host given, dialect patroni — the topology shows every member with roles, sync standby and lag', {
  skip,
}, async () => {
  const status = await lab.status()
  const sql = postgresHa(
    lab.url(status.writer!),
    clientOptions({ dialect: 'patroni', patroniRestPort: status.patroni!.restPort }),
  )
  try {
    await sql`create table w (seq bigint generated always as identity primary key, id int not null, client text not null)`
    const t = (await sql.ha.refreshTopology())!
    assert.equal(t.hosts.length, 3)
    assert.equal(t.writer?.host, status.writer)
    assert.equal(t.writer?.lagMs, 0)
    const names = new Map(status.patroni!.members.map((m) => [m.id, m.name]))
    for (const h of t.hosts) assert.equal(h.id, names.get(h.host), 'member names from Patroni')
    assert.equal(t.readers.length, 2)
    for (const r of t.readers) {
      assert.equal(r.role, 'reader')
      assert.equal(typeof r.lagMs, 'number', `lag of ${r.host} from the leader's pg_stat_replication`)
      assert.equal(typeof r.lagBytes, 'number', `lag of ${r.host} in bytes from Patroni`)
    }
    assert.equal(t.readers.filter((r) => r.synchronous).length, 1, 'one synchronous standby')
  } finally {
    await sql.end()
  }
})

test('patroni: a replica given as the one host — every replica still gets its lag in ms from the leader', {
  skip,
}, async () => {
  const status = await lab.status()
  const replica = status.nodes.find((n) => n.role === 'reader')!
  // The topology connection goes to the host given: a replica, as after a failover the old leader is.
  const sql = postgresHa(
    lab.url(replica.id),
    clientOptions({ dialect: 'patroni', patroniRestPort: status.patroni!.restPort }),
  )
  try {
    const t = (await sql.ha.refreshTopology())!
    assert.equal(t.writer?.host, status.writer)
    assert.equal(t.readers.length, 2)
    for (const r of t.readers)
      assert.equal(typeof r.lagMs, 'number', `lag of ${r.host} from the leader's pg_stat_replication`)
  } finally {
    await sql.end()
  }
})

test('patroni: switchover while writing — nothing lost or duplicated, one host or all given', {
  skip,
}, async () => {
  await writesSurvive('switchover', () => lab.switchover())
  await lab.waitForWriter({ timeoutMs: 60_000 })
})

let killed: string | undefined

test('patroni: leader killed while writing — nothing lost or duplicated, one host or all given', {
  skip,
}, async () => {
  killed = await writesSurvive('kill', (old) => lab.kill(old))
})

test('patroni: the killed leader rejoins as a reader and gets reads', { skip }, async () => {
  assert.ok(killed, 'runs after the kill test')
  await lab.start(killed)
  await lab.waitForWriter({ timeoutMs: 60_000 })
  const status = await lab.status()
  const sql = postgresHa(
    lab.url(status.writer!),
    clientOptions({
      dialect: 'patroni',
      patroniRestPort: status.patroni!.restPort,
      targetRole: 'reader',
      max: 1,
    }),
  )
  try {
    await eventually(
      async () => {
        const t = await sql.ha.refreshTopology()
        return t?.readers.some((r) => r.host === killed && r.role === 'reader') === true
      },
      30_000,
      `${killed} listed as a reader`,
    )
    const seen = new Set<string>()
    for (let i = 0; i < 200 && !seen.has(killed); i++) {
      const [row] = await sql`select host(inet_server_addr()) as inst, pg_is_in_recovery() as standby`
      assert.equal(row!.standby, true, 'reads go to standbys')
      seen.add(row!.inst as string)
    }
    assert.ok(seen.has(killed), `no read reached ${killed}; reads went to ${[...seen].join(', ')}`)
  } finally {
    await sql.end()
  }
})

test('patroni: a single-host pg client on a replica warns at start and fails fast instead of searching', {
  skip,
}, async () => {
  const status = await lab.status()
  const replica = status.nodes.find((n) => n.role === 'reader')!.id
  const warnings: string[] = []
  const sql = postgresHa(
    lab.url(replica),
    clientOptions({
      dialect: 'pg',
      clusterId: 'single-pg',
      logger: { warn: (m: string) => warnings.push(m) },
    }),
  )
  try {
    await sql`select 1`
    assert.equal(warnings.filter((w) => /one host/.test(w)).length, 1, `warnings: ${warnings.join(' | ')}`)
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now()
      const r = await settle(sql`insert into w (id, client) values (${-1}, 'single')`)
      const ms = performance.now() - t0
      assert.equal(r.ok, false)
      assert.ok(r.error instanceof FailoverFailedError, `got ${String(r.error)}`)
      assert.match(r.error.message, /only host/)
      assert.ok(ms < 2_000, `failed after ${Math.round(ms)} ms, not at once`)
    }
  } finally {
    await sql.end()
  }
})
