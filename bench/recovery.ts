/**
 * `recovery`: throughput through a writer kill under load, postgres-ha beside plain postgres.js
 * under the same fault. Each trial kills the writer twice, once per client (the order alternates
 * between trials), each client fresh with `--writers` (default 50) concurrent write loops, each
 * inserting one row after another with no pause and asking the server which instance committed
 * it; the lab promotes a reader.
 *
 * - postgres-ha: default options, from the build users run, on the cluster endpoint.
 * - plain postgres.js: on the old writer's instance endpoint, and re-pointed (a new postgres.js
 *   instance, default options) at the new writer's the moment the lab says `writer-ready`: the
 *   best any client could do without knowing the topology before the lab does. What it takes to
 *   recover is what the server (and the machine) allow a cold pool; postgres-ha's recovery is
 *   reported as a ratio to it.
 *
 * Per trial and client: the write rate before the kill, and the time from the lab's
 * `writer-ready` until the writes the NEW writer acknowledged reach 90 % of that rate over a
 * `--window-ms` window (its end is the recovery time: the rate is sustained, not a burst); the
 * rate the new writer settles at over the following `--settle-ms`, as a ratio to the rate before;
 * how often a window of the second before the kill was itself below 90 % (the metric's noise with
 * no fault at all); the ledger check that every acknowledged write is stored exactly once; and a
 * timeline (bench/lib/recovery-timeline.ts) of the client's marks, its in-flight writes and the
 * new writer's server side (connections, `SyncRep` waits, checkpointer, standby), sampled every
 * `--sample-ms` (0: off), saved to bench/results/<runtime>-recovery-timelines.json. Target:
 * postgres-ha's recovery p50 and p99 ≤ 200 ms, 0 lost, 0 duplicated.
 *
 * Usage: `node --import tsx bench/recovery.ts [--trials 5] [--writers 50] [--window-ms 100]
 * [--settle-ms 1000] [--promote-after-ms 200] [--cap-ms 10000] [--clients postgres-ha,postgres.js]
 * [--sample-ms 10] [--print-timelines] [--no-save]` (or `deno run -A`, `bun`).
 *
 * @module
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import postgres from 'postgres'
import type { Lab } from '../lab/mod.ts'
import { parseFlags } from './lib/args.ts'
import { labSettings, openBenchLab } from './lib/bench-lab.ts'
import { makeClient } from './lib/clients.ts'
import { entry } from './lib/entry.ts'
import { inject, restore, writerReady } from './lib/faults.ts'
import { type LedgerCheck, verifyLedger } from './lib/ledger.ts'
import { adminUrl, backendsLeft } from './lib/leftovers.ts'
import { type LagTick, type LoopLag, startLoopLag } from './lib/loop-lag.ts'
import { isRecoveryWrite } from './lib/recovery.ts'
import { buildTimeline, formatTimeline, type Timeline } from './lib/recovery-timeline.ts'
import { emit, machineInfo, nowMs, progress, resultsDir, runtimeInfo, sleep } from './lib/report.ts'
import { type ServerSampler, startServerSampler } from './lib/server-sampler.ts'
import { ratio, summarize } from './lib/stats.ts'
import { target, verdict } from './lib/targets.ts'
import { rate, recoveryWatch } from './lib/throughput.ts'
import { type AnySql, errorCounts, startWriteLoop, type WriteLoop } from './lib/write-loop.ts'

const flags = parseFlags('bench/recovery.ts', {
  trials: { default: 5, help: 'writer kills per client (each on a fresh client and a restored topology)' },
  writers: { default: 50, help: 'concurrent write loops' },
  'window-ms': { default: 100, help: 'the throughput window' },
  'settle-ms': {
    default: 1_000,
    help: 'writing on after the recovery, to measure the new writer’s settled rate',
  },
  'warmup-ms': {
    default: 1_500,
    help: 'writing before the kill (its last second, or all of it if shorter, is the baseline rate)',
  },
  'promote-after-ms': { default: 200, help: "the lab's delay before promoting a reader" },
  'cap-ms': { default: 10_000, help: 'give up on a trial this long after the kill' },
  clients: { default: 'postgres-ha,postgres.js', help: 'which clients, comma-separated' },
  'sample-ms': { default: 10, help: "the servers' sampling interval for the timelines (0: off)" },
  'print-timelines': { default: false, help: 'print each trial’s timeline on stderr' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-recovery*.json' },
})
type Kind = 'postgres-ha' | 'postgres.js'
const kinds = flags.clients.split(',').filter(Boolean) as Kind[]
for (const k of kinds)
  if (k !== 'postgres-ha' && k !== 'postgres.js') {
    process.stderr.write(`--clients: unknown "${k}" (postgres-ha, postgres.js)\n`)
    process.exit(2)
  }
const started = performance.now()
const startedAt = new Date().toISOString()
const TARGET_MS = 200
const PLAIN_APPLICATION = 'bench plain postgres.js'
/** How each postgres-ha client's `end()` went, and what it left on the lab (checked before the exit). */
const haEnds: HaEnd[] = []
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

/** What one trial measured for one client; times in ms, `null` when it did not happen within the cap. */
interface RecoveryTrial {
  trial: number
  client: Kind
  oldWriter: string
  newWriter: string | null
  /** Acknowledged writes per second in the second before the kill (the whole warm-up if shorter). */
  baselinePerSecond: number
  /** Of the 100 ms windows (10 ms apart) of the second before the kill: the share below 90 % of the baseline. */
  steadyWindowsBelow90: number
  /**
   * The longest run of such windows in a row (ms): the "recovery time" the criterion gives a
   * client that was never interrupted, at the machine's load of the moment.
   */
  steadyLongestDipMs: number
  /** Kill → the lab's `writer-ready`. */
  promotionMs: number | null
  /** `writer-ready` → the bench knew it (plain postgres.js is re-pointed then). */
  notifiedMs: number | null
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
  /**
   * From `writer-ready` to the recovery: how long the benchmark process itself waited to run (its
   * timers late beyond the CPU it used meanwhile: not scheduled on a shared machine), in ms; and
   * the same per second over the second before the kill. Null when not sampled.
   */
  stalledMs: number | null
  steadyStalledMsPerSecond: number | null
  writes: number
  errors: Record<string, number>
  ledger: LedgerCheck
}

progress('recovery', `lab up; postgres-ha from ${entry.file}; ${flags.writers} writers; clients ${kinds}`)
/** Write ids, unique across the run. */
let id = 0
// In a block: the lab is down before the process ends itself below.
{
  await using lab = await openBenchLab({ promoteAfterMs: flags['promote-after-ms'] })
  const trials: RecoveryTrial[] = []
  const timelines: { trial: number; client: Kind; timeline: Timeline }[] = []
  const runs = flags.trials * kinds.length
  let run = 0
  for (let trial = 1; trial <= flags.trials; trial++) {
    // Alternating the order: neither client always meets the lab right after a restore.
    const order = trial % 2 ? kinds : [...kinds].reverse()
    for (const kind of order) {
      const { result: r, timeline } = await runRecoveryTrial(lab, trial, kind, ++run === runs)
      trials.push(r)
      if (timeline) timelines.push({ trial, client: kind, timeline })
      progress(
        'recovery',
        `#${trial} ${kind}: ${r.baselinePerSecond} writes/s before (${Math.round(r.steadyWindowsBelow90 * 100)} % of its windows < 90 %, longest dip ${r.steadyLongestDipMs} ms); ` +
          `promotion ${r.promotionMs} ms; failover done ${r.failedOverMs} ms, first write ${r.firstWriteMs} ms and 90 % throughput ` +
          `${r.recoveryMs} ms after writer-ready; settled at ${r.settledRatio}× the rate before; bench process waited ${r.stalledMs} ms to run ` +
          `during the recovery (${r.steadyStalledMsPerSecond} ms/s before the kill); ` +
          `lost ${r.ledger.lost}, duplicated ${r.ledger.duplicated}, errors ${JSON.stringify(r.errors)}`,
      )
      if (timeline && flags['print-timelines']) process.stderr.write(`${formatTimeline(timeline)}\n`)
    }
  }
  const of = (kind: Kind) => trials.filter((t) => t.client === kind)
  const field = (kind: Kind, f: keyof RecoveryTrial) => summarize(of(kind).map((t) => t[f] as number | null))
  const byClient = Object.fromEntries(
    kinds.map((kind) => [
      kind,
      {
        recoveryMs: field(kind, 'recoveryMs'),
        failedOverMs: field(kind, 'failedOverMs'),
        firstWriteMs: field(kind, 'firstWriteMs'),
        settledRatio: field(kind, 'settledRatio'),
        steadyWindowsBelow90: field(kind, 'steadyWindowsBelow90'),
        steadyLongestDipMs: field(kind, 'steadyLongestDipMs'),
        stalledMs: field(kind, 'stalledMs'),
        steadyStalledMsPerSecond: field(kind, 'steadyStalledMsPerSecond'),
        promotionMs: field(kind, 'promotionMs'),
        baselinePerSecond: field(kind, 'baselinePerSecond'),
        lost: of(kind).reduce((a, t) => a + t.ledger.lost, 0),
        duplicated: of(kind).reduce((a, t) => a + t.ledger.duplicated, 0),
      },
    ]),
  )
  const ha = of('postgres-ha')
  const recovery = summarize(ha.map((t) => t.recoveryMs))
  const plain = summarize(of('postgres.js').map((t) => t.recoveryMs))
  const lost = trials.reduce((a, t) => a + t.ledger.lost, 0)
  const duplicated = trials.reduce((a, t) => a + t.ledger.duplicated, 0)
  const unrecovered = ha.filter((t) => t.recoveryMs === null).length
  const targets = [
    target('recovery to 90 % throughput p50 (ms)', '≤', TARGET_MS, recovery.p50),
    target('recovery to 90 % throughput p99 (ms)', '≤', TARGET_MS, recovery.p99),
    target('trials that never recovered', '≤', 0, unrecovered),
    target('lost writes', '≤', 0, lost),
    target('duplicated writes', '≤', 0, duplicated),
    target('unhandled rejections', '≤', 0, unhandled.length),
    target('postgres-ha clients not ended cleanly', '≤', 0, haEnds.filter((e) => !e.clean).length),
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
      workload: `${flags.writers} concurrent write loops, one insert after another; writer killed after ${flags['warmup-ms']} ms; ${flags['window-ms']} ms throughput window; per trial one kill for each of ${kinds.join(' and ')} (order alternating); servers sampled every ${flags['sample-ms']} ms`,
      trials: flags.trials,
      // postgres-ha's, as before (summary.ts reads these).
      recoveryMs: recovery,
      failedOverMs: summarize(ha.map((t) => t.failedOverMs)),
      firstWriteMs: summarize(ha.map((t) => t.firstWriteMs)),
      settledRatio: summarize(ha.map((t) => t.settledRatio)),
      promotionMs: summarize(trials.map((t) => t.promotionMs)),
      baselinePerSecond: summarize(ha.map((t) => t.baselinePerSecond)),
      byClient,
      // postgres-ha's recovery ÷ plain postgres.js's re-pointed at writer-ready, same fault, same run.
      vsPlainPostgresJs: {
        p50: ratio(recovery.p50, plain.p50),
        p99: ratio(recovery.p99, plain.p99),
        // postgres-ha's recovery − plain's: the time postgres-ha adds (negative: it saves).
        addedP50Ms: recovery.p50 !== null && plain.p50 !== null ? round(recovery.p50 - plain.p50) : null,
      },
      lost,
      duplicated,
      unhandledRejections: unhandled,
      // Each postgres-ha client's end(): resolved, and no backend of it left on any instance.
      postgresHaEnds: haEnds.filter((e) => !e.clean),
      results: trials,
      targets,
      ...verdict(targets),
    },
    !flags['no-save'],
  )
  if (!flags['no-save'] && timelines.length)
    writeFileSync(
      join(resultsDir, `${runtimeInfo().name}-recovery-timelines.json`),
      `${JSON.stringify(timelines)}\n`,
    )
}

// postgres.js keeps a reconnect timer of a connection that failed (its backoff, up to 20 s) past
// its end(), and a timer firing then even connects again: the plain clients of the last trials
// kept this process alive ~12 s after its JSON. Ended here, once every postgres-ha client has
// shown it ended cleanly (its end() resolved, no backend of it left on the lab); otherwise the
// process is left to end by itself, so a leak of postgres-ha's cannot hide behind the exit.
if (haEnds.every((e) => e.clean)) process.exit()
progress(
  'recovery',
  `postgres-ha clients that did not end cleanly: ${JSON.stringify(haEnds.filter((e) => !e.clean))}`,
)

/** A tagged-template `sql` whose target can be swapped while the loops run (plain postgres.js's re-pointing). */
function switchable(initial: AnySql): { sql: AnySql; set(next: AnySql): AnySql } {
  let current = initial
  const sql = ((strings: TemplateStringsArray, ...values: unknown[]) =>
    (current as any)(strings, ...values)) as unknown as AnySql
  return {
    sql,
    set(next) {
      const old = current
      current = next
      return old
    },
  }
}

async function runRecoveryTrial(
  lab: Lab,
  trial: number,
  kind: Kind,
  last: boolean,
): Promise<{ result: RecoveryTrial; timeline?: Timeline }> {
  const status = await lab.status()
  const oldWriter = status.writer!
  const ha = kind === 'postgres-ha' ? await makeClient(lab, 'postgres-ha') : undefined
  const plainSqls: postgres.Sql[] = []
  const plainOf = (url: string) => {
    // Its own application_name, so that what postgres-ha left on the lab can be told from it.
    const sql = postgres(url, { onnotice: () => {}, connection: { application_name: PLAIN_APPLICATION } })
    plainSqls.push(sql)
    return sql as unknown as AnySql
  }
  const target = switchable(ha ? ha.sql : plainOf(lab.url(oldWriter)))
  if (!ha) await target.sql`select 1`
  const loops: WriteLoop[] = []
  let fault: Awaited<ReturnType<typeof inject>> | undefined
  let sampler: ServerSampler | undefined
  let lag: LoopLag | undefined
  try {
    const maxMs = flags['warmup-ms'] + flags['cap-ms'] + 5_000
    for (let w = 0; w < flags.writers; w++)
      loops.push(
        startWriteLoop({
          sql: target.sql,
          trial,
          client: kind,
          nextId: () => ++id,
          intervalMs: 0,
          errorPauseMs: 5,
          maxMs,
          maxWrites: 1_000_000,
        }),
      )
    const readers = status.nodes.filter((n) => n.id !== oldWriter && n.state === 'running')
    if (flags['sample-ms'] > 0) {
      await sleep(Math.max(0, flags['warmup-ms'] - 300))
      sampler = await startServerSampler(
        Object.fromEntries(readers.map((n) => [n.id, adminUrl(lab.url(n.id))])),
        { user: status.user, everyMs: flags['sample-ms'], maxMs },
      ).catch(() => undefined)
      lag = startLoopLag({ everyMs: 5, maxMs })
      await sleep(300)
    } else await sleep(flags['warmup-ms'])
    fault = await inject(lab, 'kill')
    const injected = fault
    const all = () => loops.flatMap((l) => l.records)
    const acked = all().flatMap((r) => (r.inst !== undefined ? [r.endMs!] : []))
    const baselinePerSecond = rate(acked, injected.faultMs - baselineMs(), injected.faultMs)
    const steady = steadyDips(acked, injected.faultMs, baselinePerSecond)
    const ready = await writerReady(lab, injected, flags['cap-ms'])
    const notifiedAt = nowMs()
    // Plain postgres.js learns the new writer from the lab, the moment the lab says so.
    if (!ha && ready) {
      const old = target.set(plainOf(lab.url(ready.node!)))
      void (old as unknown as postgres.Sql).end({ timeout: 0 }).catch(() => {})
    }
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
    await sampler?.stop()
    lag?.stop()
    // Reads what came in since its last call too: the same time recoveredAt gives over every write.
    const at = ready ? watch() : undefined
    const first = onNewWriter().sort((a, b) => a - b)[0]
    const records = all()
    const writer = (await lab.status()).writer
    const events = await lab.events()
    const promoted = events.find((e) => e.type === 'promoted' && e.atMs >= injected.faultMs)
    const failedOverAt = ha?.failedOverAfter?.(injected.faultMs)
    const timeline = sampler
      ? buildTimeline({
          records,
          marks: {
            kill: injected.faultMs,
            detected: ha?.detectedAfter?.(injected.faultMs),
            chosen: failedOverAt,
            promoted: promoted?.atMs,
            writerReady: ready?.atMs,
            recovered: at,
          },
          newWriter: ready?.node,
          firstAck: first,
          sampler,
          lag: lag?.ticks,
          baselinePerSecond,
          isNewWriterAck: (r) => isRecoveryWrite(r, mark),
        })
      : undefined
    const result: RecoveryTrial = {
      trial,
      client: kind,
      oldWriter: injected.oldWriter,
      newWriter: ready?.node ?? null,
      baselinePerSecond: Math.round(baselinePerSecond),
      steadyWindowsBelow90: steady.share,
      steadyLongestDipMs: steady.longestMs,
      promotionMs: ready ? round(ready.atMs - injected.faultMs) : null,
      notifiedMs: ready ? round(notifiedAt - ready.atMs) : null,
      failedOverMs: since(failedOverAt, ready?.atMs),
      firstWriteMs: ready && first !== undefined ? round(first - ready.atMs) : null,
      recoveryMs: ready && at !== undefined ? round(at - ready.atMs) : null,
      stalledMs: lag && ready && at !== undefined ? stalled(lag.ticks, ready.atMs, at) : null,
      steadyStalledMsPerSecond: lag ? stalled(lag.ticks, injected.faultMs - 1_000, injected.faultMs) : null,
      settledRatio:
        ready && baselinePerSecond > 0
          ? Math.round((rate(onNewWriter(), stoppedAt - settleMs, stoppedAt) / baselinePerSecond) * 100) / 100
          : null,
      writes: records.length,
      errors: errorCounts(records),
      ledger: await verifyLedger(lab.url(writer ?? injected.oldWriter), records),
    }
    return timeline ? { result, timeline } : { result }
  } finally {
    await Promise.all(loops.map((l) => l.stop(100)))
    await sampler?.stop()
    lag?.stop()
    if (ha) haEnds.push(await endCleanly(lab, trial, ha))
    await Promise.all(plainSqls.map((s) => s.end({ timeout: 0 }).catch(() => {})))
    // The last trial's lab is torn down anyway: no need to bring the old writer back.
    if (fault && !last) await restore(lab, fault)
  }
}

/**
 * The 100 ms windows (ending every 10 ms) of the second before the kill against 90 % of that
 * second's rate: the share below it, and the longest run of them in a row (ms): what the recovery
 * criterion shows with no fault at all — the longest "recovery" an uninterrupted client has.
 */
function steadyDips(
  acks: readonly number[],
  faultMs: number,
  baselinePerSecond: number,
): { share: number; longestMs: number } {
  const windowMs = flags['window-ms']
  let below = 0
  let n = 0
  let run = 0
  let longest = 0
  for (let end = faultMs - baselineMs() + windowMs; end <= faultMs; end += 10, n++) {
    if (rate(acks, end - windowMs, end) < 0.9 * baselinePerSecond) {
      below++
      longest = Math.max(longest, (run += 10))
    } else run = 0
  }
  return { share: n ? Math.round((below / n) * 100) / 100 : 0, longestMs: longest }
}

/**
 * The span before the kill the baseline rate is taken over: the last second, or the whole warm-up
 * when it is shorter (a smoke run), so that the rate is not diluted by time nothing was written in.
 */
function baselineMs(): number {
  return Math.min(1_000, flags['warmup-ms'])
}

/** ms the process waited to run in `[fromMs, toMs)`: each tick's lateness beyond the CPU it used. */
function stalled(ticks: readonly LagTick[], fromMs: number, toMs: number): number {
  let ms = 0
  for (const t of ticks) if (t.atMs >= fromMs && t.atMs < toMs) ms += Math.max(0, t.lateMs - t.cpuMs)
  return round(ms)
}

function since(t: number | undefined, from: number | undefined): number | null {
  return t === undefined || from === undefined ? null : round(t - from)
}

function round(x: number): number {
  return Math.round(x * 10) / 10
}

/** How a postgres-ha client's `end()` went. */
interface HaEnd {
  trial: number
  /** `end()` resolved within 3 s, and none of its backends was left on the lab 2 s later. */
  clean: boolean
  end: 'resolved' | 'timed out' | string
  /** Its backends still connected, by instance. */
  left: Record<string, number>
}

/** Ends a postgres-ha client and checks on the lab that it left no connection behind. */
async function endCleanly(lab: Lab, trial: number, ha: { end(): Promise<void> }): Promise<HaEnd> {
  const end = await Promise.race([
    ha.end().then(
      () => 'resolved',
      (error: unknown) => `rejected: ${String(error)}`,
    ),
    sleep(3_000).then(() => 'timed out'),
  ])
  const left = await backendsLeft(lab, { exceptApplication: PLAIN_APPLICATION, waitMs: 2_000 }).catch(
    (error: unknown) => ({ [`unknown (${String(error)})`]: 1 }),
  )
  return { trial, clean: end === 'resolved' && Object.keys(left).length === 0, end, left }
}
