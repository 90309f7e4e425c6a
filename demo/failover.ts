/**
 * `npm run demo`: a live failover on the built-in lab. Two write loops run side by side — one
 * through postgres-ha, one through plain postgres.js on the cluster endpoint, as most applications
 * connect today — then the writer is killed and a timeline shows who writes again when. A client
 * writes again only when the new writer acknowledges one of its writes (each insert returns the
 * instance that committed it): a write in flight on the old writer and acknowledged just after the
 * kill is not recovery.
 *
 * Flags: --endpoint-lag-ms N (default 30000: the cluster DNS name follows the writer this late),
 * --promote-after-ms N (default 1000), --nodes N (default 3).
 */
import postgres from 'postgres'
import { type LabEvent, startLab } from '../lab/mod.ts'
import { postgresHa } from '../mod.ts'
import { createDemoTable, startWriteLoop } from './write-loop.ts'

const flags = parseFlags(process.argv.slice(2))
const now = () => performance.timeOrigin + performance.now()
const log = (line = '') => process.stdout.write(`${line}\n`)
const progress = (line: string) => process.stderr.write(`${line}\n`)

progress('starting a local Aurora-like cluster (real PostgreSQL servers)...')
const t0 = now()
await using lab = await startLab({
  nodes: flags.nodes,
  promoteAfterMs: flags.promoteAfterMs,
  endpointLagMs: flags.endpointLagMs,
})
const status = await lab.status()
log(
  `postgres-ha failover demo — ${status.nodes.length} PostgreSQL ${status.pgVersion ?? ''} instances, up in ${ms(now() - t0)}`,
)
log(
  `  writer ${status.writer}, readers ${status.nodes
    .filter((n) => n.role === 'reader')
    .map((n) => n.id)
    .join(', ')}`,
)
log(
  `  cluster endpoint ${status.clusterEndpoint.host}:${status.port} follows the writer ${flags.endpointLagMs} ms late, like DNS`,
)
log()

const ha = postgresHa(lab.url('cluster'), { failoverTimeoutMs: 60_000, max: 2 })
const plain = postgres(lab.url('cluster'), { max: 2, onnotice: () => {}, connect_timeout: 5 })
await createDemoTable(ha, 'demo_ha')
await createDemoTable(ha, 'demo_plain')
const failovers: Array<{ at: number; what: string }> = []
ha.ha.on('failoverStart', (e) =>
  failovers.push({
    at: now(),
    what: `postgres-ha: connection to ${e.from?.host} lost (${e.reason}), looking for the writer`,
  }),
)
ha.ha.on('failover', (e) =>
  failovers.push({
    at: now(),
    what: e.ok
      ? `postgres-ha: new writer ${e.to?.host} verified writable (search took ${ms(e.tookMs)})`
      : 'postgres-ha: failover failed',
  }),
)

log('two write loops, one insert every 10 ms each:')
log(`  postgres-ha  → ${lab.url('cluster').replace(/:[^:@/]+@/, ':***@')}`)
log('  postgres.js  → the same cluster endpoint')
const haLoop = startWriteLoop(ha, 'demo_ha')
const plainLoop = startWriteLoop(plain, 'demo_plain')
await new Promise((r) => setTimeout(r, 1_000))

const killRequested = now() - 5
await lab.kill('writer')
// The lab's own timestamp of the kill, not the moment we asked for it.
const killAt = (await lab.waitForEvent('fault', { afterMs: killRequested, timeoutMs: 10_000 })).atMs
log()
log(`kill -9 of the writer ${status.writer} (postmaster and every backend at once)`)
const ready = await lab.waitForEvent('writer-ready', { afterMs: killAt, timeoutMs: 60_000 })
const fault = { oldWriter: status.writer!, faultMs: killAt, newWriter: ready.node }
const capMs = flags.endpointLagMs + 15_000
const ticker = setInterval(
  () => progress(`  ... waiting for plain postgres.js to write again (${ms(now() - killAt)} since the kill)`),
  5_000,
)
while (plainLoop.firstRecovery(fault) === undefined && now() - killAt < capMs)
  await new Promise((r) => setTimeout(r, 50))
clearInterval(ticker)
await new Promise((r) => setTimeout(r, 300))
await Promise.all([haLoop.stop(), plainLoop.stop()])

const events = (await lab.events()).filter((e) => e.atMs >= killAt && e.type !== 'fault')
const haFirst = haLoop.firstRecovery(fault)?.endMs
const plainFirst = plainLoop.firstRecovery(fault)?.endMs
const rows: Array<{ at: number; what: string }> = [
  { at: killAt, what: `kill -9 writer ${status.writer}` },
  ...events.map((e: LabEvent) => ({ at: e.atMs, what: describeEvent(e) })),
  ...failovers.filter((f) => f.at >= killAt),
  ...(haLoop.stats.firstErrorAt && haLoop.stats.firstErrorAt >= killAt
    ? [
        {
          at: haLoop.stats.firstErrorAt,
          what: 'postgres-ha: the write in flight rejects with FailoverSuccessError; re-run at once',
        },
      ]
    : []),
  ...(haFirst
    ? [
        {
          at: haFirst,
          what: `postgres-ha: first write acknowledged by ${ready.node} — ${ms(haFirst - ready.atMs)} after it was ready`,
        },
      ]
    : []),
  ...(plainFirst
    ? [
        {
          at: plainFirst,
          what: `postgres.js: first write acknowledged by ${ready.node} — ${ms(plainFirst - ready.atMs)} after it was ready`,
        },
      ]
    : [{ at: killAt + capMs, what: `postgres.js: still not writing after ${ms(capMs)}` }]),
].sort((a, b) => a.at - b.at)

log()
log('timeline (from the kill):')
for (const r of rows) log(`  ${`+${ms(r.at - killAt)}`.padStart(10)}  ${r.what}`)

const check = async (sql: postgres.Sql, table: string, loop: ReturnType<typeof startWriteLoop>) => {
  const stored = new Set((await sql`select id from ${sql(table)}`).map((r) => r.id as number))
  const lost = [...loop.stats.acknowledged].filter((id) => !stored.has(id)).length
  const errors = [...loop.stats.errors].map(([k, v]) => `${v} × ${k}`).join(', ') || 'none'
  return `${loop.stats.acknowledged.size} writes acknowledged, ${lost} lost; errors seen: ${errors}`
}
log()
log('summary:')
log(
  `  postgres-ha  downtime ${haFirst ? ms(haFirst - killAt) : '—'} (driver-added ${haFirst ? ms(haFirst - ready.atMs) : '—'}); ${await check(ha, 'demo_ha', haLoop)}`,
)
log(
  `  postgres.js  downtime ${plainFirst ? ms(plainFirst - killAt) : `> ${ms(capMs)}`}; ${await check(ha, 'demo_plain', plainLoop)}`,
)
log(
  `  the lab promoted a reader ${ms(ready.atMs - killAt)} after the kill (promoteAfterMs ${flags.promoteAfterMs})`,
)

await Promise.all([ha.end(), plain.end({ timeout: 1 })])

function describeEvent(e: LabEvent): string {
  const endpoint = e.detail?.endpoint
  if (e.type === 'endpoint-moved')
    return `lab: the ${endpoint ?? ''} endpoint now points at ${e.detail?.to ?? e.node}`
  if (e.type === 'writer-ready') return `lab: new writer ${e.node} accepts writes`
  return `lab: ${e.type}${e.node ? ` ${e.node}` : ''}`
}

function ms(value: number): string {
  return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`
}

function parseFlags(argv: string[]) {
  const out = { endpointLagMs: 30_000, promoteAfterMs: 1_000, nodes: 3 }
  const names: Record<string, keyof typeof out> = {
    '--endpoint-lag-ms': 'endpointLagMs',
    '--promote-after-ms': 'promoteAfterMs',
    '--nodes': 'nodes',
  }
  for (let i = 0; i < argv.length; i++) {
    const key = names[argv[i]!]
    const value = Number(argv[i + 1])
    if (!key || !Number.isInteger(value) || value < 0) {
      process.stderr.write(
        `usage: npm run demo -- [--endpoint-lag-ms N] [--promote-after-ms N] [--nodes N]\n`,
      )
      process.exit(2)
    }
    out[key] = value
    i++
  }
  return out
}
