/**
 * One failover trial: fresh clients write steadily, a fault hits the writer, and the trial
 * measures when the lab had a new writer and when each client's writes landed on it; then it
 * checks the ledger and restores the lab's topology. Several clients may share one fault (the
 * baseline compares them under the very same failover).
 *
 * @module
 */
import type { Lab } from '../../lab/mod.ts'
import { type Injected, inject, restore, type Scenario, writerReady } from './faults.ts'
import { type LedgerCheck, verifyLedger } from './ledger.ts'
import { isRecoveryWrite } from './recovery.ts'
import { nowMs, sleep } from './report.ts'
import { type AnySql, errorCounts, startWriteLoop, type WriteLoop, type WriteRecord } from './write-loop.ts'

/** A client under test, made fresh for each trial. */
export interface ClientUnderTest {
  sql: AnySql
  /** Epoch ms at which the client first reacted to the fault (postgres-ha's `failoverStart`), if it tells. */
  detectedAfter?(faultMs: number): number | undefined
  /** Epoch ms at which the client had found and verified the new writer (postgres-ha's successful `failover`), if it tells. */
  failedOverAfter?(faultMs: number): number | undefined
  end(): Promise<void>
}

/** A client of a trial: its label (stored with its rows) and how to make it. */
export interface TrialClient {
  label: string
  make(): Promise<ClientUnderTest>
}

/** What one trial measured for one client; times in ms, `null` when it never came within the cap. */
export interface TrialResult {
  trial: number
  scenario: Scenario
  client: string
  oldWriter: string
  newWriter: string | null
  /** Fault → the lab's `writer-ready`. */
  promotionMs: number | null
  /** Fault → the first acknowledged write that the server said another instance committed. */
  firstWriteMs: number | null
  /** First write on the new writer − `writer-ready`: what the driver added. */
  driverAddedMs: number | null
  /** Fault → the client's own detection (postgres-ha's `hostDown`/`failoverStart`). */
  detectedMs: number | null
  /** The longest time without an acknowledged write after the fault. */
  writeGapMs: number | null
  /** The trial hit its cap before a write landed on the new writer. */
  capped: boolean
  /** Loops start → fault: the warm-up as it went. */
  faultAfterStartMs: number
  /** The client's loop ended before the trial stopped it (a bound, or a throw): why, and when after the fault. */
  endedEarly: { by: string; afterFaultMs: number } | null
  /** Fault → the start of the loop's last write (whether it was answered or not). */
  lastWriteStartMs: number | null
  writes: number
  errors: Record<string, number>
  ledger: LedgerCheck
}

/** The options of {@link runTrial}. */
export interface TrialOptions {
  lab: Lab
  scenario: Scenario
  trial: number
  clients: readonly TrialClient[]
  nextId: () => number
  /** Steady writes before the fault. */
  warmupMs?: number
  /**
   * After `warmupMs`, the longest wait for every client to have a few acknowledged writes (default
   * 5 s): a client that cannot write before the fault (postgres.js multi-host on a list that starts
   * with a standby, see bench/lib/clients.ts) makes the warm-up last this long.
   */
  warmupWaitMs?: number
  /** Writes after the last client's first one on the new writer, to see that they keep landing. */
  tailMs?: number
  /** Give up waiting for a write on the new writer this long after the fault. */
  capMs: number
  /** Called right before the fault and right after the last client's first write on the new writer (`Deno.bench`'s `b.start()`/`b.end()`). */
  marks?: { start(): void; end(): void }
  /** Bring the lab back to a full topology afterwards (default true; false for a throwaway lab). */
  restore?: boolean
}

/**
 * Runs one trial (one fault, every client writing through it) and restores the lab.
 *
 * @example
 * ```ts
 * const [r] = await runTrial({ lab, scenario: 'kill', trial: 1, clients: [ha], nextId, capMs: 10_000 })
 * r.driverAddedMs // e.g. 7.9
 * ```
 */
export async function runTrial(options: TrialOptions): Promise<TrialResult[]> {
  const { lab, scenario, trial, nextId, warmupMs = 200, warmupWaitMs = 5_000, tailMs = 50, capMs } = options
  const clients: ClientUnderTest[] = []
  const loops: WriteLoop[] = []
  let fault: Injected | undefined
  try {
    // Every client made before any loop starts: a client slow to connect must not use up the
    // time of the loops started before it.
    for (const c of options.clients) clients.push(await c.make())
    // A loop's own bound only stops a runaway loop (the trial stops them all): it covers every
    // phase of the trial, the longest warm-up included, so a loop never ends while its client's
    // first write on the new writer is still awaited.
    const maxMs = warmupMs + warmupWaitMs + capMs + tailMs + LOOP_BOUND_SLACK_MS
    const loopsStarted = nowMs()
    for (const [i, client] of clients.entries())
      loops.push(startWriteLoop({ sql: client.sql, trial, client: options.clients[i]!.label, nextId, maxMs }))
    await sleep(warmupMs)
    // Steady writes before the fault on a slow machine too: each loop has a few acknowledged
    // writes (bounded in time), so "no write lost" is checked on writes that happened.
    const warmUntil = performance.now() + warmupWaitMs
    while (performance.now() < warmUntil && loops.some((l) => acknowledged(l.records) < WARM_WRITES))
      await sleep(50)
    options.marks?.start()
    fault = await inject(lab, scenario)
    const injected = fault
    const ready = writerReady(lab, injected, capMs)
    const deadline = performance.now() + capMs
    const firsts = await Promise.all(loops.map((l) => firstWriteElsewhere(l.records, injected, deadline)))
    options.marks?.end()
    if (firsts.some(Boolean)) await sleep(tailMs)
    // Before the stop: a loop that ended by now ended by itself.
    const endedEarly = loops.map((l) => l.ended)
    await Promise.all(loops.map((l, i) => l.stop(firsts[i] ? 2_000 : 100)))
    const readyAt = (await ready)?.atMs
    const writer = (await lab.status()).writer
    const results: TrialResult[] = []
    for (const [i, loop] of loops.entries()) {
      const first = firsts[i]
      const ledger = await verifyLedger(lab.url(writer ?? injected.oldWriter), loop.records)
      const firstAt = first?.endMs
      results.push({
        trial,
        scenario,
        client: options.clients[i]!.label,
        oldWriter: injected.oldWriter,
        newWriter: first?.inst ?? writer,
        promotionMs: since(readyAt, injected.faultMs),
        firstWriteMs: since(firstAt, injected.faultMs),
        driverAddedMs: since(firstAt, readyAt),
        detectedMs: since(clients[i]!.detectedAfter?.(injected.faultMs), injected.faultMs),
        writeGapMs: writeGap(loop.records, injected),
        capped: !first,
        faultAfterStartMs: round(injected.faultMs - loopsStarted),
        endedEarly: endedEarly[i]
          ? { by: endedEarly[i]!.by, afterFaultMs: round(endedEarly[i]!.atMs - injected.faultMs) }
          : null,
        lastWriteStartMs: since(loop.records.at(-1)?.startMs, injected.faultMs),
        writes: loop.records.length,
        errors: errorCounts(loop.records),
        ledger,
      })
    }
    return results
  } finally {
    await Promise.all(loops.map((l) => l.stop(100)))
    await Promise.all(clients.map((c) => Promise.race([c.end().catch(() => {}), sleep(3_000)])))
    if (fault && options.restore !== false) await restore(lab, fault)
  }
}

/** One progress line for a trial's result. */
export function describeTrial(r: TrialResult): string {
  const ms = (x: number | null) => (x === null ? '—' : `${x} ms`)
  return (
    `${r.scenario} #${r.trial} ${r.client}: promotion ${ms(r.promotionMs)}, first write ${ms(r.firstWriteMs)}, ` +
    `driver-added ${ms(r.driverAddedMs)}, detected ${ms(r.detectedMs)}, writes ${r.writes}, ` +
    `lost ${r.ledger.lost}, duplicated ${r.ledger.duplicated}, errors ${JSON.stringify(r.errors)}, ` +
    `fault ${r.faultAfterStartMs} ms after the loops started, last write started ${ms(r.lastWriteStartMs)} after it` +
    (r.endedEarly
      ? `, loop ended by itself (${r.endedEarly.by}) ${r.endedEarly.afterFaultMs} ms after the fault`
      : '')
  )
}

const round = (x: number) => Math.round(x * 10) / 10
const since = (t: number | undefined, from: number | undefined) =>
  t === undefined || from === undefined ? null : round(t - from)

const WARM_WRITES = 12
/**
 * Beyond the trial's phases: a loop's own bound only guards against a loop nobody stops (the
 * trial stops every loop, also when it throws), so it is far beyond anything a loaded machine
 * adds to the phases (the fault's injection is not among them, and took seconds under load).
 */
const LOOP_BOUND_SLACK_MS = 60_000
const acknowledged = (records: readonly WriteRecord[]) => records.filter((r) => r.inst !== undefined).length

/** Polls the records for the first acknowledged write after the fault on another instance. */
async function firstWriteElsewhere(
  records: readonly WriteRecord[],
  fault: Injected,
  deadline: number,
): Promise<WriteRecord | undefined> {
  let scanned = 0
  while (performance.now() < deadline) {
    for (; scanned < records.length; scanned++) {
      const r = records[scanned]!
      if (r.endMs === undefined) break
      if (isRecoveryWrite(r, fault)) return r
    }
    await sleep(5)
  }
  return undefined
}

/** The longest span between consecutive acknowledged writes that ends after the fault. */
function writeGap(records: readonly WriteRecord[], fault: Injected): number | null {
  let previous: number | undefined
  let gap: number | null = null
  for (const r of records) {
    if (r.inst === undefined || r.endMs === undefined) continue
    if (previous !== undefined && r.endMs > fault.faultMs) gap = Math.max(gap ?? 0, r.endMs - previous)
    previous = r.endMs
  }
  return gap === null ? null : round(gap)
}
