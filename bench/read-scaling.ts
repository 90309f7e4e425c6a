/**
 * `read-scaling`: what `sql.ha.reader` gives and what read-your-writes costs, on the lab (3
 * instances: a writer and 2 readers).
 *
 * - Reads: the same read workload, `concurrency` in flight, through raw postgres.js on ONE reader's
 *   instance endpoint and through `sql.ha.reader` (random strategy over both readers), in rounds
 *   alternating which goes first; median over rounds of the throughput ratio (ha.reader ÷ raw).
 *   Every server runs on the same machine as the client, so the readers share its cores: the ratio
 *   shows what routing costs and what spreading can gain here, not what separate machines give.
 * - Read-your-writes: one writer statement then one read through `sql.ha.reader`, sequentially,
 *   with `readYourWrites` off and on (readers caught up): median added latency of the read after a
 *   write, of a read with no write before it, and of the write itself.
 *
 *   The same again with `--latency-ms` (default 1) added each way on every instance, as a network
 *   between app and database would: there the added time shows round trips, not this machine's CPU.
 *
 * Usage: `node --import tsx bench/read-scaling.ts [--queries 20000] [--rounds 10] [--concurrency 10] [--pairs 2000] [--latency-ms 1] [--no-save]`.
 *
 * @module
 */
import postgres from 'postgres'
import { parseFlags } from './lib/args.ts'
import { labSettings, openBenchLab } from './lib/bench-lab.ts'
import { postgresHa } from './lib/entry.ts'
import { type Batch, runBatch } from './lib/load.ts'
import { emit, machineInfo, progress, runtimeInfo } from './lib/report.ts'
import { quantile } from './lib/stats.ts'
import type { AnySql } from './lib/write-loop.ts'

const flags = parseFlags('bench/read-scaling.ts', {
  queries: { default: 20_000, help: 'reads per client over all rounds' },
  rounds: { default: 10, help: 'rounds; each alternates which client goes first' },
  concurrency: { default: 10, help: 'reads in flight at once' },
  pairs: { default: 2_000, help: 'write-then-read pairs per read-your-writes setting' },
  'latency-ms': {
    default: 1,
    help: 'one-way latency added on every instance for a second read-your-writes run (0: none)',
  },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-read-scaling.json' },
})
const started = performance.now()
const startedAt = new Date().toISOString()
const rounds = Math.max(1, Math.round(flags.rounds))
const perRound = Math.max(1, Math.floor(flags.queries / rounds))
// A read with some server work (as reads that are worth sending to replicas have), not only a round trip.
const READ = (sql: AnySql, i: number) => sql`select count(*) from generate_series(1, 2000 + ${i % 7}) as g`

const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  )
const qps = (b: Batch) => (b.latencies.length / b.wallMs) * 1000
const round2 = (x: number) => Math.round(x * 100) / 100

progress('read-scaling', 'lab up')
await using lab = await openBenchLab({ endpointLagMs: 0 })
const status = await lab.status()
const oneReader = status.nodes.find((n) => n.role === 'reader')!.id
const raw = postgres(lab.url(oneReader), { onnotice: () => {} })
const ha = postgresHa(lab.url('cluster'))
const ryw = postgresHa(lab.url('cluster'), { readYourWrites: true })
// Untimed: waits until every reader has replayed what the writer has written.
const writerRaw = postgres(lab.url(status.writer!), { max: 1, onnotice: () => {} })
const readerRaws = status.nodes
  .filter((n) => n.role === 'reader')
  .map((n) => postgres(lab.url(n.id), { max: 1, onnotice: () => {} }))
try {
  await ha`create table if not exists bench_ryw (id int primary key, v int not null)`
  await ha`insert into bench_ryw values (1, 0) on conflict do nothing`
  const clients = {
    'postgres.js one reader': raw as unknown as AnySql,
    'sql.ha.reader': ha.ha.reader as unknown as AnySql,
  }
  type Name = keyof typeof clients
  for (const sql of Object.values(clients))
    await runBatch(flags.concurrency * 20, flags.concurrency, (i) => READ(sql, i))
  const batches: Record<Name, Batch[]> = { 'postgres.js one reader': [], 'sql.ha.reader': [] }
  for (let round = 0; round < rounds; round++) {
    const order = (Object.keys(clients) as Name[])[round % 2 === 0 ? 'slice' : 'reverse']()
    for (const name of order) {
      const batch = await runBatch(perRound, flags.concurrency, (i) => READ(clients[name], i))
      batches[name].push(batch)
      progress('read-scaling', `round ${round + 1}/${rounds} ${name}: ${Math.round(qps(batch))} reads/s`)
    }
  }
  const ratioByRound = batches['sql.ha.reader'].map((b, i) =>
    round2(qps(b) / qps(batches['postgres.js one reader'][i]!)),
  )
  const reads = {
    'postgres.js one reader': {
      readsPerSecondMedian: Math.round(median(batches['postgres.js one reader'].map(qps))),
    },
    'sql.ha.reader': { readsPerSecondMedian: Math.round(median(batches['sql.ha.reader'].map(qps))) },
    throughputRatio: round2(median(ratioByRound)),
    throughputRatioByRound: ratioByRound,
  }

  // Read-your-writes: write → read pairs, alternating the two clients per block of 100 pairs; once
  // as the lab is, once with `--latency-ms` added each way on every instance (a network between
  // the app and the database, as across availability zones): there the added time counts round trips.
  const caughtUp = async () => {
    const [{ lsn }] = (await writerRaw`select pg_current_wal_lsn()::text as lsn`) as unknown as [
      { lsn: string },
    ]
    for (const r of readerRaws)
      for (let i = 0; i < 1000; i++) {
        const [row] = await r`select pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn as ok`
        if (row!.ok) break
      }
  }
  const clientOf = { off: ha, on: ryw }
  const us = (xs: number[]) => Math.round(median(xs) * 1000)
  const measureReadYourWrites = async (label: string) => {
    const timings = {
      off: {
        write: [] as number[],
        readAfterWrite: [] as number[],
        readAlone: [] as number[],
        readCaughtUp: [] as number[],
      },
      on: {
        write: [] as number[],
        readAfterWrite: [] as number[],
        readAlone: [] as number[],
        readCaughtUp: [] as number[],
      },
    }
    let misses = 0
    for (let block = 0; block < Math.ceil(flags.pairs / 100); block++)
      for (const setting of (block % 2 === 0 ? ['off', 'on'] : ['on', 'off']) as Array<'off' | 'on'>) {
        const sql = clientOf[setting]
        for (let i = 0; i < 100; i++) {
          const v = block * 1000 + i
          let t = performance.now()
          await sql`update bench_ryw set v = ${v} where id = 1`
          timings[setting].write.push(performance.now() - t)
          t = performance.now()
          const [row] = await sql.ha.reader`select v from bench_ryw where id = 1`
          timings[setting].readAfterWrite.push(performance.now() - t)
          if (setting === 'on' && row!.v !== v) misses++
          t = performance.now()
          await sql.ha.reader`select v from bench_ryw where id = 1`
          timings[setting].readAlone.push(performance.now() - t)
          // The same pair with the readers caught up before the read: the pure cost of the check.
          await sql`update bench_ryw set v = ${v} where id = 1`
          await caughtUp()
          t = performance.now()
          await sql.ha.reader`select v from bench_ryw where id = 1`
          timings[setting].readCaughtUp.push(performance.now() - t)
        }
        progress('read-scaling', `read-your-writes${label} block ${block + 1} ${setting}`)
      }
    return {
      off: {
        writeP50Us: us(timings.off.write),
        readAfterWriteP50Us: us(timings.off.readAfterWrite),
        readAfterWriteCaughtUpP50Us: us(timings.off.readCaughtUp),
        readAloneP50Us: us(timings.off.readAlone),
      },
      on: {
        writeP50Us: us(timings.on.write),
        readAfterWriteP50Us: us(timings.on.readAfterWrite),
        readAfterWriteCaughtUpP50Us: us(timings.on.readCaughtUp),
        readAloneP50Us: us(timings.on.readAlone),
      },
      addedWriteP50Us: us(timings.on.write) - us(timings.off.write),
      addedReadAfterWriteP50Us: us(timings.on.readAfterWrite) - us(timings.off.readAfterWrite),
      /** The read after a write the readers have already replayed: the check alone. */
      addedReadAfterWriteCaughtUpP50Us: us(timings.on.readCaughtUp) - us(timings.off.readCaughtUp),
      /** That added time in units of a whole read's p50 (a round trip plus the server's work). */
      addedReadAfterWriteCaughtUpInReads: round2(
        (us(timings.on.readCaughtUp) - us(timings.off.readCaughtUp)) / us(timings.off.readAlone),
      ),
      /** A second read with no write since: no check when the same reader is picked, one when the other is. */
      addedReadAloneP50Us: us(timings.on.readAlone) - us(timings.off.readAlone),
      readsThatMissedTheirWrite: misses,
    }
  }
  const readYourWrites = await measureReadYourWrites('')
  const latencyMs = flags['latency-ms']
  let readYourWritesWithLatency:
    | (Awaited<ReturnType<typeof measureReadYourWrites>> & { oneWayLatencyMs: number })
    | null = null
  if (latencyMs > 0) {
    await Promise.all(status.nodes.map((n) => lab.latency(n.id, latencyMs)))
    try {
      readYourWritesWithLatency = {
        oneWayLatencyMs: latencyMs,
        ...(await measureReadYourWrites(` (+${latencyMs} ms each way)`)),
      }
    } finally {
      await Promise.all(status.nodes.map((n) => lab.latency(n.id, 0)))
    }
  }
  emit(
    'read-scaling',
    {
      part: 'read-scaling',
      runtime: runtimeInfo(),
      machine: machineInfo(),
      startedAt,
      durationMs: Math.round(performance.now() - started),
      lab: await labSettings(lab),
      clients: {
        'postgres.js one reader': `postgres(instance endpoint of reader ${oneReader}), default options`,
        'sql.ha.reader': 'postgresHa(cluster endpoint).ha.reader, default options (random over 2 readers)',
      },
      workload: `${perRound * rounds} reads (count(*) over generate_series(1, ~2000)) per client, ${flags.concurrency} concurrent, ${rounds} rounds alternating which client goes first; ${flags.pairs} write-then-read pairs per readYourWrites setting, without and with ${flags['latency-ms']} ms added each way`,
      reads,
      readYourWrites,
      readYourWritesWithLatency,
    },
    !flags['no-save'],
  )
} finally {
  await Promise.all([raw.end({ timeout: 1 }), ha.end({ timeout: 1 }), ryw.end({ timeout: 1 })])
  await Promise.all([writerRaw, ...readerRaws].map((r) => r.end({ timeout: 1 })))
}
