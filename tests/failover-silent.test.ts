// A writer that goes silent without closing its sockets — black-holed network or frozen server —
// is noticed by host monitoring, and failover follows; mid-statement and while idle.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Lab } from '../lab/mod.ts'
import { FailoverSuccessError, type PostgresHaSql, postgresHa } from '../mod.ts'
import { FAST_DETECTION, labClientOptions, restoreNode, SILENT_WRITER_LAB, settle } from './helpers/ha.ts'
import { labAdmins, runningOn } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

let lab: Lab
let sql: PostgresHaSql
const downs: Array<{ host: string; reason: string; at: number }> = []

// Detection budget with these settings: 200 ms grace + 2 probes of 500 ms, plus the lab's own
// promotion (probe timeout 500 ms + promoteAfterMs 200 ms). Generous bound: a test must not flake.
const DETECTION_BOUND_MS = 6_000

before(async () => {
  lab = await sharedLab(SILENT_WRITER_LAB)
  sql = postgresHa(lab.url('cluster'), labClientOptions(FAST_DETECTION))
  sql.ha.on('hostDown', (e) => downs.push({ host: e.host.host, reason: e.reason, at: performance.now() }))
  await sql`select 1`
})

after(async () => {
  await sql?.end()
  await lab?.down()
})

for (const [fault, name] of [
  ['blackhole', 'black-holed'],
  ['freeze', 'frozen'],
] as const) {
  test(`failover: ${name} writer mid-statement — detected by host monitoring, FailoverSuccessError`, async () => {
    const old = (await lab.status()).writer!
    const admins = labAdmins(lab)
    try {
      const running = settle(sql`select pg_sleep(10)`)
      // The fault lands once the statement runs on the writer, not after a fixed pause.
      await runningOn([admins.admin(old)], 'select pg_sleep(10)')
      const faultAt = performance.now()
      await lab[fault](old)
      const result = await running
      const took = performance.now() - faultAt
      assert.equal(result.ok, false)
      if (result.ok) return
      assert.ok(result.error instanceof FailoverSuccessError, `got ${result.error}`)
      assert.ok(took < DETECTION_BOUND_MS, `took ${Math.round(took)} ms`)
      const down = downs.find((d) => d.host === old && d.at >= faultAt)
      assert.ok(down, 'host monitoring reported the host down')
      assert.match(down.reason, /probes/)
      const [row] = await sql`select pg_catalog.aurora_db_instance_identifier() as id`
      assert.notEqual(row!.id, old)
    } finally {
      await admins.end()
      // In finally: the next tests share this lab.
      await restoreNode(lab, old)
    }
  })

  test(`failover: ${name} writer while idle — the next statement fails over instead of hanging`, async () => {
    const old = (await lab.status()).writer!
    try {
      await sql`select 1`
      const faultAt = performance.now()
      await lab[fault](old)
      const result = await settle(
        sql`insert into pg_temp.nothing select 1 where false`.catch(() => sql`select 2 as two`),
      )
      const took = performance.now() - faultAt
      // The statement went out on a socket that looked healthy: it may have reached the server, so the
      // caller is told (FailoverSuccessError) unless it never left; either way nothing hangs.
      if (!result.ok) assert.ok(result.error instanceof FailoverSuccessError, `got ${result.error}`)
      assert.ok(took < DETECTION_BOUND_MS, `took ${Math.round(took)} ms`)
      const [row] =
        await sql`select pg_catalog.aurora_db_instance_identifier() as id, pg_is_in_recovery() as r`
      assert.notEqual(row!.id, old)
      assert.equal(row!.r, false)
    } finally {
      await restoreNode(lab, old)
    }
  })
}
