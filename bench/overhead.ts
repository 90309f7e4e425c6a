/**
 * `overhead`: what postgres-ha with its default plugins adds to a healthy cluster. The same
 * workload — `select $1` and single-row inserts, 10 concurrent — through raw postgres.js and
 * through postgres-ha on the same lab writer, in short rounds that alternate which goes first.
 * Shared machines are noisy, so each round pairs the two clients and the headline figures are
 * medians over rounds: throughput ratio (postgres-ha ÷ raw), added p50 latency per query, and the
 * added client CPU time per query (`process.cpuUsage`, where the runtime has it); p99 is pooled.
 *
 * Targets: throughput ratio ≥ 0.97 and added p50 ≤ 20 µs, for each workload.
 *
 * Usage: `node --import tsx bench/overhead.ts [--queries 20000] [--rounds 10] [--concurrency 10] [--no-save]`.
 * `--queries` is per workload and per client, split over the rounds.
 *
 * @module
 */
import postgres from 'postgres'
import { postgresHa } from '../mod.ts'
import { parseFlags } from './lib/args.ts'
import { labSettings, openBenchLab } from './lib/bench-lab.ts'
import { type Batch, runBatch } from './lib/load.ts'
import { emit, machineInfo, progress, runtimeInfo } from './lib/report.ts'
import { quantile } from './lib/stats.ts'
import type { AnySql } from './lib/write-loop.ts'

const flags = parseFlags('bench/overhead.ts', {
  queries: { default: 20_000, help: 'statements per workload and per client, over all rounds' },
  rounds: { default: 10, help: 'rounds; each alternates which client goes first' },
  concurrency: { default: 10, help: 'statements in flight at once' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-overhead.json' },
})
const started = performance.now()
const startedAt = new Date().toISOString()
const rounds = Math.max(1, Math.round(flags.rounds))
const perRound = Math.max(1, Math.floor(flags.queries / rounds))

type ClientName = 'postgres.js' | 'postgres-ha'
type Workload = 'select $1' | 'insert'
const WORKLOADS: Record<Workload, (sql: AnySql, i: number) => Promise<unknown>> = {
  'select $1': (sql, i) => sql`select ${i}::int as x`,
  insert: (sql, i) => sql`insert into bench_overhead (v) values (${i})`,
}

progress('overhead', 'lab up')
await using lab = await openBenchLab({ endpointLagMs: 0 })
const writer = (await lab.status()).writer!
const raw = postgres(lab.url(writer), { onnotice: () => {} })
const ha = postgresHa(lab.url('cluster'))
const clients: Record<ClientName, AnySql> = { 'postgres.js': raw, 'postgres-ha': ha as unknown as AnySql }
try {
  await raw`create table if not exists bench_overhead (id bigint generated always as identity primary key, v int)`
  // Warm both pools to `concurrency` open connections and prepared statements.
  for (const sql of Object.values(clients))
    for (const w of Object.values(WORKLOADS))
      await runBatch(flags.concurrency * 20, flags.concurrency, (i) => w(sql, i))

  const batches: Record<Workload, Record<ClientName, Batch[]>> = {
    'select $1': { 'postgres.js': [], 'postgres-ha': [] },
    insert: { 'postgres.js': [], 'postgres-ha': [] },
  }
  for (let round = 0; round < rounds; round++) {
    const order: ClientName[] =
      round % 2 === 0 ? ['postgres.js', 'postgres-ha'] : ['postgres-ha', 'postgres.js']
    for (const workload of Object.keys(WORKLOADS) as Workload[]) {
      for (const name of order) {
        const batch = await runBatch(perRound, flags.concurrency, (i) =>
          WORKLOADS[workload](clients[name], i),
        )
        batches[workload][name].push(batch)
        progress('overhead', `round ${round + 1}/${rounds} ${workload} ${name}: ${qps(batch)} q/s`)
      }
    }
  }

  const results = Object.fromEntries(
    (Object.keys(WORKLOADS) as Workload[]).map((workload) => [workload, compare(batches[workload])]),
  ) as Record<Workload, ReturnType<typeof compare>>
  const missed = Object.entries(results).flatMap(([w, r]) => [
    ...(r.throughputRatio < 0.97 ? [`${w}: throughput ratio ${r.throughputRatio} (target ≥ 0.97)`] : []),
    ...(r.addedP50Us > 20 ? [`${w}: added p50 ${r.addedP50Us} µs (target ≤ 20 µs)`] : []),
  ])
  emit(
    'overhead',
    {
      part: 'overhead',
      runtime: runtimeInfo(),
      machine: machineInfo(),
      startedAt,
      durationMs: Math.round(performance.now() - started),
      lab: await labSettings(lab),
      clients: {
        'postgres.js': 'postgres(writer instance endpoint), default options',
        'postgres-ha': 'postgresHa(cluster endpoint), default options and plugins',
      },
      workload: `${perRound * rounds} statements per workload and client, ${flags.concurrency} concurrent, ${rounds} rounds alternating which client goes first`,
      results,
      targetsMet: missed.length === 0,
      targetMissed: missed,
    },
    !flags['no-save'],
  )
} finally {
  await Promise.all([raw.end({ timeout: 1 }), ha.end({ timeout: 1 })])
}

function qps(b: Batch): number {
  return Math.round((b.latencies.length / b.wallMs) * 1000)
}

/** postgres-ha against raw postgres.js over all rounds of one workload. */
function compare(by: Record<ClientName, Batch[]>) {
  const stats = (bs: Batch[]) => {
    const all = bs.flatMap((b) => Array.from(b.latencies)).sort((a, b) => a - b)
    const wall = bs.reduce((a, b) => a + b.wallMs, 0)
    const cpu = bs.every((b) => b.cpuMs !== null) ? bs.reduce((a, b) => a + b.cpuMs!, 0) : null
    return {
      queries: all.length,
      throughputQps: Math.round((all.length / wall) * 1000),
      p50Us: Math.round(quantile(all, 0.5) * 1000),
      p99Us: Math.round(quantile(all, 0.99) * 1000),
      cpuUsPerQuery: cpu === null ? null : round2((cpu * 1000) / all.length),
    }
  }
  const p50Us = (b: Batch) =>
    quantile(
      Array.from(b.latencies).sort((x, y) => x - y),
      0.5,
    ) * 1000
  const cpuUs = (b: Batch) => (b.cpuMs === null ? Number.NaN : (b.cpuMs * 1000) / b.latencies.length)
  const raw = by['postgres.js']
  const ha = by['postgres-ha']
  const pairs = raw.map((b, i) => [b, ha[i]!] as const)
  const byRound = pairs.map(([r, h]) => round2(qps(h) / qps(r)))
  const median = (xs: number[]) =>
    quantile(
      [...xs].sort((a, b) => a - b),
      0.5,
    )
  const base = stats(raw)
  const withHa = stats(ha)
  const addedCpu = median(pairs.map(([r, h]) => cpuUs(h) - cpuUs(r)))
  return {
    'postgres.js': base,
    'postgres-ha': withHa,
    /** Median over rounds of postgres-ha's throughput ÷ raw postgres.js's in the same round. */
    throughputRatio: round2(median(byRound)),
    throughputRatioByRound: byRound,
    /** Median over rounds of the difference of p50 latency. */
    addedP50Us: Math.round(median(pairs.map(([r, h]) => p50Us(h) - p50Us(r)))),
    /** Pooled p99s, postgres-ha − raw. */
    addedP99Us: withHa.p99Us - base.p99Us,
    /** Median over rounds of the difference of client CPU time per query. */
    addedCpuUsPerQuery: Number.isFinite(addedCpu) ? round2(addedCpu) : null,
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100
}
