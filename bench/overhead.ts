/**
 * `overhead`: what postgres-ha with its default plugins adds to a healthy cluster, measured on the
 * build users run (`dist/` on Node and Bun, `mod.ts` on Deno; see `lib/entry.ts`). Four workloads
 * — `select $1`, a single-row insert, a 100-row select and a 3-statement transaction — at 1 and at
 * 10 concurrent operations, through raw postgres.js and through postgres-ha on the same lab
 * writer, and through a second raw postgres.js client (the A/A pair). A fifth, `reserved select
 * (Kysely)`, is what kysely-postgres-js runs for every Kysely query (`reserve()`, `unsafe(text,
 * params)`, `release()`): measured and reported the same way, but the issue sets no target for it,
 * so it is outside `targets` and `targetsMet` (`workloadsWithoutTargets` in the JSON says so).
 *
 * The three clients run in this process (`--process-each` runs each in a process of its own: a
 * diagnostic whose figures are not yet understood, see `lib/client-process.ts`). Shared machines are noisy, so the clients run in paired, interleaved rounds (see
 * `lib/paired.ts`): each round runs every workload on the three clients, taking turns in pieces of
 * an eighth of a batch (`--pieces`), in an order that goes through every permutation, so that a
 * change of the machine's load hits all three alike — throughput ratio (postgres-ha ÷ raw), added
 * p50 and p99 latency come from these pieces. Then each client runs one unbroken batch more
 * (`--cpu-ops`; order through the permutations too): the added client CPU time per statement is
 * over the pieces and that batch (`process.cpuUsage` around each: the whole process, so whatever
 * postgres-ha does in the background, and the garbage collections its allocations trigger,
 * count; measured in the client's process, so its own). Every headline figure is the median over
 * the rounds of a per-round difference or ratio against the first raw client, with a
 * distribution-free 95 % confidence interval. The same figures for the A/A pair (raw ÷ raw) show
 * the floor: a difference inside the A/A spread is not shown to be real.
 *
 * With `/usr/bin/taskset` and 2 CPUs or more, the process (and the clients' processes, which it
 * starts after) runs on one CPU and the lab (control
 * plane, endpoint proxies, servers) on the others, the same for every client (`lib/pin.ts`,
 * `pinning` in the JSON; `--no-pin` to leave it). A warm-up of `--warmup-ops` per client, workload
 * and concurrency first.
 *
 * Targets, per workload: at 10 concurrent, throughput ratio ≥ 0.97 and added p50 ≤ 20 µs; at both
 * concurrencies, added CPU ≤ 2 µs per statement. `targetsMet` compares the medians with the
 * targets; `targetsDecided` says whether every interval lies on one side of its target.
 *
 * Usage: `node --import tsx bench/overhead.ts [--ops 1000] [--cpu-ops 2000] [--rounds 12]
 * [--no-save]` (or `deno run -A`, `bun`). `--ops`, `--cpu-ops` and `--warmup-ops` are per batch at
 * 10 concurrent (a quarter of it at 1, half for the 100-row select, a third for the transaction).
 *
 * @module
 */
import postgres from 'postgres'
import { parseFlags } from './lib/args.ts'
import { labSettings, openBenchLab } from './lib/bench-lab.ts'
import {
  type BenchClient,
  type ClientKind,
  clientProcess,
  inProcessClient,
  SERVE_CLIENT_FLAG,
  serveClient,
} from './lib/client-process.ts'
import { entry, postgresHa } from './lib/entry.ts'
import { type Batch, joinBatches } from './lib/load.ts'
import { createWorkloadTables, WORKLOADS, type Workload } from './lib/overhead-workloads.ts'
import { type PairedFigure, pairedFigure, roundOrder } from './lib/paired.ts'
import { type Pinning, pinBenchAndLab } from './lib/pin.ts'
import { emit, machineInfo, progress, runtimeInfo } from './lib/report.ts'
import { quantile } from './lib/stats.ts'
import { type Target, target, verdict } from './lib/targets.ts'
import type { AnySql } from './lib/write-loop.ts'

/** A client of the comparison made from its kind (in a client's own process, or in this one). */
const openClient = (kind: ClientKind, url: string): AnySql =>
  kind === 'ha' ? (postgresHa(url) as unknown as AnySql) : postgres(url, { onnotice: () => {} })
// Started again as one client's process (see lib/client-process.ts): serve it, never run the part.
if (process.argv.includes(SERVE_CLIENT_FLAG)) await serveClient(openClient)

const flags = parseFlags('bench/overhead.ts', {
  ops: { default: 1_000, help: 'operations per batch at 10 concurrent (a quarter at 1)' },
  rounds: { default: 12, help: 'paired rounds; the client order goes through all 6 permutations' },
  pieces: {
    default: 8,
    help: "each batch runs as this many pieces, alternating with the other clients' pieces",
  },
  'cpu-ops': {
    default: 2_000,
    help: 'operations per unbroken batch at 10 concurrent (a quarter at 1), for CPU time with the pieces',
  },
  'warmup-ops': { default: 1_000, help: 'operations per client and workload before the first round' },
  'process-each': {
    default: false,
    help: 'run each client in a process of its own (a diagnostic, see lib/client-process.ts)',
  },
  'no-pin': { default: false, help: 'do not pin the benchmark and the lab to separate CPUs' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-overhead.json' },
})
const started = performance.now()
const startedAt = new Date().toISOString()
const rounds = Math.max(1, Math.round(flags.rounds))
const CONCURRENCY = [1, 10] as const

const RAW = 'postgres.js'
const AA = 'postgres.js A/A'
const HA = 'postgres-ha'
type ClientName = typeof RAW | typeof AA | typeof HA
const CLIENTS: ClientName[] = [RAW, AA, HA]

const workloadNames = Object.keys(WORKLOADS)
const batches: Record<string, Record<ClientName, Batch[]>> = {}
const cpuBatches: Record<string, Record<ClientName, Batch[]>> = {}
const scaled = (ops: number, w: Workload, concurrency: number) =>
  Math.max(10, Math.round(ops * w.share * (concurrency === 1 ? 0.25 : 1)))
const opsFor = (w: Workload, concurrency: number) => scaled(flags.ops, w, concurrency)
const cpuOpsFor = (w: Workload, concurrency: number) => scaled(flags['cpu-ops'], w, concurrency)

progress('overhead', `lab up; postgres-ha from ${entry.file}`)
await using lab = await openBenchLab({ endpointLagMs: 0 })
const writer = (await lab.status()).writer!
const machine = machineInfo() // before pinning, which leaves this process 1 CPU
// Before any client connects: a backend forked later inherits its postmaster's CPUs.
const pinning: Pinning = flags['no-pin'] ? { pinned: false, reason: '--no-pin' } : pinBenchAndLab(lab.dir)
progress(
  'overhead',
  pinning.pinned
    ? `pinned: bench on CPU ${pinning.bench}, lab on ${pinning.lab}`
    : `not pinned: ${pinning.reason}`,
)
const KINDS: Record<ClientName, ClientKind> = { [RAW]: 'raw', [AA]: 'raw', [HA]: 'ha' }
const urlOf = (kind: ClientKind) => lab.url(kind === 'ha' ? 'cluster' : writer)
const clients = {} as Record<ClientName, BenchClient>
try {
  const setup = postgres(lab.url(writer), { onnotice: () => {} })
  try {
    await createWorkloadTables(setup)
  } finally {
    await setup.end({ timeout: 1 })
  }
  for (const name of CLIENTS)
    clients[name] = flags['process-each']
      ? await clientProcess(name, KINDS[name], urlOf(KINDS[name]))
      : inProcessClient(openClient(KINDS[name], urlOf(KINDS[name])))
  progress('overhead', flags['process-each'] ? 'clients in a process each' : 'clients in this process')
  // Warm every pool to 10 open connections, prepared statements and the JIT's top tier, at both
  // concurrencies (a cold path costs many times a warm one, and only the first client would pay).
  for (const name of CLIENTS)
    for (const w of workloadNames)
      for (const c of CONCURRENCY)
        await clients[name].run(w, c, scaled(flags['warmup-ops'], WORKLOADS[w]!, c), 0)

  for (const w of workloadNames)
    for (const c of CONCURRENCY) {
      batches[`${w}@${c}`] = { [RAW]: [], [AA]: [], [HA]: [] }
      cpuBatches[`${w}@${c}`] = { [RAW]: [], [AA]: [], [HA]: [] }
    }
  for (let round = 0; round < rounds; round++) {
    for (const w of workloadNames)
      for (const c of CONCURRENCY) {
        const workload = WORKLOADS[w]!
        const total = opsFor(workload, c)
        const size = Math.max(c, Math.ceil(total / Math.max(1, Math.round(flags.pieces))))
        const parts: Record<ClientName, Batch[]> = { [RAW]: [], [AA]: [], [HA]: [] }
        // The clients take turns piece by piece, in an order that goes through the permutations:
        // a change of the machine's load within the round hits all three alike.
        for (let done = 0, piece = 0; done < total; done += size, piece++) {
          const n = Math.min(size, total - done)
          for (const name of roundOrder(CLIENTS, round + piece))
            parts[name].push(await clients[name].run(w, c, n, done))
        }
        for (const name of CLIENTS) batches[`${w}@${c}`]![name].push(joinBatches(parts[name]))
        // CPU time: the pieces and one unbroken batch more per client. With the clients in one
        // process (the default), a garbage collection (a scavenge takes milliseconds here)
        // falls in the pieces on whichever client's piece runs at the time, a large share of a
        // piece, and in the unbroken batch on its own client but for the one pending at its
        // start; in a process each, it is always its own client's. The pieces pair better with
        // the machine's load changes, which weigh most at 1 in flight.
        for (const name of roundOrder(CLIENTS, round)) {
          const unbroken = await clients[name].run(w, c, cpuOpsFor(workload, c), total)
          cpuBatches[`${w}@${c}`]![name].push(joinBatches([batches[`${w}@${c}`]![name][round]!, unbroken]))
        }
      }
    progress('overhead', `round ${round + 1}/${rounds}: ${summaryLine(round)}`)
  }

  const results: Record<string, Record<string, ReturnType<typeof compare>>> = {}
  for (const w of workloadNames) {
    results[w] = {}
    for (const c of CONCURRENCY)
      results[w]![`concurrency ${c}`] = compare(
        batches[`${w}@${c}`]!,
        cpuBatches[`${w}@${c}`]!,
        WORKLOADS[w]!,
      )
  }
  // Each target with the interval of its median and the A/A figure beside it.
  const targets: Target[] = []
  const noise: TargetNoise[] = []
  const add = (name: string, op: Target['op'], limit: number, figure: PairedFigure, aa: PairedFigure) => {
    const t = target(name, op, limit, figure.median)
    targets.push(t)
    const [lo, hi] = figure.ci95
    const decided = op === '≤' ? hi <= limit || lo > limit : lo >= limit || hi < limit
    noise.push({ name, value: figure.median, ci95: figure.ci95, aa: aa.median, aaCi95: aa.ci95, decided })
  }
  for (const w of workloadNames) {
    if (WORKLOADS[w]!.withoutTargets) continue
    const at10 = results[w]!['concurrency 10']!
    add(`${w} @10 throughput ratio`, '≥', 0.97, at10.vsRaw.throughputRatio, at10.aa.throughputRatio)
    add(`${w} @10 added p50 (µs)`, '≤', 20, at10.vsRaw.addedP50Us, at10.aa.addedP50Us)
    for (const c of CONCURRENCY) {
      const r = results[w]![`concurrency ${c}`]!
      const cpu = r.vsRaw.addedCpuUsPerStatement
      const aaCpu = r.aa.addedCpuUsPerStatement
      if (cpu && aaCpu) add(`${w} @${c} added CPU per statement (µs)`, '≤', 2, cpu, aaCpu)
      else targets.push(target(`${w} @${c} added CPU per statement (µs)`, '≤', 2, null))
    }
  }
  emit(
    'overhead',
    {
      part: 'overhead',
      runtime: runtimeInfo(),
      machine,
      startedAt,
      durationMs: Math.round(performance.now() - started),
      entry,
      lab: await labSettings(lab),
      pinning,
      clientsIn: flags['process-each'] ? 'a process each' : 'one process',
      processIds: {
        part: process.pid,
        ...Object.fromEntries(CLIENTS.map((name) => [name, clients[name].pid])),
      },
      clients: {
        [RAW]: 'postgres(writer instance endpoint), default options',
        [AA]: 'a second postgres(writer instance endpoint): the A/A pair, the floor of the measure',
        [HA]: 'postgresHa(cluster endpoint), default options and plugins',
      },
      workload:
        `${rounds} paired rounds; per round and client, a batch per workload and concurrency, ` +
        `run in ${Math.max(1, Math.round(flags.pieces))} pieces taking turns with the other clients ` +
        `(${workloadNames.map((w) => `${w}: ${opsFor(WORKLOADS[w]!, 10)} @10, ${opsFor(WORKLOADS[w]!, 1)} @1`).join('; ')}), ` +
        'for throughput and latency; then one unbroken batch more per client ' +
        `(${workloadNames.map((w) => `${w}: ${cpuOpsFor(WORKLOADS[w]!, 10)} @10, ${cpuOpsFor(WORKLOADS[w]!, 1)} @1`).join('; ')}), ` +
        'for CPU time (over the pieces and that batch); client order through all permutations; figures are medians over rounds of per-round ' +
        'differences or ratios against postgres.js, with order-statistic 95 % intervals (ci95)',
      results,
      workloadsWithoutTargets: Object.fromEntries(
        workloadNames.flatMap((w) =>
          WORKLOADS[w]!.withoutTargets ? [[w, WORKLOADS[w]!.withoutTargets]] : [],
        ),
      ),
      targets,
      ...verdict(targets),
      targetNoise: noise,
      targetsDecided: noise.length === targets.length && noise.every((n) => n.decided),
    },
    !flags['no-save'],
  )
} finally {
  await Promise.all(Object.values(clients).map((client) => client.end()))
}

/** A target's value beside its noise: the interval of its median and the A/A figure. */
interface TargetNoise {
  name: string
  value: number
  ci95: [number, number]
  aa: number
  aaCi95: [number, number]
  /** The whole interval lies on one side of the target: met or missed, not by chance. */
  decided: boolean
}

function qps(b: Batch): number {
  return (b.latencies.length / b.wallMs) * 1000
}

/** This round's throughput ratios at 10 concurrent (postgres-ha, then A/A), for the progress line. */
function summaryLine(round: number): string {
  return workloadNames
    .map((w) => {
      const cell = batches[`${w}@10`]!
      const base = qps(cell[RAW][round]!)
      return `${w} ${round2(qps(cell[HA][round]!) / base)} (A/A ${round2(qps(cell[AA][round]!) / base)})`
    })
    .join(', ')
}

function sortedMs(b: Batch): number[] {
  return Array.from(b.latencies).sort((x, y) => x - y)
}

/**
 * Every client over all rounds of one workload at one concurrency, and the paired figures:
 * throughput and latency from the interleaved batches `by`, CPU time from `cpuBy` (those and the
 * unbroken batches).
 */
function compare(by: Record<ClientName, Batch[]>, cpuBy: Record<ClientName, Batch[]>, w: Workload) {
  const stats = (bs: Batch[], cpuBs: Batch[]) => {
    const all = bs.flatMap((b) => Array.from(b.latencies)).sort((a, b) => a - b)
    const wall = bs.reduce((a, b) => a + b.wallMs, 0)
    const cpuOps = cpuBs.reduce((a, b) => a + b.latencies.length, 0)
    const cpu = cpuBs.every((b) => b.cpuMs !== null) ? cpuBs.reduce((a, b) => a + b.cpuMs!, 0) : null
    return {
      operations: all.length,
      throughputOps: Math.round((all.length / wall) * 1000),
      p50Us: Math.round(quantile(all, 0.5) * 1000),
      p99Us: Math.round(quantile(all, 0.99) * 1000),
      cpuOperations: cpuOps,
      cpuUsPerStatement: cpu === null ? null : round2((cpu * 1000) / cpuOps / w.statements),
    }
  }
  const perStatement = (ms: number | null, b: Batch) =>
    ms === null ? Number.NaN : (ms * 1000) / b.latencies.length / w.statements
  /** `other` against postgres.js, round by round. */
  const against = (other: ClientName) => {
    const pairs = by[RAW].map((r, i) => [r, by[other][i]!] as const)
    const ratios = pairs.map(([r, h]) => qps(h) / qps(r))
    const addedAt = (q: number) =>
      pairedFigure(
        pairs.map(([r, h]) => (quantile(sortedMs(h), q) - quantile(sortedMs(r), q)) * 1000),
        0,
      )
    const cpu = (field: 'cpuMs' | 'userCpuMs') => {
      const diffs = cpuBy[RAW].map((r, i) => {
        const h = cpuBy[other][i]!
        return perStatement(h[field], h) - perStatement(r[field], r)
      })
      return diffs.every(Number.isFinite) ? pairedFigure(diffs, 2) : null
    }
    return {
      /** Throughput ÷ postgres.js's in the same round. */
      throughputRatio: pairedFigure(ratios, 2),
      throughputRatioByRound: ratios.map(round2),
      /** Difference of the p50 latency of an operation (µs). */
      addedP50Us: addedAt(0.5),
      /** Difference of the p99 latency of an operation (µs). */
      addedP99Us: addedAt(0.99),
      /** Difference of client CPU time per statement (µs), user and system. */
      addedCpuUsPerStatement: cpu('cpuMs'),
      /** The user-mode part of it. */
      addedUserCpuUsPerStatement: cpu('userCpuMs'),
    }
  }
  const vsRaw = against(HA)
  return {
    [RAW]: stats(by[RAW], cpuBy[RAW]),
    [HA]: stats(by[HA], cpuBy[HA]),
    [AA]: stats(by[AA], cpuBy[AA]),
    /** Medians over rounds: the headline figures (their intervals under `vsRaw`). */
    throughputRatio: vsRaw.throughputRatio.median,
    throughputRatioByRound: vsRaw.throughputRatioByRound,
    addedP50Us: vsRaw.addedP50Us.median,
    addedP99Us: vsRaw.addedP99Us.median,
    addedCpuUsPerStatement: vsRaw.addedCpuUsPerStatement?.median ?? null,
    vsRaw,
    /** The second raw client against the first: what the same figures are when nothing differs. */
    aa: against(AA),
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100
}
