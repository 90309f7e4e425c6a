/**
 * The failover benchmark for `deno bench` users: each iteration is one writer kill → the first
 * write of postgres-ha (default options) on the new writer, while it writes every 10 ms, on a
 * fresh lab that promotes 200 ms after the loss; only the fault → first write span is timed, so
 * an iteration's time is the lab's promotion (~260 ms) plus what the driver adds.
 *
 * Usage: `deno bench -A bench/failover.bench.ts` (`BENCH_ITERATIONS=5` by default; `deno bench`
 * adds warm-up calls of its own; `--json` for machine-readable output). `bench/failover.ts`
 * reports the full distribution, with driver-added downtime, on every runtime.
 *
 * @module
 */
import { openBenchLab } from './lib/bench-lab.ts'
import { makeClient } from './lib/clients.ts'
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

deno.bench({
  name: 'kill writer → first write on the new writer (postgres-ha, lab promotes after 200 ms)',
  n: Math.max(1, Number(deno.env.get('BENCH_ITERATIONS') ?? 5) || 5),
  // Each iteration starts a lab (seconds): no warm-ups beyond the calls deno bench always makes
  // to size its measurement (with n = 1, Deno 2.9 still calls fn three times).
  warmup: 0,
  async fn(b) {
    // A lab per iteration: a fresh topology, and nothing left running whatever deno bench does.
    await using lab = await openBenchLab({ promoteAfterMs: 200 })
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
  },
})
