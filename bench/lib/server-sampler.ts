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
import postgres from 'postgres'
import { sleep } from './report.ts'

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

/** A running sampler. */
export interface ServerSampler {
  /** Every sample so far, by instance id. */
  readonly samples: ReadonlyMap<string, readonly ServerSample[]>
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
  const loops = conns.map(async ({ id, sql }) => {
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
    async stop() {
      stopped = true
      await Promise.race([Promise.all(loops), sleep(2_000)])
      await Promise.all(conns.map((c) => c.sql.end({ timeout: 0 }).catch(() => {})))
    },
  }
}
