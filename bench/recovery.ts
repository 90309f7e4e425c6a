/**
 * `recovery`: throughput through a writer kill under load. One postgres-ha client (default
 * options, from the build users run) with `--writers` (default 50) concurrent write loops, each
 * inserting one row after another with no pause and asking the server which instance committed
 * it; the writer is killed; the lab promotes a reader. Per trial: the write rate before the kill,
 * and the time from the lab's `writer-ready` until the writes the NEW writer acknowledged reach
 * 90 % of that rate over a `--window-ms` window (its end is the recovery time: the rate is
 * sustained, not a burst); the rate the new writer settles at over the following `--settle-ms`,
 * as a ratio to the rate before (below 0.9 the target was out of any client's reach: the new
 * topology has one synchronous standby fewer, and the machine is shared); then the ledger check
 * that every acknowledged write is stored exactly once. Target: recovery p50 and p99 ≤ 200 ms,
 * 0 lost, 0 duplicated.
 *
 * Usage: `node --import tsx bench/recovery.ts [--trials 5] [--writers 50] [--window-ms 100]
 * [--settle-ms 1000] [--promote-after-ms 200] [--cap-ms 10000] [--no-save]` (or `deno run -A`, `bun`).
 *
 * @module
 */
import type { Lab } from '../lab/mod.ts'
import { parseFlags } from './lib/args.ts'
import { labSettings, openBenchLab } from './lib/bench-lab.ts'
import { makeClient } from './lib/clients.ts'
import { entry } from './lib/entry.ts'
import { inject, restore, writerReady } from './lib/faults.ts'
import { type LedgerCheck, verifyLedger } from './lib/ledger.ts'
import { isRecoveryWrite } from './lib/recovery.ts'
import { emit, machineInfo, nowMs, progress, runtimeInfo, sleep } from './lib/report.ts'
import { summarize } from './lib/stats.ts'
import { target, verdict } from './lib/targets.ts'
import { rate, recoveryWatch } from './lib/throughput.ts'
import { errorCounts, startWriteLoop, type WriteLoop } from './lib/write-loop.ts'

const flags = parseFlags('bench/recovery.ts', {
  trials: { default: 5, help: 'writer kills (each on a fresh client and a restored topology)' },
  writers: { default: 50, help: 'concurrent write loops' },
  'window-ms': { default: 100, help: 'the throughput window' },
  'settle-ms': {
    default: 1_000,
    help: 'writing on after the recovery, to measure the new writer’s settled rate',
  },
  'warmup-ms': { default: 1_500, help: 'writing before the kill (the last second is the baseline rate)' },
  'promote-after-ms': { default: 200, help: "the lab's delay before promoting a reader" },
  'cap-ms': { default: 10_000, help: 'give up on a trial this long after the kill' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-recovery.json' },
})
const started = performance.now()
const startedAt = new Date().toISOString()
const TARGET_MS = 200
// A rejection nobody handles would end the process before the JSON is out: it is counted (a
// defect of the client under test, a missed target) and the run goes on.
const unhandled: string[] = []
process.on('unhandledRejection', (error) => {
  unhandled.push(
    String((error as Error)?.stack ?? error)
      .split('\n')
      .slice(0, 3)
      .join(' | '),
  )
})

/** What one trial measured; times in ms, `null` when it did not happen within the cap. */
interface RecoveryTrial {
  trial: number
  oldWriter: string
  newWriter: string | null
  /** Acknowledged writes per second in the second before the kill. */
  baselinePerSecond: number
  /** Kill → the lab's `writer-ready`. */
  promotionMs: number | null
  /** `writer-ready` → postgres-ha's successful `failover` event (negative: it verified the new writer first). */
  failedOverMs: number | null
  /** `writer-ready` → the first write the new writer acknowledged (negative: before the lab's own). */
  firstWriteMs: number | null
  /** `writer-ready` → the end of the first window at 90 % of the baseline rate on the new writer. */
  recoveryMs: number | null
  /**
   * The new writer's rate over the last `--settle-ms` of the trial ÷ the baseline rate: what the
   * new topology (one synchronous standby fewer, the machine's load of the moment) sustains once
   * recovered. Below 0.9, no client could get back to 90 % of the rate before the kill.
   */
  settledRatio: number | null
  writes: number
  errors: Record<string, number>
  ledger: LedgerCheck
}

progress('recovery', `lab up; postgres-ha from ${entry.file}; ${flags.writers} writers`)
await using lab = await openBenchLab({ promoteAfterMs: flags['promote-after-ms'] })
let id = 0
const trials: RecoveryTrial[] = []
for (let trial = 1; trial <= flags.trials; trial++) {
  const r = await runRecoveryTrial(lab, trial)
  trials.push(r)
  progress(
    'recovery',
    `#${trial}: ${Math.round(r.baselinePerSecond)} writes/s before; promotion ${r.promotionMs} ms; ` +
      `failover done ${r.failedOverMs} ms, first write ${r.firstWriteMs} ms and 90 % throughput ${r.recoveryMs} ms after writer-ready; ` +
      `settled at ${r.settledRatio}× the rate before; ` +
      `lost ${r.ledger.lost}, duplicated ${r.ledger.duplicated}, errors ${JSON.stringify(r.errors)}`,
  )
}
const recovery = summarize(trials.map((t) => t.recoveryMs))
const lost = trials.reduce((a, t) => a + t.ledger.lost, 0)
const duplicated = trials.reduce((a, t) => a + t.ledger.duplicated, 0)
const unrecovered = trials.filter((t) => t.recoveryMs === null).length
const targets = [
  target('recovery to 90 % throughput p50 (ms)', '≤', TARGET_MS, recovery.p50),
  target('recovery to 90 % throughput p99 (ms)', '≤', TARGET_MS, recovery.p99),
  target('trials that never recovered', '≤', 0, unrecovered),
  target('lost writes', '≤', 0, lost),
  target('duplicated writes', '≤', 0, duplicated),
  target('unhandled rejections', '≤', 0, unhandled.length),
]
emit(
  'recovery',
  {
    part: 'recovery',
    runtime: runtimeInfo(),
    machine: machineInfo(),
    startedAt,
    durationMs: Math.round(performance.now() - started),
    entry,
    lab: await labSettings(lab),
    workload: `${flags.writers} concurrent write loops, one insert after another, through one postgres-ha client (default options); writer killed after ${flags['warmup-ms']} ms; ${flags['window-ms']} ms throughput window`,
    trials: trials.length,
    recoveryMs: recovery,
    failedOverMs: summarize(trials.map((t) => t.failedOverMs)),
    firstWriteMs: summarize(trials.map((t) => t.firstWriteMs)),
    settledRatio: summarize(trials.map((t) => t.settledRatio)),
    promotionMs: summarize(trials.map((t) => t.promotionMs)),
    baselinePerSecond: summarize(trials.map((t) => t.baselinePerSecond)),
    lost,
    duplicated,
    unhandledRejections: unhandled,
    results: trials,
    targets,
    ...verdict(targets),
  },
  !flags['no-save'],
)

async function runRecoveryTrial(lab: Lab, trial: number): Promise<RecoveryTrial> {
  const client = await makeClient(lab, 'postgres-ha')
  const loops: WriteLoop[] = []
  let fault: Awaited<ReturnType<typeof inject>> | undefined
  try {
    const maxMs = flags['warmup-ms'] + flags['cap-ms'] + 5_000
    for (let w = 0; w < flags.writers; w++)
      loops.push(
        startWriteLoop({
          sql: client.sql,
          trial,
          client: 'postgres-ha',
          nextId: () => ++id,
          intervalMs: 0,
          errorPauseMs: 5,
          maxMs,
          maxWrites: 1_000_000,
        }),
      )
    await sleep(flags['warmup-ms'])
    fault = await inject(lab, 'kill')
    const injected = fault
    const all = () => loops.flatMap((l) => l.records)
    const baselinePerSecond = rate(
      all().flatMap((r) => (r.inst !== undefined ? [r.endMs!] : [])),
      injected.faultMs - 1_000,
      injected.faultMs,
    )
    const ready = await writerReady(lab, injected, flags['cap-ms'])
    const mark = { oldWriter: injected.oldWriter, faultMs: injected.faultMs, newWriter: ready?.node }
    const onNewWriter = () => all().flatMap((r) => (isRecoveryWrite(r, mark) ? [r.endMs!] : []))
    const fromMs = ready?.atMs ?? injected.faultMs
    const deadline = performance.now() + flags['cap-ms']
    const options = { baselinePerSecond, fromMs, windowMs: flags['window-ms'] }
    // Asked every 20 ms: over only what is new since the last time (see recoveryWatch).
    const watch = recoveryWatch(
      loops.map((l) => l.records),
      (r) => isRecoveryWrite(r, mark),
      options,
    )
    while (ready && watch() === undefined && performance.now() < deadline) await sleep(20)
    const settleMs = Math.max(flags['window-ms'], flags['settle-ms'])
    await sleep(settleMs)
    const stoppedAt = nowMs()
    await Promise.all(loops.map((l) => l.stop(2_000)))
    // Reads what came in since its last call too: the same time recoveredAt gives over every write.
    const at = ready ? watch() : undefined
    const first = onNewWriter().sort((a, b) => a - b)[0]
    const records = all()
    const writer = (await lab.status()).writer
    return {
      trial,
      oldWriter: injected.oldWriter,
      newWriter: ready?.node ?? null,
      baselinePerSecond: Math.round(baselinePerSecond),
      promotionMs: ready ? round(ready.atMs - injected.faultMs) : null,
      failedOverMs: since(client.failedOverAfter?.(injected.faultMs), ready?.atMs),
      firstWriteMs: ready && first !== undefined ? round(first - ready.atMs) : null,
      recoveryMs: ready && at !== undefined ? round(at - ready.atMs) : null,
      settledRatio:
        ready && baselinePerSecond > 0
          ? Math.round((rate(onNewWriter(), stoppedAt - settleMs, stoppedAt) / baselinePerSecond) * 100) / 100
          : null,
      writes: records.length,
      errors: errorCounts(records),
      ledger: await verifyLedger(lab.url(writer ?? injected.oldWriter), records),
    }
  } finally {
    await Promise.all(loops.map((l) => l.stop(100)))
    await Promise.race([client.end().catch(() => {}), sleep(3_000)])
    // The last trial's lab is torn down anyway: no need to bring the old writer back.
    if (fault && trial < flags.trials) await restore(lab, fault)
  }
}

function since(t: number | undefined, from: number | undefined): number | null {
  return t === undefined || from === undefined ? null : round(t - from)
}

function round(x: number): number {
  return Math.round(x * 10) / 10
}
