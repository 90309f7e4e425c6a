/**
 * `detection`: does host monitoring (default options) cry wolf, and how fast does it notice a
 * silent writer? Per trial, on a fresh client: a black-holed writer mid-statement (fault →
 * hostDown, fault → failover done); a writer behind 100 ms of latency each way running a 2 s
 * statement (hostDown and failover counts); a writer saturated by 6 CPU-bound sessions for 10 s
 * running a 6 s statement (hostDown and failover counts). Medians over the trials.
 *
 * Usage: `node --import tsx bench/detection.ts [--trials 3] [--no-save]` (or `deno run -A`, `bun`).
 * One JSON document on stdout, also written to `bench/results/<runtime>-detection.json`.
 *
 * @module
 */
import postgres from 'postgres'
import { startLab } from '../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { parseFlags } from './lib/args.ts'
import { emit, machineInfo, progress, runtimeInfo } from './lib/report.ts'

const flags = parseFlags('bench/detection.ts', {
  trials: { default: 3, help: 'trials per scenario' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-detection.json' },
})

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0
    ? null
    : s.length % 2
      ? s[(s.length - 1) / 2]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Alarms a client raised since it was made. */
function watch(sql: PostgresHaSql) {
  const seen = { hostDown: [] as number[], failover: [] as number[], failoverStart: 0 }
  sql.ha.on('hostDown', () => seen.hostDown.push(performance.now()))
  sql.ha.on('failoverStart', () => seen.failoverStart++)
  sql.ha.on('failover', (e) => e.ok && seen.failover.push(performance.now()))
  return seen
}

// The lab's own detector is slow for the false-alarm trials, so that it never fails over a busy
// writer itself; the silent-writer trials use a lab that promotes as the failover benchmark's does.
const options = { max: 4, failoverTimeoutMs: 20_000 }
const silent: { hostDownMs: number | null; failoverMs: number | null }[] = []
const latency: { hostDown: number; failovers: number; ok: boolean }[] = []
const busy: { hostDown: number; failovers: number; ok: boolean }[] = []

{
  await using lab = await startLab({
    nodes: 2,
    promoteAfterMs: 200,
    probeTimeoutMs: 10_000,
    endpointLagMs: 60_000,
  })
  for (let trial = 1; trial <= flags.trials; trial++) {
    progress('detection', `latency and busy trial ${trial}/${flags.trials}`)
    {
      const writer = (await lab.status()).writer!
      await lab.latency(writer, 100)
      const sql = postgresHa(lab.url('cluster'), { ...options, connectTimeoutMs: 10_000 })
      await sql`select 1`
      const seen = watch(sql)
      const ok = await sql`select pg_sleep(2)`.then(
        () => true,
        () => false,
      )
      latency.push({ hostDown: seen.hostDown.length, failovers: seen.failoverStart, ok })
      await sql.end()
      await lab.heal(writer)
    }
    {
      const writer = (await lab.status()).writer!
      const sql = postgresHa(lab.url('cluster'), options)
      await sql`select 1`
      const seen = watch(sql)
      const burners = Array.from({ length: 6 }, () =>
        postgres(lab.url(writer), { max: 1, onnotice: () => {} }),
      )
      const burning = burners.map((b) =>
        b
          .unsafe('set statement_timeout = 10000; select count(*) from generate_series(1, 1e12)')
          .catch(() => {}),
      )
      await sleep(500)
      const ok = await sql`select pg_sleep(6)`.then(
        () => true,
        () => false,
      )
      await Promise.all(burning)
      await Promise.all(burners.map((b) => b.end({ timeout: 1 })))
      busy.push({ hostDown: seen.hostDown.length, failovers: seen.failoverStart, ok })
      await sql.end()
    }
  }
}

{
  await using lab = await startLab({
    nodes: 3,
    promoteAfterMs: 200,
    probeTimeoutMs: 500,
    endpointLagMs: 60_000,
  })
  for (let trial = 1; trial <= flags.trials; trial++) {
    progress('detection', `silent writer trial ${trial}/${flags.trials}`)
    const writer = (await lab.status()).writer!
    const sql = postgresHa(lab.url('cluster'), options)
    await sql`select 1`
    const seen = watch(sql)
    const running = sql`select pg_sleep(10)`.catch(() => {})
    await sleep(100)
    const faultAt = performance.now()
    await lab.blackhole(writer)
    await running
    await sleep(200)
    silent.push({
      hostDownMs: seen.hostDown[0] === undefined ? null : Math.round(seen.hostDown[0] - faultAt),
      failoverMs: seen.failover[0] === undefined ? null : Math.round(seen.failover[0] - faultAt),
    })
    await sql.end()
    await lab.heal(writer)
    const node = (await lab.status()).nodes.find((n) => n.id === writer)!
    if (node.state !== 'running') await lab.start(writer)
    await lab.waitForWriter({ timeoutMs: 30_000 })
  }
}

const ms = (xs: (number | null)[]) => median(xs.filter((x): x is number => x !== null))
emit(
  'detection',
  {
    part: 'detection',
    runtime: runtimeInfo(),
    machine: machineInfo(),
    trials: flags.trials,
    options:
      'postgres-ha defaults: failureDetectionTime 200, failureDetectionInterval 500, failureDetectionCount 2',
    silentWriter: {
      faultToHostDownMsP50: ms(silent.map((s) => s.hostDownMs)),
      faultToFailoverMsP50: ms(silent.map((s) => s.failoverMs)),
      results: silent,
    },
    latency100ms: { hostDownP50: median(latency.map((l) => l.hostDown)), results: latency },
    busyWriter: { hostDownP50: median(busy.map((b) => b.hostDown)), results: busy },
  },
  !flags['no-save'],
)
