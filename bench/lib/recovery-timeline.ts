/**
 * One recovery trial as a timeline, in ms from the kill: the client's marks (it saw the fault, it
 * chose the new writer), the lab's (promoted, writer-ready), the first write the new writer
 * acknowledged, the 90 % mark; then, per `binMs` bin, what the client had in flight and had
 * acknowledged, and what the new writer's server side showed (application connections, those
 * waiting for the synchronous standby, the checkpointer, the standby's streaming state). Built
 * after the trial from what was recorded during it, so it costs the trial nothing.
 *
 * @module
 */
import type { LagTick } from './loop-lag.ts'
import type { ServerSampler } from './server-sampler.ts'
import type { WriteRecord } from './write-loop.ts'

/** Marks of a trial, epoch ms (undefined: did not happen). */
export interface TimelineMarks {
  kill: number
  detected?: number | undefined
  chosen?: number | undefined
  promoted?: number | undefined
  writerReady?: number | undefined
  recovered?: number | undefined
}

/** One bin of the timeline. */
export interface TimelineBin {
  /** Start of the bin, ms from the kill. */
  t: number
  /** Writes the new writer acknowledged in the bin. */
  acks: number
  /** Writes that failed in the bin. */
  errors: number
  /** Writes in flight at the end of the bin (started, not settled). */
  inFlight: number
  /** The mean time from start to acknowledgement of the bin's new-writer acks (ms). */
  latencyMs?: number
  /** The machine: busy share of its CPUs and runnable threads, at its last sample in the bin. */
  machineBusy?: number
  runnable?: number
  /** The benchmark process's worst event-loop lag in the bin, and the CPU it used (ms). */
  lagMs?: number
  cpuMs?: number
  /** The new writer's last sample in the bin (absent: no sample in it). */
  conns?: number
  active?: number
  syncRep?: number
  otherWaits?: Record<string, number>
  checkpointer?: string | null
  standbys?: string[]
  inRecovery?: boolean
}

/** A trial's timeline. */
export interface Timeline {
  /** ms from the kill. */
  marks: Record<string, number | null>
  /** When each of the new writer's application connections started, ms from the kill (after the kill only). */
  connectionStarts: number[]
  /** Completed checkpoints on the new writer, ms from the kill (when its count went up). */
  checkpointsDone: number[]
  /** Baseline acknowledgements per bin before the kill, for comparison with `bins[].acks`. */
  baselinePerBin: number
  bins: TimelineBin[]
  /**
   * The new writer's acknowledgements by the connection (server process) that carried them, in
   * the same bins as `bins` (absent: the writes did not say): how the pool spread the writes
   * while it filled.
   */
  connections?: { pid: number; firstAck: number; acks: number[] }[]
}

/**
 * Builds the timeline of a trial from its records, marks and server samples, from `fromMs` to
 * `toMs` after the kill.
 *
 * @example
 * ```ts
 * const timeline = buildTimeline({ records, marks, newWriter: 'n12', sampler, baselinePerSecond: 5000 })
 * ```
 */
export function buildTimeline(input: {
  records: readonly WriteRecord[]
  marks: TimelineMarks
  newWriter: string | undefined
  firstAck: number | undefined
  sampler: ServerSampler | undefined
  lag?: readonly LagTick[] | undefined
  baselinePerSecond: number
  binMs?: number
  fromMs?: number
  toMs?: number
  isNewWriterAck: (r: WriteRecord) => boolean
}): Timeline {
  const { records, marks, newWriter, sampler, binMs = 10, fromMs = -20 } = input
  const kill = marks.kill
  const rel = (t: number | undefined) => (t === undefined ? null : Math.round((t - kill) * 10) / 10)
  const toMs = input.toMs ?? (marks.recovered !== undefined ? marks.recovered - kill + 100 : 1_000)
  const n = Math.max(1, Math.ceil((toMs - fromMs) / binMs))
  const bins: TimelineBin[] = Array.from({ length: n }, (_, i) => ({
    t: fromMs + i * binMs,
    acks: 0,
    errors: 0,
    inFlight: 0,
  }))
  const binOf = (at: number) => Math.floor((at - kill - fromMs) / binMs)
  const latency = new Map<TimelineBin, number>()
  const byPid = new Map<number, { pid: number; firstAck: number; acks: number[] }>()
  for (const r of records) {
    if (r.endMs !== undefined) {
      const i = binOf(r.endMs)
      const b = bins[i]
      if (b && input.isNewWriterAck(r)) {
        b.acks++
        latency.set(b, (latency.get(b) ?? 0) + (r.endMs - r.startMs))
        if (r.pid !== undefined) {
          let c = byPid.get(r.pid)
          if (!c) byPid.set(r.pid, (c = { pid: r.pid, firstAck: rel(r.endMs)!, acks: bins.map(() => 0) }))
          c.firstAck = Math.min(c.firstAck, rel(r.endMs)!)
          c.acks[i]!++
        }
      }
      if (b && r.error) b.errors++
    }
    // In flight at a bin's end: started before it and not settled by it.
    const first = Math.max(0, binOf(r.startMs))
    const last = r.endMs === undefined ? n : Math.min(n, binOf(r.endMs))
    for (let i = first; i < last; i++) bins[i]!.inFlight++
  }
  for (const [b, total] of latency) b.latencyMs = Math.round((total / b.acks) * 10) / 10
  for (const m of sampler?.machine ?? []) {
    const b = bins[binOf(m.atMs)]
    if (b) Object.assign(b, { machineBusy: m.busy, runnable: m.running })
  }
  for (const tick of input.lag ?? []) {
    const b = bins[binOf(tick.atMs)]
    if (!b) continue
    b.lagMs = Math.max(b.lagMs ?? 0, tick.lateMs)
    b.cpuMs = Math.round(((b.cpuMs ?? 0) + tick.cpuMs) * 10) / 10
  }
  const samples = newWriter ? (sampler?.samples.get(newWriter) ?? []) : []
  const checkpointsDone: number[] = []
  let prev: number | undefined
  for (const s of samples) {
    if (prev !== undefined && s.checkpoints > prev && s.atMs >= kill) checkpointsDone.push(rel(s.atMs)!)
    prev = s.checkpoints
    const b = bins[binOf(s.atMs)]
    if (!b) continue
    Object.assign(b, {
      conns: s.conns,
      active: s.active,
      syncRep: s.syncRep,
      ...(Object.keys(s.otherWaits).length ? { otherWaits: s.otherWaits } : {}),
      checkpointer: s.checkpointer,
      standbys: s.standbys,
      inRecovery: s.inRecovery,
    })
  }
  const starts = newWriter ? [...(sampler?.connectionStarts.get(newWriter) ?? [])] : []
  return {
    marks: {
      kill: 0,
      detected: rel(marks.detected),
      chosen: rel(marks.chosen),
      promoted: rel(marks.promoted),
      writerReady: rel(marks.writerReady),
      firstAck: rel(input.firstAck),
      recovered: rel(marks.recovered),
    },
    connectionStarts: starts
      .filter((s) => s >= kill)
      .map((s) => rel(s)!)
      .sort((a, b) => a - b),
    checkpointsDone,
    baselinePerBin: Math.round((input.baselinePerSecond * binMs) / 100) / 10,
    bins,
    ...(byPid.size ? { connections: [...byPid.values()].sort((a, b) => a.firstAck - b.firstAck) } : {}),
  }
}

/** One line per bin, for a terminal: `t acks inFlight | conns syncRep active ckpt standbys`. */
export function formatTimeline(t: Timeline): string {
  const lines = [
    `marks ${JSON.stringify(t.marks)}`,
    `new writer's connections started at ${JSON.stringify(t.connectionStarts)}; checkpoints done at ${JSON.stringify(t.checkpointsDone)}; baseline ${t.baselinePerBin} acks/bin`,
  ]
  for (const b of t.bins)
    lines.push(
      `${String(b.t).padStart(5)} ack ${String(b.acks).padStart(3)} err ${String(b.errors).padStart(2)} fly ${String(b.inFlight).padStart(2)}` +
        ` lag ${String(b.lagMs ?? '-').padStart(4)} cpu ${String(b.cpuMs ?? '-').padStart(4)}` +
        (b.conns === undefined
          ? ''
          : ` | rec ${b.inRecovery ? 'y' : 'n'} conns ${b.conns} active ${b.active} syncrep ${b.syncRep}` +
            `${b.otherWaits ? ` waits ${JSON.stringify(b.otherWaits)}` : ''} ckpt ${b.checkpointer} sb ${JSON.stringify(b.standbys)}`),
    )
  return lines.join('\n')
}
