/**
 * `layer`: the CPU postgres-ha's own code adds to a statement and to a transaction, without the
 * wire. On a shared machine the `overhead` part cannot resolve a few µs per statement (its A/A
 * spread is wider); this part takes the wire out of both sides so that what is left to compare is
 * postgres-ha's layer alone. It copies the built bundle (`dist/mod.js`, or `--entry`) with two
 * seams added — the writer pool's query handler and postgres.js's `begin` can be replaced through
 * a global — and, on a client that is ready and connected to a real server (default options and
 * plugins, the fast path), replaces them by stand-ins that answer at once (a connection that takes
 * the query and resolves it a microtask later; a `begin` that runs BEGIN, the body and COMMIT
 * through that connection). The same stand-ins run bare postgres.js `Query` objects, which is what
 * postgres.js's own `sql` makes. Batches of each alternate; per workload the median over rounds of
 * the difference in `process.cpuUsage` and the difference of the fastest batches (the least
 * disturbed by other processes).
 *
 * Not included, by design: what postgres-ha changes in postgres.js's own work (its socket hook,
 * the shapes postgres.js's code sees) — the `overhead` part measures everything together.
 *
 * Usage: `node --import tsx bench/layer.ts [--entry dist/mod.js] [--rounds 60] [--no-save]` (or
 * `deno run -A`, `bun`); needs `npm run build` first.
 *
 * @module
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import postgres from 'postgres'
import { startPgServer } from '../tests/helpers/pg-server.ts'
import { parseFlags } from './lib/args.ts'
import { emit, machineInfo, progress, runtimeInfo } from './lib/report.ts'
import { trackerCost } from './lib/tracker-cost.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const flags = parseFlags('bench/layer.ts', {
  entry: { default: 'dist/mod.js', help: 'the built bundle to measure (relative to the repository)' },
  rounds: { default: 60, help: 'alternating batches per client and workload' },
  statements: { default: 5_000, help: 'statements per batch (a third as many transactions)' },
  'no-save': { default: false, help: 'do not write bench/results/<runtime>-layer.json' },
})

/** The seams, as text replaced in the copied bundle; a bundle without them is an error. */
const SEAMS: Array<[string, string]> = [
  ['const handler2 = entry.handler;', 'const handler2 = globalThis.__pghaLayerHandler ?? entry.handler;'],
  ['entry.sql.begin(', '(globalThis.__pghaLayerBegin ?? entry.sql.begin)('],
]

const source = resolve(root, flags.entry)
let bundle = readFileSync(source, 'utf8')
for (const [from, to] of SEAMS) {
  if (!bundle.includes(from)) throw new Error(`${flags.entry}: no "${from}" to add the seam to`)
  bundle = bundle.split(from).join(to)
}
// Beside the original, so that `postgres` resolves as it does for the bundle.
const copy = join(dirname(source), `.layer-${process.pid}.mjs`)
writeFileSync(copy, bundle)
const { postgresHa } = (await import(pathToFileURL(copy).href)) as typeof import('../mod.ts')

type Fake = ((q: FakeQuery) => void) & { debug?: unknown }
interface FakeQuery {
  state: unknown
  resolve(value: unknown): void
}
type QueryClass = new (
  strings: readonly string[],
  args: unknown[],
  handler: Fake,
  canceller: () => void,
) => Promise<unknown>

const g = globalThis as { __pghaLayerHandler?: Fake; __pghaLayerBegin?: unknown }
const pg = await startPgServer()
const ha = postgresHa(pg.url)
const raw = postgres(pg.url)
try {
  // Ready and connected: the fast path is open.
  await ha`select 1`
  const Query = (raw as unknown as (s: TemplateStringsArray) => object)(
    Object.assign([''], { raw: [''] }) as unknown as TemplateStringsArray,
  ).constructor as QueryClass
  const result = Object.assign([], { count: 1, command: 'SELECT', columns: [], statement: {}, state: {} })
  const backend = { pid: 1, secret: 2 }
  const connection: Fake = (q) => {
    q.state = backend
    void Promise.resolve().then(() => q.resolve(result))
  }
  connection.debug = false
  const cancel = () => {}
  const begin = async (mode: unknown, fn?: unknown) => {
    const body = (typeof mode === 'function' ? mode : fn) as (tx: unknown) => unknown
    await new Query(['begin'], [], connection, cancel)
    const tx = Object.assign((s: readonly string[], ...a: unknown[]) => new Query(s, a, connection, cancel), {
      savepoint: () => {},
      unsafe: (text: string) => new Query([text], [], connection, cancel),
    })
    const value = await new Promise((ok, fail) => {
      Promise.resolve(body(tx)).then(ok, fail)
    })
    await new Query(['commit'], [], connection, cancel)
    return value
  }
  g.__pghaLayerHandler = connection
  g.__pghaLayerBegin = begin

  const tagged = (...parts: string[]) =>
    Object.assign(parts, { raw: parts }) as unknown as TemplateStringsArray
  const [s1, s2, s3] = [
    tagged('select ', '::int as x'),
    tagged('select ', '::int as y'),
    tagged('select ', '::int as z'),
  ]
  const body = (i: number) => async (tx: (s: TemplateStringsArray, ...a: unknown[]) => Promise<unknown>) => {
    await tx(s1, i)
    await tx(s2, i)
    await tx(s3, i)
  }
  const haSql = ha as unknown as (s: TemplateStringsArray, ...a: unknown[]) => Promise<unknown>
  const workloads = {
    'select $1': {
      statements: 1,
      ops: flags.statements,
      raw: (i: number) => new Query(s1, [i], connection, cancel),
      ha: (i: number) => haSql(s1, i),
    },
    transaction: {
      statements: 3,
      ops: Math.round(flags.statements / 3),
      raw: (i: number) => begin(body(i)),
      ha: (i: number) => ha.begin(body(i) as never),
    },
  }

  /** One batch at 10 in flight: µs of CPU and of wall time per statement. */
  const batch = async (n: number, perOp: number, run: (i: number) => Promise<unknown>) => {
    let next = 0
    const wall0 = performance.now()
    const cpu0 = process.cpuUsage()
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < n) await run(next++)
      }),
    )
    const cpu = process.cpuUsage(cpu0)
    return {
      cpu: (cpu.user + cpu.system) / (n * perOp),
      wall: ((performance.now() - wall0) * 1000) / (n * perOp),
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
  const round3 = (x: number) => Math.round(x * 1000) / 1000
  const results: Record<string, unknown> = {}
  for (const [name, w] of Object.entries(workloads)) {
    for (let i = 0; i < 20; i++) {
      await batch(w.ops, w.statements, w.raw)
      await batch(w.ops, w.statements, w.ha)
    }
    const cpu: number[] = []
    const rawWall: number[] = []
    const haWall: number[] = []
    for (let r = 0; r < flags.rounds; r++) {
      const first = r % 2 === 0 ? w.raw : w.ha
      const a = await batch(w.ops, w.statements, first)
      const b = await batch(w.ops, w.statements, first === w.raw ? w.ha : w.raw)
      const [x, y] = first === w.raw ? [a, b] : [b, a]
      cpu.push(y.cpu - x.cpu)
      rawWall.push(x.wall)
      haWall.push(y.wall)
    }
    results[name] = {
      addedCpuUsPerStatement: round3(median(cpu)),
      addedUsPerStatementFastestBatches: round3(Math.min(...haWall) - Math.min(...rawWall)),
      bareUsPerStatementFastestBatch: round3(Math.min(...rawWall)),
    }
    progress('layer', `${name}: ${JSON.stringify(results[name])}`)
  }
  // One piece of the layer on its own, the piece most often suspected: the host-monitoring
  // tracker's track and end of a statement, clock read included.
  results['host-monitoring tracker'] = trackerCost(flags.rounds)
  progress('layer', `host-monitoring tracker: ${JSON.stringify(results['host-monitoring tracker'])}`)
  emit(
    'layer',
    {
      part: 'layer',
      runtime: runtimeInfo(),
      machine: machineInfo(),
      entry: flags.entry,
      workload:
        `${flags.rounds} alternating batches per client at 10 in flight: select $1 (${flags.statements} ` +
        `statements a batch) and a 3-statement transaction (${workloads.transaction.ops} a batch); ` +
        'the writer pool and postgres.js begin replaced by stand-ins that answer at once, on both sides; ' +
        'the host-monitoring tracker alone (its source): track and end per statement, 10 in flight, ' +
        'against the same loop without it (bench/lib/tracker-cost.ts)',
      results,
    },
    !flags['no-save'],
  )
} finally {
  g.__pghaLayerHandler = undefined
  g.__pghaLayerBegin = undefined
  await Promise.all([ha.end({ timeout: 1 }), raw.end({ timeout: 1 })])
  await pg.stop()
  const { rmSync } = await import('node:fs')
  rmSync(copy, { force: true })
}
