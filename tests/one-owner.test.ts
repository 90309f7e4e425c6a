// One failover drops a dead host's connections once. Host monitoring's verdict, the hostDown
// event (connection tracker), the writer change (connection tracker) and the failover plugin all
// ask for it; the first drop does it, the others find nothing left to drop.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { eventually, labClientOptions, SILENT_WRITER_LAB, settle } from './helpers/ha.ts'
import { labAdmins } from './helpers/replicas.ts'
import { sharedLab } from './helpers/shared-lab.ts'

test('a frozen writer: its connections are dropped once per failover', async () => {
  const crashes = watchCrashes()
  await using lab = await sharedLab(SILENT_WRITER_LAB)
  const drops: string[] = []
  const logger = {
    debug: (m: string, f?: Record<string, unknown>) => {
      if (m.includes('connections dropped')) drops.push(`${f?.host} ${f?.reason}`)
    },
    info() {},
    warn() {},
    error() {},
  }
  const sql = postgresHa(lab.url('cluster'), labClientOptions({ logger, max: 3 }))
  let failovers = 0
  sql.ha.on('failover', (e) => e.ok && failovers++)
  const old = (await lab.status()).writer!
  const admins = labAdmins(lab)
  try {
    await sql`select 1`
    const work = [settle(sql`select pg_sleep(10)`), settle(sql`select pg_sleep(10)`)]
    // Both run on the writer before it freezes (the second needs a new connection first, which a
    // busy machine does not log in within a fixed pause).
    await eventually(
      async () =>
        (
          await admins.admin(old)`select 1 from pg_stat_activity where state = 'active'
          and query = 'select pg_sleep(10)'`
        ).length === 2,
      10_000,
      'the two statements running on the writer',
    )
    await lab.freeze(old)
    await Promise.all(work)
    await eventually(() => failovers === 1, 10_000, 'the failover')
    // Late requests (the topology's writer change) come within the next reads.
    await new Promise((r) => setTimeout(r, 1_000))
    const ofOld = drops.filter((d) => d.startsWith(`${old}:`))
    assert.equal(ofOld.length, 1, ofOld.join('\n'))
  } finally {
    await sql.end({ timeout: 1 })
    await admins.end()
    await lab.heal()
    crashes.stop()
  }
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})
