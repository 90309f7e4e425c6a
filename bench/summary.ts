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

const failoverRows: string[] = []
const overheadRows: string[] = []
const idleRows: string[] = []
const versions: string[] = []
const summary: Record<string, unknown> = {}
let machine: any

for (const runtime of RUNTIMES) {
  const failover = load(runtime, 'failover')
  const baseline = load(runtime, 'baseline')
  const overhead = load(runtime, 'overhead')
  const idle = load(runtime, 'idle')
  const any = failover ?? baseline ?? overhead ?? idle
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
    const r = overhead.results
    overheadRows.push(
      `| ${runtime} | ${r['select $1'].throughputRatio} | ${r['select $1'].addedP50Us} / ${r['select $1'].addedP99Us} | ` +
        `${r.insert.throughputRatio} | ${r.insert.addedP50Us} / ${r.insert.addedP99Us} | ${yes(overhead.targetsMet)} |`,
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
    'Steady-state overhead (postgres-ha ÷ raw postgres.js throughput; added latency per query, µs)',
    '',
    '| runtime | select $1 throughput | added p50 / p99 µs | insert throughput | added p50 / p99 µs | targets |',
    '| --- | --: | --: | --: | --: | --- |',
    ...overheadRows,
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
