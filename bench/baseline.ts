/**
 * `baseline`: the failover benchmark's loop and faults with plain postgres.js, two ways — on the
 * lab's cluster endpoint with its DNS-like lag, and with every instance listed and
 * `target_session_attrs: 'read-write'` — side by side with postgres-ha under the very same faults
 * (the three clients write concurrently through one fault per trial), with the ratios of their
 * outages (fault → first write on the new writer).
 *
 * The cluster endpoint's lag defaults to 5 s, Aurora's DNS TTL: the best case for a DNS-based
 * reconnect (the lab's default is 30 s, closer to what applications see through resolver caches).
 * A client with no write on the new writer within the cap (6 s after the fault by default) counts
 * as the cap: its ratio is then a lower bound (`atLeast`), and `unrecovered` counts such trials.
 * Plain postgres.js on a black-holed or frozen writer waits for an answer that never comes, so the
 * silent scenarios run `--silent-trials` (default 1) trials; the others `--trials` (default 3).
 *
 * Usage: `node --import tsx bench/baseline.ts [--trials 3] [--silent-trials 1] [--scenarios ...]
 * [--endpoint-lag-ms 5000] [--cap-ms 6000] [--promote-after-ms 200] [--no-save]`.
 *
 * @module
 */
import { listFlag, parseFlags } from './lib/args.ts'
import { labSettings, openBenchLab } from './lib/bench-lab.ts'
import { CLIENT_KINDS, type ClientKind, makeClient } from './lib/clients.ts'
import { isSilent, SCENARIOS, type Scenario } from './lib/faults.ts'
import { emit, machineInfo, progress, runtimeInfo } from './lib/report.ts'
import { type ScenarioSummary, summarizeScenario } from './lib/scenario-summary.ts'
import { quantile, ratio } from './lib/stats.ts'
import { describeTrial, runTrial, type TrialResult } from './lib/trial.ts'

const flags = parseFlags('bench/baseline.ts', {
  trials: { default: 3, help: 'trials per kill or switchover scenario (the three clients share each fault)' },
  'silent-trials': { default: 1, help: 'trials per blackhole or freeze scenario' },
  scenarios: { default: SCENARIOS.join(','), help: 'comma-separated: kill, blackhole, freeze, switchover' },
  'endpoint-lag-ms': { default: 5_000, help: "the lab's cluster-endpoint (DNS) lag" },
  'cap-ms': { default: 6_000, help: 'give up on a trial this long after the fault' },
  'promote-after-ms': { default: 200, help: "the lab's delay before promoting a reader" },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-baseline.json' },
})
const scenarios = listFlag('scenarios', flags.scenarios, SCENARIOS)
const started = performance.now()
const startedAt = new Date().toISOString()
const capMs = flags['cap-ms']

/** A plain client's outage against postgres-ha's: p50 of fault → first write, capped trials at the cap. */
interface OutageRatio {
  ratio: number | null
  /** Some trial never recovered within the cap: the true ratio is higher. */
  atLeast: boolean
  /** Trials without a write on the new writer within the cap, of `trials`. */
  unrecovered: number
  trials: number
}

type ScenarioReport = Record<ClientKind, ScenarioSummary> & {
  /** Plain postgres.js's outage ÷ postgres-ha's, per plain client. */
  outageRatio: Partial<Record<ClientKind, OutageRatio>>
  results: TrialResult[]
}

progress(
  'baseline',
  `lab up (endpointLagMs ${flags['endpoint-lag-ms']}, promoteAfterMs ${flags['promote-after-ms']})`,
)
await using lab = await openBenchLab(
  { promoteAfterMs: flags['promote-after-ms'], endpointLagMs: flags['endpoint-lag-ms'] },
  { handOn: true },
)
let id = 0
const nextId = () => ++id
const report: Partial<Record<Scenario, ScenarioReport>> = {}
for (const scenario of scenarios) {
  const results: TrialResult[] = []
  const trials = isSilent(scenario) ? flags['silent-trials'] : flags.trials
  for (let trial = 1; trial <= trials; trial++) {
    // The cluster endpoint must point at the writer again before a fresh client connects to it.
    await settleEndpoint()
    const clients = CLIENT_KINDS.map((kind) => ({ label: kind, make: () => makeClient(lab, kind) }))
    // The lab goes down after the last trial: a rejoin of its old writer then is work for nothing.
    const restore = !(scenario === scenarios.at(-1) && trial === trials)
    const trialResults = await runTrial({ lab, scenario, trial, clients, nextId, capMs, restore })
    for (const r of trialResults) progress('baseline', describeTrial(r))
    results.push(...trialResults)
  }
  const by = (kind: ClientKind) => summarizeScenario(results.filter((r) => r.client === kind))
  const outage = (kind: ClientKind) => {
    const xs = results.filter((r) => r.client === kind).map((r) => r.firstWriteMs ?? capMs)
    return xs.sort((a, b) => a - b).length ? quantile(xs, 0.5) : null
  }
  const ha = outage('postgres-ha')
  const outageRatio: ScenarioReport['outageRatio'] = {}
  for (const kind of CLIENT_KINDS.filter((k) => k !== 'postgres-ha')) {
    const mine = results.filter((r) => r.client === kind)
    const unrecovered = mine.filter((r) => r.capped).length
    outageRatio[kind] = {
      ratio: ratio(outage(kind), ha),
      atLeast: unrecovered > 0,
      unrecovered,
      trials: mine.length,
    }
  }
  report[scenario] = {
    'postgres-ha': by('postgres-ha'),
    'postgres.js cluster': by('postgres.js cluster'),
    'postgres.js multi-host': by('postgres.js multi-host'),
    outageRatio,
    results,
  }
}

/** Waits until the lab's cluster endpoint has followed the last promotion. */
async function settleEndpoint(): Promise<void> {
  const events = await lab.events()
  const promoted = events.filter((e) => e.type === 'promoted').at(-1)
  if (!promoted) return
  await lab.waitForEvent('endpoint-moved', {
    afterMs: promoted.atMs,
    timeoutMs: flags['endpoint-lag-ms'] + 10_000,
  })
}

emit(
  'baseline',
  {
    part: 'baseline',
    runtime: runtimeInfo(),
    machine: machineInfo(),
    startedAt,
    durationMs: Math.round(performance.now() - started),
    lab: await labSettings(lab),
    capMs,
    clients: {
      'postgres-ha': 'postgresHa(cluster endpoint), default options',
      'postgres.js cluster': 'postgres(cluster endpoint), default options',
      'postgres.js multi-host': "postgres(every instance endpoint, { target_session_attrs: 'read-write' })",
    },
    workload:
      'each client: one single-row insert at a time, started every 10 ms; the three clients write concurrently through each fault',
    trialsPerScenario: {
      kill: flags.trials,
      switchover: flags.trials,
      blackhole: flags['silent-trials'],
      freeze: flags['silent-trials'],
    },
    scenarios: report,
  },
  !flags['no-save'],
)
