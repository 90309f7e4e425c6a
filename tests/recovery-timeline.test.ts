// The recovery benchmark's per-trial timeline (bench/lib/recovery-timeline.ts): what it says the
// client had in flight and acknowledged in each bin, and what the new writer's samples showed,
// is what the evidence for "where did the time go" rests on, so its binning is checked here.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildTimeline } from '../bench/lib/recovery-timeline.ts'
import type { ServerSample, ServerSampler } from '../bench/lib/server-sampler.ts'

const kill = 10_000

function sample(atMs: number, over: Partial<ServerSample> = {}): ServerSample {
  return {
    atMs,
    inRecovery: false,
    conns: 10,
    active: 10,
    syncRep: 9,
    otherWaits: {},
    checkpointer: 'CheckpointWriteDelay',
    checkpoints: 1,
    lastCheckpointMs: null,
    walBytes: 0,
    standbys: ['streaming quorum 0'],
    ...over,
  }
}

test('recovery timeline: acknowledgements, failures and writes in flight per bin, ms from the kill', () => {
  const records = [
    { id: 1, startMs: kill - 15, endMs: kill + 2, inst: 'old' }, // in flight at the kill, old writer
    { id: 2, startMs: kill - 5, endMs: kill + 31, error: 'FailoverSuccessError' },
    { id: 3, startMs: kill + 35, endMs: kill + 52, inst: 'new', pid: 7 },
    { id: 4, startMs: kill + 36, endMs: kill + 57, inst: 'new', pid: 8 },
    { id: 6, startMs: kill + 60, endMs: kill + 68, inst: 'new', pid: 7 },
    { id: 5, startMs: kill + 40 }, // still pending
  ]
  const sampler: ServerSampler = {
    samples: new Map([
      [
        'new',
        [sample(kill - 1, { checkpoints: 0, inRecovery: true }), sample(kill + 45, { checkpoints: 1 })],
      ],
    ]),
    connectionStarts: new Map([['new', new Set([kill - 500, kill + 33, kill + 20])]]),
    machine: [{ atMs: kill + 44, busy: 0.97, running: 5 }],
    stop: async () => {},
  }
  const t = buildTimeline({
    records,
    marks: { kill, chosen: kill + 30, writerReady: kill + 34, recovered: kill + 57 },
    newWriter: 'new',
    firstAck: kill + 52,
    sampler,
    lag: [{ atMs: kill + 51, lateMs: 12, cpuMs: 1 }],
    baselinePerSecond: 1_000,
    isNewWriterAck: (r) => r.inst === 'new' && r.endMs !== undefined && r.endMs >= kill,
    toMs: 80,
  })
  assert.deepEqual(t.marks, {
    kill: 0,
    detected: null,
    chosen: 30,
    promoted: null,
    writerReady: 34,
    firstAck: 52,
    recovered: 57,
  })
  // Only connections opened after the kill, in order.
  assert.deepEqual(t.connectionStarts, [20, 33])
  assert.deepEqual(t.checkpointsDone, [45])
  assert.equal(t.baselinePerBin, 10)
  const at = (ms: number) => t.bins.find((b) => b.t === ms)!
  assert.equal(t.bins[0]!.t, -20)
  assert.equal(at(-20).inFlight, 1) // write 1 started at -15
  assert.equal(at(-10).inFlight, 2) // writes 1 and 2
  assert.equal(at(0).inFlight, 1) // write 1 acknowledged at +2 (by the old writer: not counted)
  assert.equal(at(0).acks, 0)
  assert.equal(at(30).errors, 1)
  assert.equal(at(30).inFlight, 2) // writes 3 and 4 started at 35 and 36
  assert.equal(at(40).inFlight, 3)
  assert.equal(at(50).acks, 2)
  assert.equal(at(50).inFlight, 1) // the pending write 5
  assert.equal(at(70).inFlight, 1)
  assert.equal(at(50).lagMs, 12)
  assert.equal(at(40).syncRep, 9)
  assert.equal(at(40).inRecovery, false)
  assert.equal(at(-10).inRecovery, true)
  assert.equal(at(20).conns, undefined) // no sample in that bin
  // Writes 3 and 4: 17 and 21 ms from start to acknowledgement.
  assert.equal(at(50).latencyMs, 19)
  assert.equal(at(60).latencyMs, 8)
  assert.equal(at(40).machineBusy, 0.97)
  assert.equal(at(40).runnable, 5)
  // By connection, in the bins' order: which connection carried which acknowledgement.
  const bin = (ms: number) => t.bins.findIndex((b) => b.t === ms)
  assert.deepEqual(
    t.connections?.map((c) => ({
      pid: c.pid,
      firstAck: c.firstAck,
      at50: c.acks[bin(50)],
      at60: c.acks[bin(60)],
    })),
    [
      { pid: 7, firstAck: 52, at50: 1, at60: 1 },
      { pid: 8, firstAck: 57, at50: 1, at60: 0 },
    ],
  )
  assert.equal(t.connections?.[0]?.acks.length, t.bins.length)
})
