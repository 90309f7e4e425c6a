/**
 * The failover benchmark for `deno bench` users: each iteration is one writer kill → the first
 * write of postgres-ha (default options) on the new writer, while it writes every 10 ms, on a lab
 * that promotes 200 ms after the loss; only the fault → first write span is timed, so an
 * iteration's time is the lab's promotion (~260 ms) plus what the driver adds.
 *
 * Usage: `deno bench -A bench/failover.bench.ts` (`BENCH_ITERATIONS=5` by default; `deno bench`
 * adds warm-up calls of its own; `--json` for machine-readable output). `bench/failover.ts`
 * reports the full distribution, with driver-added downtime, on every runtime.
 *
 * @module
 */
import { downBeforeExit } from '../lab/client.ts'
import type { Lab } from '../lab/mod.ts'
import { openBenchLab } from './lib/bench-lab.ts'
import { makeClient } from './lib/clients.ts'
import { restore } from './lib/faults.ts'
import { describeTrial, runTrial } from './lib/trial.ts'

interface BenchContext {
  start(): void
  end(): void
}
interface DenoBench {
  bench(definition: {
    name: string
    n?: number
    warmup?: number
    fn: (b: BenchContext) => Promise<void>
  }): void
  env: { get(name: string): string | undefined }
}
const deno = (globalThis as { Deno?: DenoBench }).Deno
if (!deno) throw new Error('run with deno bench -A bench/failover.bench.ts')

let id = 0
let trial = 0

/**
 * One lab for every call of this process: deno bench calls fn more often than asked (with n = 1,
 * Deno 2.9 calls it three times), and a lab start cost about as much CPU as a trial. A call first
 * brings the previous trial's old writer back as a reader (untimed), so each trial starts from a
 * full topology. deno bench exits right after its last call and awaits nothing at exit (neither
 * timers nor `beforeunload` keep it), so the lab is taken down synchronously at `unload`; after a
 * failed call it goes down at once, and the next call starts a fresh one.
 */
let shared: { lab: Promise<Lab>; dir?: string; killed?: string } | undefined
globalThis.addEventListener('unload', () => {
  if (shared?.dir) downBeforeExit(shared.dir)
})

async function labForTrial(): Promise<{ lab: Lab; done(killed?: string): Promise<void> }> {
  const mine = (shared ??= { lab: openBenchLab({ promoteAfterMs: 200 }) })
  const drop = async () => {
    if (shared === mine) shared = undefined
    await (await mine.lab).down()
  }
  try {
    const lab = await mine.lab
    mine.dir = lab.dir
    if (mine.killed) await restore(lab, { scenario: 'kill', oldWriter: mine.killed, faultMs: 0 })
    mine.killed = undefined
    return {
      lab,
      async done(killed) {
        if (killed) mine.killed = killed
        else await drop()
      },
    }
  } catch (error) {
    await drop().catch(() => {})
    throw error
  }
}

deno.bench({
  name: 'kill writer → first write on the new writer (postgres-ha, lab promotes after 200 ms)',
  n: Math.max(1, Number(deno.env.get('BENCH_ITERATIONS') ?? 5) || 5),
  // Each iteration is a failover (about a second): no warm-ups beyond the calls deno bench always
  // makes to size its measurement.
  warmup: 0,
  async fn(b) {
    const { lab, done } = await labForTrial()
    let killed: string | undefined
    try {
      const [r] = await runTrial({
        lab,
        scenario: 'kill',
        trial: ++trial,
        clients: [{ label: 'postgres-ha', make: () => makeClient(lab, 'postgres-ha') }],
        nextId: () => ++id,
        capMs: 10_000,
        marks: b,
        restore: false,
      })
      console.error(describeTrial(r!))
      if (r!.capped || r!.ledger.lost || r!.ledger.duplicated)
        throw new Error(`bad trial: ${describeTrial(r!)}`)
      killed = r!.oldWriter
    } finally {
      await done(killed)
    }
  },
})
