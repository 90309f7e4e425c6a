/**
 * The summary `npm run bench` prints at the end: markdown tables across runtimes, from the JSON
 * documents in `bench/results/` (whatever parts and runtimes are there). Also runnable alone:
 * `node --import tsx bench/summary.ts`. Writes `bench/results/summary.json` with the same rows.
 *
 * @module
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { resultsDir } from './lib/report.ts'

const RUNTIMES = ['node', 'deno', 'bun'] as const
const SCENARIOS = ['kill', 'blackhole', 'freeze', 'switchover'] as const

function load(runtime: string, part: string): any {
  const file = join(resultsDir, `${runtime}-${part}.json`)
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined
}

const ms = (x: number | null | undefined) => (x == null ? '—' : `${Math.round(x)}`)
const times = (
  r: { ratio: number | null; atLeast: boolean; unrecovered?: number; trials?: number } | undefined,
) =>
  r?.ratio == null
    ? '—'
    : `${r.atLeast ? '≥ ' : ''}${r.ratio}×${r.unrecovered ? ` (${r.unrecovered}/${r.trials} never)` : ''}`
const yes = (b: boolean | undefined) => (b === undefined ? '—' : b ? 'met' : '**missed**')
const decided = (b: boolean | undefined) => (b === undefined ? '—' : b ? 'yes' : 'no')
/** Where the overhead part ran: its CPU and the lab's, or why it was not pinned. */
const pinned = (p: { pinned: boolean; bench?: string; lab?: string; reason?: string } | undefined) =>
  !p ? '—' : p.pinned ? `bench on CPU ${p.bench}, lab on ${p.lab}` : `not pinned (${p.reason})`
/** An A/A figure of the overhead part: median [95 % interval]. */
const aaCell = (f: { median: number; ci95: [number, number] } | null | undefined) =>
  f ? `${f.median} [${f.ci95[0]}, ${f.ci95[1]}]` : '—'

const failoverRows: string[] = []
const overheadRows: string[] = []
const recoveryRows: string[] = []
const idleRows: string[] = []
const versions: string[] = []
const summary: Record<string, unknown> = {}
let machine: any

for (const runtime of RUNTIMES) {
  const failover = load(runtime, 'failover')
  const baseline = load(runtime, 'baseline')
  const overhead = load(runtime, 'overhead')
  const idle = load(runtime, 'idle')
  const recovery = load(runtime, 'recovery')
  const any = failover ?? baseline ?? overhead ?? recovery ?? idle
  if (!any) continue
  machine ??= any.machine
  versions.push(`${runtime} ${any.runtime.version}`)
  for (const scenario of SCENARIOS) {
    const s = failover?.scenarios?.[scenario]
    const b = baseline?.scenarios?.[scenario]
    if (!s && !b) continue
    const met = s ? s.targets.every((t: { met: boolean }) => t.met) : undefined
    failoverRows.push(
      `| ${runtime} | ${scenario} | ${ms(s?.driverAddedMs.p50)} | ${ms(s?.driverAddedMs.p99)} | ` +
        `${ms(s?.firstWriteMs.p50)} | ${ms(s?.firstWriteMs.p99)} | ${s ? `${s.lost}/${s.duplicated}` : '—'} | ` +
        `${times(b?.outageRatio['postgres.js cluster'])} | ${times(b?.outageRatio['postgres.js multi-host'])} | ${yes(met)} |`,
    )
  }
  if (overhead) {
    for (const [workload, byConcurrency] of Object.entries<any>(overhead.results))
      for (const [concurrency, r] of Object.entries<any>(byConcurrency))
        overheadRows.push(
          `| ${runtime} | ${workload} | ${concurrency.replace('concurrency ', '')} | ${r.throughputRatio} | ` +
            `${r.addedP50Us} | ${r.addedP99Us} | ${r.addedCpuUsPerStatement ?? '—'} | ` +
            `${aaCell(r.aa?.throughputRatio)} | ${aaCell(r.aa?.addedP50Us)} | ${aaCell(r.aa?.addedCpuUsPerStatement)} | ` +
            `${r['postgres.js'].throughputOps} / ${r['postgres-ha'].throughputOps} |`,
        )
  }
  if (recovery) {
    const plain = recovery.byClient?.['postgres.js']
    recoveryRows.push(
      `| ${runtime} | ${recovery.trials} | ${ms(recovery.baselinePerSecond.p50)} | ${ms(recovery.promotionMs.p50)} | ` +
        `${ms(recovery.firstWriteMs.p50)} | ${ms(recovery.recoveryMs.p50)} | ${ms(recovery.recoveryMs.p99)} | ` +
        `${ms(plain?.recoveryMs.p50)} | ${ms(plain?.recoveryMs.p99)} | ` +
        `${recovery.vsPlainPostgresJs?.p50 ?? '—'} / ${recovery.vsPlainPostgresJs?.p99 ?? '—'} | ` +
        `${recovery.lost}/${recovery.duplicated} | ${yes(recovery.targetsMet)} |`,
    )
  }
  if (idle) {
    const { one, many } = idle.clusters
    idleRows.push(
      `| ${runtime} | ${idle.idleSeconds} s | ${one.monitoringQueriesPerSecond} / ${many.monitoringQueriesPerSecond} | ` +
        `${one.backends.monitoring} / ${many.backends.monitoring} | ` +
        `${one.timersAdded.byOrigin['postgres-ha'].live} / ${many.timersAdded.byOrigin['postgres-ha'].live} | ` +
        `${idle.process.timers.atEnd.byOrigin['postgres-ha'].refed} | ${yes(idle.targetsMet)} |`,
    )
  }
  summary[runtime] = {
    failover: failover && { targetsMet: failover.targetsMet, targetMissed: failover.targetMissed },
    overhead: overhead && { targetsMet: overhead.targetsMet, targetMissed: overhead.targetMissed },
    recovery: recovery && { targetsMet: recovery.targetsMet, targetMissed: recovery.targetMissed },
    idle: idle && { targetsMet: idle.targetsMet, targetMissed: idle.targetMissed },
  }
}

const denoBench = existsSync(join(resultsDir, 'deno-failover-bench.json'))
  ? JSON.parse(readFileSync(join(resultsDir, 'deno-failover-bench.json'), 'utf8'))
  : undefined

const lines: string[] = []
if (failoverRows.length) {
  lines.push(
    'Failover (ms; driver-added = first write on the new writer − lab writer-ready; outage = fault → that write; ' +
      'vs postgres.js = its outage ÷ postgres-ha’s, p50, under the same faults; "never" = no write on the new ' +
      'writer within the cap, counted as the cap)',
    '',
    '| runtime | scenario | driver-added p50 | driver-added p99 | outage p50 | outage p99 | lost/dup | vs postgres.js cluster endpoint | vs postgres.js multi-host | targets |',
    '| --- | --- | --: | --: | --: | --: | --: | --: | --: | --- |',
    ...failoverRows,
    '',
  )
}
if (overheadRows.length) {
  lines.push(
    'Steady-state overhead (medians over paired rounds: postgres-ha ÷ raw postgres.js throughput; added latency per operation and client CPU per statement, µs; A/A: a second raw postgres.js against the first, median [95 % interval], the floor of the measure)',
    '',
    '| runtime | workload | concurrent | throughput ratio | added p50 µs | added p99 µs | added CPU µs/statement | A/A ratio | A/A p50 µs | A/A CPU µs | ops/s raw / ha |',
    '| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |',
    ...overheadRows,
    '',
    `Targets (ratio ≥ 0.97 and added p50 ≤ 20 µs at 10 concurrent, added CPU ≤ 2 µs per statement): ${RUNTIMES.map((r) => `${r} ${yes(load(r, 'overhead')?.targetsMet)}`).join(', ')}`,
    `Every target's 95 % interval on one side of it (met or missed beyond the noise): ${RUNTIMES.map((r) => `${r} ${decided(load(r, 'overhead')?.targetsDecided)}`).join(', ')}`,
    `Overhead part's CPUs (taskset): ${RUNTIMES.map((r) => `${r}: ${pinned(load(r, 'overhead')?.pinning)}`).join('; ')}`,
    '',
  )
}
if (recoveryRows.length) {
  lines.push(
    'Recovery under load (50 concurrent writers through a writer kill; ms from the lab’s writer-ready until the new writer acknowledges 90 % of the pre-kill write rate over 100 ms; plain postgres.js: re-pointed at the new writer when the lab says writer-ready, same run, its own kills)',
    '',
    '| runtime | trials | writes/s before | promotion p50 | first write p50 | recovery p50 | recovery p99 | plain postgres.js p50 | p99 | ratio p50 / p99 | lost/dup | targets |',
    '| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --- |',
    ...recoveryRows,
    '',
  )
}
if (idleRows.length) {
  lines.push(
    'Idle cost (1 client / 10 clients on one cluster)',
    '',
    '| runtime | idle | monitoring statements/s | monitoring connections | postgres-ha timers | timers holding the process | targets |',
    '| --- | --: | --: | --: | --: | --: | --- |',
    ...idleRows,
    '',
  )
}
const denoRow = denoBench?.benches?.[0]?.results?.[0]?.ok
if (denoRow) {
  lines.push(
    `deno bench (kill → first write, lab promotes after 200 ms): avg ${ms(denoRow.avg / 1e6)} ms, ` +
      `min ${ms(denoRow.min / 1e6)}, max ${ms(denoRow.max / 1e6)}, n ${denoRow.n}`,
    '',
  )
}
if (machine)
  lines.push(`Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGb} GB; ${versions.join(', ')}`)
writeFileSync(
  join(resultsDir, 'summary.json'),
  JSON.stringify({ machine, versions, summary }, null, 2) + '\n',
)
process.stdout.write(lines.length ? lines.join('\n') + '\n' : 'no results in bench/results yet\n')
