/**
 * What the servers did during a recovery, sampled from the inside: every `everyMs` each sampled
 * instance is asked, in one statement over a lab-admin connection of its own, whether it is still
 * in recovery, how many of the application's connections it has (and when each started), how
 * many of them wait for a synchronous standby (`SyncRep`) or for anything else, what its
 * checkpointer is doing, where its WAL is, and how its standbys stream (state, sync state, how far
 * they have flushed). It is the evidence a recovery timeline needs for "where did the time go":
 * the client's side (pool connections, in-flight statements) against the server's (promotion,
 * synchronous replication, the checkpoint after promotion).
 *
 * @module
 */
import { readFileSync } from 'node:fs'
import postgres from 'postgres'
import { nowMs, sleep } from './report.ts'

/** One sample of one instance; times are epoch ms of the server's clock (the same machine's). */
export interface ServerSample {
  atMs: number
  inRecovery: boolean
  /** The application's connections (the bench user's client backends). */
  conns: number
  /** Of those: running a statement. */
  active: number
  /** Of those: waiting for a synchronous standby to confirm a commit. */
  syncRep: number
  /** Of those: waiting on something else (lock, IO, ...), by wait event. */
  otherWaits: Record<string, number>
  /** The checkpointer's wait event (`CheckpointWriteDelay` while it spreads a checkpoint; null: working). */
  checkpointer: string | null
  /** Completed checkpoints so far (timed + requested), and when the last one was. */
  checkpoints: number
  lastCheckpointMs: number | null
  /** WAL inserted (primary) or received (standby), bytes from 0/0. */
  walBytes: number | null
  /** Each standby streaming from this instance: `state sync_state flush-lag-bytes`. */
  standbys: string[]
}

/**
 * The whole machine at a sample (Linux `/proc/stat`): how busy its CPUs were since the previous
 * one and how many threads were runnable at that instant. On a machine shared with other work,
 * the servers and the client compete for the same cores: this tells a slow recovery of a
 * starved machine from one of the client.
 */
export interface MachineSample {
  atMs: number
  /** Busy share of all CPUs since the previous sample, 0..1. */
  busy: number
  /** Runnable threads at that instant (`procs_running`, the sampler's own included). */
  running: number
}

/** A running sampler. */
export interface ServerSampler {
  /** Every sample so far, by instance id. */
  readonly samples: ReadonlyMap<string, readonly ServerSample[]>
  /** The machine, sampled with the first instance (empty where `/proc/stat` is not readable). */
  readonly machine: readonly MachineSample[]
  /** When each application connection started (epoch ms), by instance id. */
  readonly connectionStarts: ReadonlyMap<string, ReadonlySet<number>>
  stop(): Promise<void>
}

/**
 * Starts sampling `instances` (id → admin URL) every `everyMs` until `stop()` (or `maxMs`).
 *
 * @example
 * ```ts
 * const sampler = await startServerSampler({ 'n12': adminUrl12 }, { user: 'app', everyMs: 10, maxMs: 20_000 })
 * await lab.kill('writer')
 * await sampler.stop()
 * ```
 */
export async function startServerSampler(
  instances: Record<string, string>,
  options: { user: string; everyMs: number; maxMs: number },
): Promise<ServerSampler> {
  const samples = new Map<string, ServerSample[]>()
  const connectionStarts = new Map<string, Set<number>>()
  const conns = Object.entries(instances).map(([id, url]) => {
    samples.set(id, [])
    connectionStarts.set(id, new Set())
    return { id, sql: postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 2 }) }
  })
  // Connected before the fault: the first sample after it must not wait for a login.
  await Promise.all(conns.map((c) => c.sql`select 1`))
  let stopped = false
  const started = performance.now()
  const machine: MachineSample[] = []
  let lastCpu = readCpu()
  const loops = conns.map(async ({ id, sql }, i) => {
    while (!stopped && performance.now() - started < options.maxMs) {
      const t = performance.now()
      try {
        const [row] = await sql`
          select extract(epoch from clock_timestamp()) * 1000 as at,
            pg_is_in_recovery() as rec,
            (select coalesce(json_agg(json_build_object('s', extract(epoch from backend_start) * 1000,
                'st', state, 'w', wait_event)), '[]')
              from pg_stat_activity where usename = ${options.user} and backend_type = 'client backend') as app,
            (select wait_event from pg_stat_activity where backend_type = 'checkpointer') as ckpt,
            (select checkpoints_timed + checkpoints_req from pg_stat_bgwriter) as ckpts,
            (select extract(epoch from checkpoint_time) * 1000 from pg_control_checkpoint()) as last_ckpt,
            case when pg_is_in_recovery() then pg_last_wal_receive_lsn() - '0/0'
              else pg_current_wal_insert_lsn() - '0/0' end as wal,
            (select coalesce(json_agg(state || ' ' || sync_state || ' ' ||
                coalesce((case when pg_is_in_recovery() then pg_last_wal_receive_lsn() else pg_current_wal_insert_lsn() end
                  - flush_lsn)::text, '?')), '[]')
              from pg_stat_replication) as standbys`
        const app = row!.app as { s: number; st: string; w: string | null }[]
        const starts = connectionStarts.get(id)!
        const otherWaits: Record<string, number> = {}
        for (const a of app) {
          starts.add(Math.round(a.s))
          if (a.w && a.w !== 'SyncRep' && a.w !== 'ClientRead') otherWaits[a.w] = (otherWaits[a.w] ?? 0) + 1
        }
        samples.get(id)!.push({
          atMs: Number(row!.at),
          inRecovery: row!.rec as boolean,
          conns: app.length,
          active: app.filter((a) => a.st === 'active').length,
          syncRep: app.filter((a) => a.w === 'SyncRep').length,
          otherWaits,
          checkpointer: (row!.ckpt as string | null) ?? null,
          checkpoints: Number(row!.ckpts),
          lastCheckpointMs: row!.last_ckpt === null ? null : Number(row!.last_ckpt),
          walBytes: row!.wal === null ? null : Number(row!.wal),
          standbys: row!.standbys as string[],
        })
        if (i === 0 && lastCpu) {
          const cpu = readCpu()
          if (cpu && cpu.total > lastCpu.total)
            machine.push({
              atMs: nowMs(),
              busy: Math.round(((cpu.busy - lastCpu.busy) / (cpu.total - lastCpu.total)) * 100) / 100,
              running: cpu.running,
            })
          if (cpu) lastCpu = cpu
        }
      } catch {
        // A killed instance: its samples simply end.
        break
      }
      const wait = options.everyMs - (performance.now() - t)
      if (wait > 0) await sleep(wait)
    }
  })
  return {
    samples,
    connectionStarts,
    machine,
    async stop() {
      stopped = true
      await Promise.race([Promise.all(loops), sleep(2_000)])
      await Promise.all(conns.map((c) => c.sql.end({ timeout: 0 }).catch(() => {})))
    },
  }
}

/** The CPU counters of `/proc/stat` (jiffies, all CPUs) and the runnable threads; undefined off Linux. */
function readCpu(): { busy: number; total: number; running: number } | undefined {
  try {
    const text = readFileSync('/proc/stat', 'utf8')
    const fields = text.slice(0, text.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0)
    const idle = fields[3]! + fields[4]!
    const running = Number(/^procs_running (\d+)$/m.exec(text)?.[1] ?? Number.NaN)
    return { busy: total - idle, total, running }
  } catch {
    return undefined
  }
}
