/**
 * The overhead part's clients: all three in the part's process (the default, the method of every
 * published run), or each in a process of its own (`--process-each`, a diagnostic).
 *
 * Why a process each was tried: a user runs postgres.js or postgres-ha, not both. In one process
 * the clients share postgres.js's code, so its inline caches see the query objects of both (raw
 * `Query`s and ours); a garbage collection falls on whichever client runs when the young
 * generation fills; and `process.cpuUsage` counts postgres-ha's background work against the raw
 * client whose batch it happens in. In a process of its own, a client's CPU time is its own.
 *
 * Why it is not the default: with the clients taking turns in pieces, each in its own process on
 * the same CPU, raw postgres.js comes out 3-10 µs per `select $1` dearer than postgres-ha and
 * 2-16 % slower (12-round Node runs, also with a fixed 16 MB young generation, with no plugins,
 * or with only `select $1`), while the same two clients run back to back, each alone for 30,000
 * statements, put postgres-ha 2-10 µs per `select $1` above raw postgres.js (which it runs
 * whole, with its own path on top), yet ~30 µs per transaction below it. And when each raw client's process first makes a
 * `postgresHa`, runs one statement on it and ends it, the same interleaved run puts postgres-ha
 * 8-18 µs above raw postgres.js. A process's history moves a client's cost by more than the
 * difference between the clients; until that is understood, these figures decide nothing.
 *
 * One part of it is known: a process's history changes what its young-generation collections
 * copy. Node, `select $1` at 10 in flight, a 16 MB young generation, 25,000 statements alone:
 * raw postgres.js promotes 730-734 KB per scavenge (3-4 ms each) in a process of its own, and
 * 293-298 KB (2 ms) in a process where a `postgresHa` instance was merely created and ended
 * first, as in postgres-ha's own process (300 KB); a second raw postgres.js instance made and
 * ended first changes nothing (741-751 KB). That is ~1 µs per statement, by a mechanism inside
 * V8's heuristics not traced further, and it weighs against raw postgres.js in a process each.
 * In one process both clients share the same heap and its history.
 *
 * The part's own script is the child (`--serve-client`), started with the runtime and flags of
 * the part (so Node under tsx, an esbuild bundle of the suite, Deno and Bun alike), and talks over
 * its standard input and output, one JSON line per request and per answer, one request at a time.
 * Children started after `pinBenchAndLab` inherit the part's CPU.
 *
 * @module
 */
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { runtimeName } from '../../src/runtime/mod.ts'
import { type Batch, runBatch } from './load.ts'
import { WORKLOADS } from './overhead-workloads.ts'
import type { AnySql } from './write-loop.ts'

/** The flag that makes the part's script serve one client instead of running the part. */
export const SERVE_CLIENT_FLAG = '--serve-client'

/** Which client a process serves: raw postgres.js, or postgres-ha. */
export type ClientKind = 'raw' | 'ha'

/** One client of the comparison, wherever it runs. */
export interface BenchClient {
  /** The process it runs in. */
  readonly pid: number
  /** `count` operations of workload `workload` on `concurrency` workers, numbered from `from`. */
  run(workload: string, concurrency: number, count: number, from: number): Promise<Batch>
  end(): Promise<void>
}

type Request =
  | { op: 'open'; kind: ClientKind; url: string }
  | { op: 'run'; workload: string; concurrency: number; count: number; from: number }
  | { op: 'end' }

type Reply = { ok: true; batch?: WireBatch; pid?: number } | { ok: false; error: string }

interface WireBatch {
  latencies: number[]
  wallMs: number
  cpuMs: number | null
  userCpuMs: number | null
}

function runOn(sql: AnySql, workload: string, concurrency: number, count: number, from: number) {
  const w = WORKLOADS[workload]
  if (!w) throw new Error(`unknown workload ${JSON.stringify(workload)}`)
  return runBatch(count, concurrency, (i) => w.run(sql, from + i))
}

/** A client in this process. */
export function inProcessClient(sql: AnySql): BenchClient {
  return {
    pid: process.pid,
    run: (workload, concurrency, count, from) => runOn(sql, workload, concurrency, count, from),
    end: () => sql.end({ timeout: 1 }),
  }
}

/** The command that starts this script again as a client's process. */
function selfCommand(): [string, string[]] {
  const script = process.argv[1]
  if (!script) throw new Error('cannot start a client process: process.argv[1] (the script) is unknown')
  const runtime = runtimeName()
  if (runtime === 'deno') return [process.execPath, ['run', '-A', script, SERVE_CLIENT_FLAG]]
  if (runtime === 'node') return [process.execPath, [...process.execArgv, script, SERVE_CLIENT_FLAG]]
  return [process.execPath, [script, SERVE_CLIENT_FLAG]]
}

/** How long a client's process may take to end before it is killed. */
const END_TIMEOUT_MS = 10_000

/**
 * Starts a process serving one client of `kind` on `url` (sent on its standard input, never on
 * its command line, where the password would show). `label` names it in errors.
 */
export async function clientProcess(label: string, kind: ClientKind, url: string): Promise<BenchClient> {
  const [command, args] = selfCommand()
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] })
  const waiting: Array<{ resolve(r: Reply): void; reject(e: Error): void }> = []
  let gone: Error | undefined
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      gone = new Error(`${label}'s process exited (code ${code}, signal ${signal})`)
      for (const w of waiting.splice(0)) w.reject(gone)
      resolve()
    })
  })
  child.once('error', (error) => {
    gone = new Error(`${label}'s process could not run: ${error.message}`, { cause: error })
    for (const w of waiting.splice(0)) w.reject(gone)
  })
  // Lines that are not JSON (a runtime's warning on stdout) are not answers.
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (!line.startsWith('{')) return
    waiting.shift()?.resolve(JSON.parse(line) as Reply)
  })
  const ask = (request: Request): Promise<Reply> => {
    if (gone) return Promise.reject(gone)
    return new Promise<Reply>((resolve, reject) => {
      waiting.push({ resolve, reject })
      child.stdin!.write(`${JSON.stringify(request)}\n`)
    }).then((reply) => {
      if (!reply.ok) throw new Error(`${label}: ${reply.error}`)
      return reply
    })
  }
  const { pid } = (await ask({ op: 'open', kind, url })) as { pid: number }
  return {
    pid,
    async run(workload, concurrency, count, from) {
      const { batch } = (await ask({ op: 'run', workload, concurrency, count, from })) as { batch: WireBatch }
      return { ...batch, latencies: Float64Array.from(batch.latencies) }
    },
    async end() {
      let timer: ReturnType<typeof setTimeout> | undefined
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL')
          resolve()
        }, END_TIMEOUT_MS)
      })
      try {
        if (!gone) await Promise.race([ask({ op: 'end' }).catch(() => {}), late])
        await Promise.race([exited, late])
      } finally {
        clearTimeout(timer)
      }
    },
  }
}

/**
 * The child's side: serves the requests on standard input until `end`, then exits. `open` makes
 * the client of a kind.
 */
export async function serveClient(open: (kind: ClientKind, url: string) => AnySql): Promise<never> {
  let sql: AnySql | undefined
  // Resolves once written: the last answer must be out before the process exits.
  const answer = (reply: Reply) =>
    new Promise<void>((resolve) => process.stdout.write(`${JSON.stringify(reply)}\n`, () => resolve()))
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue
    const request = JSON.parse(line) as Request
    try {
      if (request.op === 'open') {
        sql = open(request.kind, request.url)
        await answer({ ok: true, pid: process.pid })
      } else if (request.op === 'run') {
        if (!sql) throw new Error('run before open')
        const b = await runOn(sql, request.workload, request.concurrency, request.count, request.from)
        await answer({ ok: true, batch: { ...b, latencies: Array.from(b.latencies) } })
      } else {
        await sql?.end({ timeout: 1 })
        await answer({ ok: true })
        break
      }
    } catch (error) {
      await answer({
        ok: false,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      })
    }
  }
  process.exit(0)
}
