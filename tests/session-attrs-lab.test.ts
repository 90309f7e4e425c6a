// libpq's target_session_attrs on a real cluster, every value, as an option, a URL parameter and
// PGTARGETSESSIONATTRS: where `sql` itself runs; read-write/read-only honour
// default_transaction_read_only; load_balance_hosts=random is accepted (URL and option).
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import postgres from 'postgres'
import { ADMIN_PASSWORD, ADMIN_USER } from '../lab/instance.ts'
import type { Lab, LabStatus } from '../lab/mod.ts'
import { NoReaderAvailableError, NoWriterAvailableError, type PostgresHaSql, postgresHa } from '../mod.ts'
import { allInstancesUrl, labClientOptions } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let status: LabStatus
let url: string
let readers: string[]
const clients: PostgresHaSql[] = []

const WHO = "select current_setting('pgha_lab.instance_id') as id"

function client(u: string, options: Parameters<typeof labClientOptions>[0] = {}): PostgresHaSql {
  const sql = postgresHa(u, labClientOptions(options))
  clients.push(sql)
  return sql
}

/** Where 20 statements of `sql` ran. */
async function hostsOf(sql: PostgresHaSql): Promise<Set<string>> {
  const seen = new Set<string>()
  for (let i = 0; i < 20; i++) seen.add((await sql.unsafe(WHO))[0]!.id)
  return seen
}

before(async () => {
  lab = await sharedLab({ nodes: 3, dialect: 'pg', endpointLagMs: 0 })
  status = await lab.status()
  // A self-managed cluster as libpq users write it: every host listed.
  url = allInstancesUrl(lab, status)
  readers = status.nodes.filter((n) => n.role === 'reader').map((n) => n.id)
})

after(async () => {
  await Promise.all(clients.map((c) => c.end({ timeout: 1 })))
  await lab?.down()
})

test('session-attrs: each target_session_attrs value decides where sql runs (option, URL, environment)', async () => {
  const expect = {
    primary: [status.writer!],
    'read-write': [status.writer!],
    standby: readers,
    'read-only': readers,
    'prefer-standby': readers,
    any: status.nodes.map((n) => n.id),
  } as const
  for (const [attrs, hosts] of Object.entries(expect)) {
    const viaOption = client(url, { target_session_attrs: attrs as never })
    const viaUrl = client(`${url}?target_session_attrs=${attrs}&load_balance_hosts=random`)
    for (const sql of [viaOption, viaUrl]) {
      const seen = await hostsOf(sql)
      for (const id of seen) assert.ok((hosts as readonly string[]).includes(id), `${attrs}: ran on ${id}`)
      // Readers (and any host) share the statements.
      if (attrs !== 'any') assert.deepEqual([...seen].sort(), [...hosts].sort(), `${attrs}: ${[...seen]}`)
    }
  }
  process.env.PGTARGETSESSIONATTRS = 'standby'
  process.env.PGLOADBALANCEHOSTS = 'random'
  try {
    const viaEnv = client(url)
    for (const id of await hostsOf(viaEnv)) assert.ok(readers.includes(id))
  } finally {
    delete process.env.PGTARGETSESSIONATTRS
    delete process.env.PGLOADBALANCEHOSTS
  }
})

test('session-attrs: read-write and read-only honour default_transaction_read_only; standby has no fallback, prefer-standby does', async () => {
  const adminUrl = new URL(lab.url(status.writer!))
  adminUrl.username = ADMIN_USER
  adminUrl.password = ADMIN_PASSWORD
  const admin = postgres(adminUrl.toString(), { max: 1, onnotice: () => {} })
  try {
    await admin`alter role ${admin(status.user)} set default_transaction_read_only = on`
    const readWrite = client(url, { target_session_attrs: 'read-write' })
    const error = await readWrite.unsafe(WHO).catch((e: unknown) => e)
    assert.ok(error instanceof NoWriterAvailableError, `expected NoWriterAvailableError, got ${error}`)
    const primary = client(url, { target_session_attrs: 'primary' })
    assert.equal((await primary.unsafe(WHO))[0]!.id, status.writer)
    // read-only: a primary whose sessions start read-only serves reads, as in libpq.
    const readOnly = client(url, { target_session_attrs: 'read-only' })
    assert.ok((await hostsOf(readOnly)).has(status.writer!))
  } finally {
    await admin`alter role ${admin(status.user)} reset default_transaction_read_only`
    await admin.end({ timeout: 0 })
  }
  // Both readers stopped: standby refuses, prefer-standby runs on the primary.
  const standby = client(url, { target_session_attrs: 'standby' })
  const prefer = client(url, { target_session_attrs: 'prefer-standby' })
  await Promise.all([standby.unsafe(WHO), prefer.unsafe(WHO)])
  await Promise.all(readers.map((id) => lab.stop(id)))
  try {
    // A clean shutdown terminates sessions (57P01): at most a statement in flight could see it.
    const first = await standby.unsafe(WHO).catch((e: unknown) => e)
    const settled =
      first instanceof NoReaderAvailableError ? first : await standby.unsafe(WHO).catch((e: unknown) => e)
    assert.ok(settled instanceof NoReaderAvailableError, `expected NoReaderAvailableError, got ${settled}`)
    let onPrimary = false
    for (let i = 0; i < 3 && !onPrimary; i++)
      onPrimary = (await prefer.unsafe(WHO).catch(() => [{ id: '' }]))[0]!.id === status.writer
    assert.ok(onPrimary, 'prefer-standby falls back to the primary')
    for (let i = 0; i < 5; i++) assert.equal((await prefer.unsafe(WHO))[0]!.id, status.writer)
  } finally {
    await Promise.all(readers.map((id) => lab.start(id)))
  }
})
