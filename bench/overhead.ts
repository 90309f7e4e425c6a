/**
 * `overhead`: what postgres-ha with its default plugins adds to a healthy cluster, measured on the
 * build users run (`dist/` on Node and Bun, `mod.ts` on Deno; see `lib/entry.ts`). Four workloads
 * — `select $1`, a single-row insert, a 100-row select and a 3-statement transaction — at 1 and at
 * 10 concurrent operations, through raw postgres.js and through postgres-ha on the same lab
 * writer. Shared machines are noisy, so the two clients run in paired, interleaved batches (each
 * round runs every workload on both, alternating which goes first) and every headline figure is a
 * median over the rounds of a per-round difference or ratio: throughput ratio (postgres-ha ÷ raw),
 * added p50 and p99 latency, and added client CPU time per statement (`process.cpuUsage` around
 * each batch: the whole process, so whatever postgres-ha does in the background counts too).
 *
 * Targets, per workload: at 10 concurrent, throughput ratio ≥ 0.97 and added p50 ≤ 20 µs; at both
 * concurrencies, added CPU ≤ 2 µs per statement.
 *
 * Usage: `node --import tsx bench/overhead.ts [--ops 1000] [--rounds 10] [--no-save]` (or `deno run
 * -A`, `bun`). `--ops` is per batch at 10 concurrent (a quarter of it at 1, a third for the
 * transaction).
 *
 * @module
 */
import postgres from 'postgres'
import { parseFlags } from './lib/args.ts'
import { labSettings, openBenchLab } from './lib/bench-lab.ts'
import { entry, postgresHa } from './lib/entry.ts'
import { type Batch, runBatch } from './lib/load.ts'
import { emit, machineInfo, progress, runtimeInfo } from './lib/report.ts'
import { quantile } from './lib/stats.ts'
import { target, verdict } from './lib/targets.ts'
import type { AnySql } from './lib/write-loop.ts'

const flags = parseFlags('bench/overhead.ts', {
  ops: { default: 1_000, help: 'operations per batch at 10 concurrent (a quarter at 1)' },
  rounds: { default: 10, help: 'paired rounds; each alternates which client goes first' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-overhead.json' },
})
const started = performance.now()
const startedAt = new Date().toISOString()
const rounds = Math.max(1, Math.round(flags.rounds))
const CONCURRENCY = [1, 10] as const

type ClientName = 'postgres.js' | 'postgres-ha'
const CLIENTS: ClientName[] = ['postgres.js', 'postgres-ha']

interface Workload {
  /** Statements per operation (the transaction's three; begin and commit not counted). */
  statements: number
  /** Share of `--ops` per batch. */
  share: number
  run(sql: AnySql, i: number): Promise<unknown>
}
const WORKLOADS: Record<string, Workload> = {
  'select $1': { statements: 1, share: 1, run: (sql, i) => sql`select ${i}::int as x` },
  insert: { statements: 1, share: 1, run: (sql, i) => sql`insert into bench_overhead (v) values (${i})` },
  'select 100 rows': {
    statements: 1,
    share: 1 / 2,
    run: (sql) => sql`select id, v, note from bench_rows order by id limit ${100}`,
  },
  transaction: {
    statements: 3,
    share: 1 / 3,
    run: (sql, i) =>
      sql.begin(async (tx) => {
        await tx`select ${i}::int as x`
        await tx`insert into bench_overhead (v) values (${i})`
        await tx`select count(*) from bench_rows where id <= ${i % 100}`
      }),
  },
}
const workloadNames = Object.keys(WORKLOADS)
const batches: Record<string, Record<ClientName, Batch[]>> = {}
const opsFor = (w: Workload, concurrency: number) =>
  Math.max(10, Math.round(flags.ops * w.share * (concurrency === 1 ? 0.25 : 1)))

progress('overhead', `lab up; postgres-ha from ${entry.file}`)
await using lab = await openBenchLab({ endpointLagMs: 0 })
const writer = (await lab.status()).writer!
const raw = postgres(lab.url(writer), { onnotice: () => {} })
const ha = postgresHa(lab.url('cluster'))
const clients: Record<ClientName, AnySql> = { 'postgres.js': raw, 'postgres-ha': ha as unknown as AnySql }
try {
  await raw`create table if not exists bench_overhead (id bigint generated always as identity primary key, v int)`
  await raw`create table if not exists bench_rows (id int primary key, v int, note text)`
  await raw`insert into bench_rows select g, g * 7, 'row number ' || g from generate_series(1, 100) g on conflict do nothing`
  // Warm both pools to 10 open connections, prepared statements and the JIT.
  for (const name of CLIENTS)
    for (const w of Object.values(WORKLOADS)) await runBatch(200, 10, (i) => w.run(clients[name], i))

  for (const w of workloadNames)
    for (const c of CONCURRENCY) batches[`${w}@${c}`] = { 'postgres.js': [], 'postgres-ha': [] }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? CLIENTS : [...CLIENTS].reverse()
    for (const w of workloadNames)
      for (const c of CONCURRENCY)
        for (const name of order) {
          const workload = WORKLOADS[w]!
          batches[`${w}@${c}`]![name].push(
            await runBatch(opsFor(workload, c), c, (i) => workload.run(clients[name], i)),
          )
        }
    progress('overhead', `round ${round + 1}/${rounds}: ${summaryLine(round)}`)
  }

  const results: Record<string, Record<string, ReturnType<typeof compare>>> = {}
  for (const w of workloadNames) {
    results[w] = {}
    for (const c of CONCURRENCY)
      results[w]![`concurrency ${c}`] = compare(batches[`${w}@${c}`]!, WORKLOADS[w]!)
  }
  const targets = workloadNames.flatMap((w) => [
    target(`${w} @10 throughput ratio`, '≥', 0.97, results[w]!['concurrency 10']!.throughputRatio),
    target(`${w} @10 added p50 (µs)`, '≤', 20, results[w]!['concurrency 10']!.addedP50Us),
    ...CONCURRENCY.map((c) =>
      target(
        `${w} @${c} added CPU per statement (µs)`,
        '≤',
        2,
        results[w]![`concurrency ${c}`]!.addedCpuUsPerStatement,
      ),
    ),
  ])
  emit(
    'overhead',
    {
      part: 'overhead',
      runtime: runtimeInfo(),
      machine: machineInfo(),
      startedAt,
      durationMs: Math.round(performance.now() - started),
      entry,
      lab: await labSettings(lab),
      clients: {
        'postgres.js': 'postgres(writer instance endpoint), default options',
        'postgres-ha': 'postgresHa(cluster endpoint), default options and plugins',
      },
      workload:
        `${rounds} paired rounds; per round and client, a batch per workload and concurrency ` +
        `(${workloadNames.map((w) => `${w}: ${opsFor(WORKLOADS[w]!, 10)} @10, ${opsFor(WORKLOADS[w]!, 1)} @1`).join('; ')})`,
      results,
      targets,
      ...verdict(targets),
    },
    !flags['no-save'],
  )
} finally {
  await Promise.all([raw.end({ timeout: 1 }), ha.end({ timeout: 1 })])
}

function qps(b: Batch): number {
  return (b.latencies.length / b.wallMs) * 1000
}

/** This round's throughput ratios at 10 concurrent, for the progress line. */
function summaryLine(round: number): string {
  return workloadNames
    .map((w) => {
      const pair = batches[`${w}@10`]!
      return `${w} ${round2(qps(pair['postgres-ha'][round]!) / qps(pair['postgres.js'][round]!))}`
    })
    .join(', ')
}

function median(xs: number[]): number {
  return quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  )
}
function sortedMs(b: Batch): number[] {
  return Array.from(b.latencies).sort((x, y) => x - y)
}

/** postgres-ha against raw postgres.js over all rounds of one workload at one concurrency. */
function compare(by: Record<ClientName, Batch[]>, w: Workload) {
  const stats = (bs: Batch[]) => {
    const all = bs.flatMap((b) => Array.from(b.latencies)).sort((a, b) => a - b)
    const wall = bs.reduce((a, b) => a + b.wallMs, 0)
    const cpu = bs.every((b) => b.cpuMs !== null) ? bs.reduce((a, b) => a + b.cpuMs!, 0) : null
    return {
      operations: all.length,
      throughputOps: Math.round((all.length / wall) * 1000),
      p50Us: Math.round(quantile(all, 0.5) * 1000),
      p99Us: Math.round(quantile(all, 0.99) * 1000),
      cpuUsPerStatement: cpu === null ? null : round2((cpu * 1000) / all.length / w.statements),
    }
  }
  const cpuUs = (b: Batch) =>
    b.cpuMs === null ? Number.NaN : (b.cpuMs * 1000) / b.latencies.length / w.statements
  const pairs = by['postgres.js'].map((r, i) => [r, by['postgres-ha'][i]!] as const)
  const byRound = pairs.map(([r, h]) => round2(qps(h) / qps(r)))
  const addedAt = (q: number) =>
    Math.round(median(pairs.map(([r, h]) => (quantile(sortedMs(h), q) - quantile(sortedMs(r), q)) * 1000)))
  const addedCpu = median(pairs.map(([r, h]) => cpuUs(h) - cpuUs(r)))
  return {
    'postgres.js': stats(by['postgres.js']),
    'postgres-ha': stats(by['postgres-ha']),
    /** Median over rounds of postgres-ha's throughput ÷ raw postgres.js's in the same round. */
    throughputRatio: round2(median(byRound)),
    throughputRatioByRound: byRound,
    /** Median over rounds of the difference of the p50 latency of an operation. */
    addedP50Us: addedAt(0.5),
    /** Median over rounds of the difference of the p99 latency of an operation. */
    addedP99Us: addedAt(0.99),
    /** Median over rounds of the difference of client CPU time per statement. */
    addedCpuUsPerStatement: Number.isFinite(addedCpu) ? round2(addedCpu) : null,
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100
}
