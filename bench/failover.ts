/**
 * `failover`: postgres-ha with its default options writes one row every 10 ms on the lab's
 * cluster endpoint while the writer is killed, black-holed, frozen or switched over; per trial,
 * the lab's promotion time, the first write on the new writer and the driver-added downtime.
 *
 * Usage: `node --import tsx bench/failover.ts [--trials 10] [--scenarios kill,blackhole,freeze,switchover]
 * [--promote-after-ms 200] [--cap-ms 10000] [--no-save]` (or `deno run -A`, `bun`). One JSON
 * document on stdout, also written to `bench/results/<runtime>-failover.json`; progress on stderr.
 *
 * @module
 */
import { listFlag, parseFlags } from './lib/args.ts'
import { labSettings, openBenchLab } from './lib/bench-lab.ts'
import { makeClient } from './lib/clients.ts'
import { SCENARIOS, type Scenario } from './lib/faults.ts'
import { emit, machineInfo, progress, runtimeInfo } from './lib/report.ts'
import { type ScenarioSummary, summarizeScenario, targetsFor } from './lib/scenario-summary.ts'
import { type Target, verdict } from './lib/targets.ts'
import { describeTrial, runTrial, type TrialResult } from './lib/trial.ts'

const flags = parseFlags('bench/failover.ts', {
  trials: { default: 10, help: 'trials per scenario (each on a fresh client and a restored topology)' },
  scenarios: { default: SCENARIOS.join(','), help: 'comma-separated: kill, blackhole, freeze, switchover' },
  'promote-after-ms': { default: 200, help: "the lab's delay before promoting a reader" },
  'endpoint-lag-ms': { default: 30_000, help: "the lab's cluster-endpoint (DNS) lag" },
  'cap-ms': { default: 10_000, help: 'give up on a trial this long after the fault' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-failover.json' },
})
const scenarios = listFlag('scenarios', flags.scenarios, SCENARIOS)
const started = performance.now()
const startedAt = new Date().toISOString()

/** The per-scenario section of the JSON. */
interface ScenarioReport extends ScenarioSummary {
  targets: Target[]
  results: TrialResult[]
}

progress('failover', `lab up (promoteAfterMs ${flags['promote-after-ms']})`)
await using lab = await openBenchLab(
  { promoteAfterMs: flags['promote-after-ms'], endpointLagMs: flags['endpoint-lag-ms'] },
  { handOn: true },
)
let id = 0
const nextId = () => ++id
const report: Partial<Record<Scenario, ScenarioReport>> = {}
for (const scenario of scenarios) {
  const results: TrialResult[] = []
  for (let trial = 1; trial <= flags.trials; trial++) {
    const [r] = await runTrial({
      lab,
      scenario,
      trial,
      clients: [{ label: 'postgres-ha', make: () => makeClient(lab, 'postgres-ha') }],
      nextId,
      capMs: flags['cap-ms'],
      // The lab goes down after the last trial: a rejoin of its old writer then is work for nothing.
      restore: !(scenario === scenarios.at(-1) && trial === flags.trials),
    })
    results.push(r!)
    progress('failover', describeTrial(r!))
  }
  const summary = summarizeScenario(results)
  report[scenario] = { ...summary, targets: targetsFor(scenario, summary), results }
}

// One verdict over every scenario; each line says which scenario missed.
const { targetsMet, targetMissed } = verdict(
  Object.entries(report).flatMap(([scenario, s]) =>
    s.targets.map((t) => ({ ...t, name: `${scenario}: ${t.name}` })),
  ),
)
emit(
  'failover',
  {
    part: 'failover',
    runtime: runtimeInfo(),
    machine: machineInfo(),
    startedAt,
    durationMs: Math.round(performance.now() - started),
    lab: await labSettings(lab),
    client: 'postgres-ha, default options, cluster endpoint',
    workload: 'one single-row insert at a time, started every 10 ms; a fresh client per trial',
    trialsPerScenario: flags.trials,
    scenarios: report,
    targetsMet,
    targetMissed,
  },
  !flags['no-save'],
)
