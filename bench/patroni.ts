/**
 * `patroni`: failover on a real Patroni cluster (the lab's `--manager patroni`: etcd + 3 Patroni
 * members, ttl 10, loop_wait 1, synchronous_mode). In every trial three clients write one row
 * every 10 ms through the same fault — postgres-ha given one host (the dialect detected from
 * Patroni's REST API), postgres-ha given every host, and plain postgres.js given every host with
 * `target_session_attrs: 'primary'` — so their driver-added downtime (first write on the new
 * leader − the moment it accepted writes) is compared under the very same failovers.
 *
 * Usage: `node --import tsx bench/patroni.ts [--trials 5] [--scenarios switchover,kill] [--no-save]`
 * (or `deno run -A`, `bun`; `npm run bench -- --manager patroni` runs it on every runtime). One
 * JSON document on stdout, also written to `bench/results/<runtime>-patroni.json`.
 *
 * @module
 */
import postgres from 'postgres'
import { startLab } from '../lab/mod.ts'
import { postgresHa } from '../mod.ts'
import { listFlag, parseFlags } from './lib/args.ts'
import { emit, machineInfo, nowMs, progress, runtimeInfo } from './lib/report.ts'
import { ratio, summarize } from './lib/stats.ts'
import { describeTrial, runTrial, type TrialClient, type TrialResult } from './lib/trial.ts'
import type { AnySql } from './lib/write-loop.ts'

const SCENARIOS = ['switchover', 'kill'] as const
type PatroniScenario = (typeof SCENARIOS)[number]

const flags = parseFlags('bench/patroni.ts', {
  trials: { default: 5, help: 'trials per scenario (a Patroni kill takes ~ttl = 10 s, plus the rejoin)' },
  scenarios: { default: SCENARIOS.join(','), help: 'comma-separated: switchover, kill' },
  'cap-ms': { default: 30_000, help: 'give up on a trial this long after the fault' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-patroni.json' },
})
const scenarios = listFlag('scenarios', flags.scenarios, SCENARIOS)
const started = performance.now()
const startedAt = new Date().toISOString()

progress('patroni', 'Patroni lab up (etcd + 3 members)')
await using lab = await startLab({ manager: 'patroni', nodes: 3 })
const status = await lab.status()
const restPort = status.patroni!.restPort
const allHosts = `postgres://${status.user}:${encodeURIComponent(status.password)}@${status.nodes
  .map((n) => `${n.host}:${n.port}`)
  .join(',')}/${status.database}`

// The ledger of the shared trial code, with the committing member's address as `inst`.
{
  const sql = postgres(lab.url(status.writer!), { max: 1, onnotice: () => {} })
  await sql.unsafe(`create table if not exists bench_writes (
    seq bigint generated always as identity primary key,
    id bigint not null,
    trial int not null,
    client text not null,
    inst text not null default host(inet_server_addr()),
    at timestamptz not null default clock_timestamp()
  )`)
  await sql.end()
}

/** postgres-ha, telling when it first noticed the fault. */
function haClient(url: string, clusterId: string): TrialClient['make'] {
  return async () => {
    const sql = postgresHa(url, { patroniRestPort: restPort, clusterId, onnotice: () => {} })
    const seen: number[] = []
    sql.ha.on('hostDown', () => seen.push(nowMs()))
    sql.ha.on('failoverStart', () => seen.push(nowMs()))
    await sql`select 1`
    return {
      sql: sql as unknown as AnySql,
      detectedAfter: (faultMs: number) => seen.find((t) => t >= faultMs),
      end: () => sql.end({ timeout: 1 }),
    }
  }
}

const clients = (): TrialClient[] => {
  const writer = status.writer!
  return [
    { label: 'postgres-ha one host', make: haClient(lab.url(writer), 'bench-one') },
    { label: 'postgres-ha all hosts', make: haClient(allHosts, 'bench-all') },
    {
      label: 'postgres.js multi-host',
      make: async () => {
        const sql = postgres(allHosts, { target_session_attrs: 'primary', onnotice: () => {} })
        await sql`select 1`
        return { sql, end: () => sql.end({ timeout: 0 }) }
      },
    },
  ]
}

let id = 0
const report: Partial<Record<PatroniScenario, unknown>> = {}
for (const scenario of scenarios) {
  const results: TrialResult[] = []
  for (let trial = 1; trial <= flags.trials; trial++) {
    // One host given: the current leader, as a user would after reading the cluster's state.
    status.writer = (await lab.status()).writer
    const rs = await runTrial({
      lab,
      scenario,
      trial,
      clients: clients(),
      nextId: () => ++id,
      capMs: flags['cap-ms'],
    })
    for (const r of rs) progress('patroni', describeTrial(r))
    results.push(...rs)
  }
  const byClient: Record<string, unknown> = {}
  for (const label of new Set(results.map((r) => r.client))) {
    const mine = results.filter((r) => r.client === label)
    byClient[label] = {
      driverAddedMs: summarize(mine.map((r) => r.driverAddedMs)),
      firstWriteMs: summarize(mine.map((r) => r.firstWriteMs)),
      promotionMs: summarize(mine.map((r) => r.promotionMs)),
      capped: mine.filter((r) => r.capped).length,
      lost: mine.reduce((n, r) => n + r.ledger.lost, 0),
      duplicated: mine.reduce((n, r) => n + r.ledger.duplicated, 0),
    }
  }
  const median = (label: string) =>
    (byClient[label] as { driverAddedMs: { p50: number | null } } | undefined)?.driverAddedMs.p50
  report[scenario] = {
    byClient,
    // Below 1: postgres-ha adds less downtime than postgres.js multi-host in the same trials.
    driverAddedRatioOneHost: ratio(median('postgres-ha one host'), median('postgres.js multi-host')),
    driverAddedRatioAllHosts: ratio(median('postgres-ha all hosts'), median('postgres.js multi-host')),
    results,
  }
}

emit(
  'patroni',
  {
    part: 'patroni',
    runtime: runtimeInfo(),
    machine: machineInfo(),
    startedAt,
    durationMs: Math.round(performance.now() - started),
    lab: { manager: 'patroni', nodes: 3, pgVersion: status.pgVersion, patroni: status.patroni },
    workload: 'one single-row insert at a time, started every 10 ms, per client; fresh clients per trial',
    trialsPerScenario: flags.trials,
    scenarios: report,
  },
  !flags['no-save'],
)
