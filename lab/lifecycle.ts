/**
 * Instance lifecycle after bring-up: starting a stopped or killed instance (as the writer if no one
 * replaced it, else as a reader), rejoining a reader (restart, pg_rewind or a fresh copy), the
 * graceful switchover, and waiting for a writable writer with streaming readers.
 *
 * @module
 */
import type { Cluster, Member } from './cluster.ts'
import type { Endpoints } from './endpoints.ts'
import type { Health } from './health.ts'
import { sleep, within } from './instance.ts'
import type { Promotion } from './promotion.ts'
import type { TopologyTable } from './topology-table.ts'
import type { LabNode } from './types.ts'

export class Lifecycle {
  constructor(
    private readonly c: Cluster,
    private readonly health: Health,
    private readonly promotion: Promotion,
    private readonly endpoints: Endpoints,
    private readonly table: TopologyTable,
  ) {}

  /** Starts a stopped or killed instance: as the writer if it still is one, else as a reader. */
  async start(id: string): Promise<void> {
    const c = this.c
    const m = c.member(id)
    if (m.inst.running)
      throw new Error(`${m.inst.id} is already running (${m.state}); use heal for a frozen one`)
    if (!c.writer && c.lost?.id === m.inst.id && !m.stale) {
      // The writer came back before any promotion: it is the writer again.
      if (c.lost.timer) clearTimeout(c.lost.timer)
      c.lost = null
      this.health.setWriter(m)
      await this.health.settle(m, async () => {
        m.inst.writeConfig(c.configFor(m))
        await m.inst.start()
        m.state = 'running'
      })
      c.events.emit('writer-recovered', m.inst.id)
      await this.table.write(true)
      if (c.writer !== m.inst.id) throw new Error(`${m.inst.id} was lost again right after its start`)
      c.events.emit('writer-ready', m.inst.id, { from: m.inst.id })
      this.endpoints.changed()
      return
    }
    if (!c.writer) {
      if (m.stale) {
        // It may have WAL no one else has; only a running writer can rewind it.
        throw new Error(
          `${m.inst.id} can rejoin only by a rewind from a running writer, and there is none; ` +
            `start ${c.lost?.id ?? 'the lost writer'} first`,
        )
      }
      // No writer to follow yet: run as a standby of the lost writer (it streams again if that one
      // comes back), then let a pending failover use it.
      m.role = 'reader'
      m.lastRole = 'reader'
      m.inst.writeConfig(c.configFor(m))
      await m.inst.start()
      m.state = 'running'
      this.endpoints.changed()
      if (c.lost && !c.lost.timer) await this.promotion.failover()
      return
    }
    await this.rejoin(m)
  }

  /** Brings `m` back as a streaming reader of the current writer. */
  private async rejoin(m: Member): Promise<void> {
    const c = this.c
    const w = c.members.get(c.writer!)!
    const started = performance.now()
    let how = 'restart'
    if (m.stale) {
      how = await this.rebuild(m, w)
    }
    m.role = 'reader'
    m.inst.writeConfig(c.configFor(m))
    await this.startStandby(m, w)
    m.state = 'running'
    if (!(await this.streaming(m, w, 10_000))) {
      c.log(`${m.inst.id} does not stream after ${how}; rebuilding it`)
      m.role = 'down'
      m.state = 'stopped'
      await m.inst.stop()
      how = await this.rebuild(m, w, how === 'pg_rewind')
      m.role = 'reader'
      m.inst.writeConfig(c.configFor(m))
      await this.startStandby(m, w)
      m.state = 'running'
      if (!(await this.streaming(m, w, 30_000)))
        throw new Error(`${m.inst.id} does not stream from ${w.inst.id}`)
    }
    m.stale = false
    m.lastRole = 'reader'
    c.refreshSync()
    c.events.emit('reader-rejoined', m.inst.id, {
      writer: w.inst.id,
      how,
      ms: Math.round(performance.now() - started),
    })
    this.endpoints.changed()
  }

  /**
   * Starts `m` as a standby of `w`. A rewound standby is consistent only once it replays a record
   * past the point pg_rewind saw on the writer, and an idle writer may write none for 15 s (its
   * next running-transactions record): a small WAL message every 100 ms provides one.
   */
  async startStandby(m: Member, w: Member): Promise<void> {
    let starting = true
    const nudge = (async () => {
      for (let i = 0; starting && i < 600; i++) {
        await within(1000, w.inst.admin`SELECT pg_logical_emit_message(false, 'pgha-lab', 'rejoin')`).catch(
          () => {},
        )
        await sleep(100)
      }
    })()
    try {
      await m.inst.start()
    } finally {
      starting = false
      await nudge
    }
  }

  /** pg_rewind where available (and not `forceCopy`), else a fresh copy of the writer. */
  private async rebuild(m: Member, w: Member, forceCopy = false): Promise<string> {
    const c = this.c
    if (c.bin.rewind && !forceCopy) {
      try {
        if (m.lastRole === 'reader') await this.shutDownInRecovery(m)
        // pg_rewind reads the source's timeline from its control file, which a just-promoted
        // server updates only at its first checkpoint.
        await w.inst.admin`CHECKPOINT`
        const out = await m.inst.rewind(w.inst.pgPort)
        c.log(`pg_rewind of ${m.inst.id}: ${out.trim().replaceAll('\n', ' | ')}`)
        return 'pg_rewind'
      } catch (e) {
        c.log(`pg_rewind of ${m.inst.id} failed, copying instead: ${(e as Error).message}`)
      }
    }
    await m.inst.copyFrom(w.inst)
    return 'copy'
  }

  /**
   * Leaves a standby's data directory "shut down in recovery". pg_rewind would otherwise recover a
   * crashed standby as a primary first (single-user mode), and the end-of-recovery checkpoint that
   * writes forks it off the writer's history even when it was only behind; from a clean state
   * pg_rewind reads how far it replayed and rewinds only if that is past the fork.
   */
  private async shutDownInRecovery(m: Member): Promise<void> {
    m.inst.writeConfig({ syncNames: [], standby: true, dialect: this.c.options.dialect })
    try {
      await m.inst.start()
    } finally {
      await m.inst.stop()
    }
  }

  /** Whether the writer reports `m` as streaming within `timeoutMs`. */
  async streaming(m: Member, w: Member, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (!m.inst.running) return false
      try {
        // Streaming on the writer's timeline: a reader ahead of the fork point keeps reconnecting
        // to stream the old timeline, and shows up as briefly "streaming" each time.
        const [wr] = await within(
          1000,
          w.inst
            .admin`SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS tli,
            EXISTS (SELECT 1 FROM pg_stat_replication WHERE application_name = ${m.inst.appName}
              AND state = 'streaming') AS listed`,
        )
        const [rr] = await within(1000, m.inst.admin`SELECT status, received_tli FROM pg_stat_wal_receiver`)
        if (wr!.listed && rr?.status === 'streaming' && rr.received_tli === wr!.tli) return true
      } catch {}
      await sleep(20)
    }
    return false
  }

  /** Graceful: stop the writer cleanly, promote `id` (default: the most advanced reader). */
  async switchover(id?: string): Promise<void> {
    const c = this.c
    const old = c.member('writer')
    const target = id ? c.member(id) : (await this.promotion.bestReader())?.m
    if (!target) throw new Error('switchover needs a running reader')
    if (target === old) throw new Error(`${id} is already the writer`)
    if (target.role !== 'reader' || target.state !== 'running') {
      throw new Error(`${target.inst.id} is ${target.role}/${target.state}, not a running reader`)
    }
    c.events.emit('switchover', old.inst.id, { to: target.inst.id })
    // A fast shutdown waits until connected standbys have received all WAL, shutdown record included.
    c.writer = null
    old.role = 'down'
    old.downSince = new Date()
    old.state = 'stopped'
    await old.inst.stop()
    const [row] = await target.inst.admin`SELECT pg_last_wal_receive_lsn()::text AS lsn`
    await this.promotion.promote(target, old.inst.id, String(row!.lsn))
    old.stale = false
    await this.rejoin(old)
  }

  /** A writable writer with every running reader streaming from it. */
  async waitForWriter(timeoutMs = 30_000): Promise<LabNode> {
    const c = this.c
    const deadline = Date.now() + timeoutMs
    let last = 'no writer'
    while (Date.now() < deadline) {
      const w = c.writer ? c.members.get(c.writer) : undefined
      if (w && w.state === 'running') {
        try {
          const want = c.readers((r) => r.state === 'running').map((r) => r.inst.appName)
          const [row] = await within(
            2000,
            w.inst.admin`SELECT pg_is_in_recovery() AS r,
              array(SELECT application_name::text FROM pg_stat_replication WHERE state = 'streaming') AS s`,
          )
          const missing = want.filter((a) => !(row!.s as string[]).includes(a))
          if (row!.r) last = `${w.inst.id} is still in recovery`
          else if (missing.length) last = `not streaming yet: ${missing.join(', ')}`
          else {
            await within(5000, w.inst.admin`SELECT pg_catalog.txid_current()`)
            return c.nodeOf(w)
          }
        } catch (e) {
          last = (e as Error).message
        }
      }
      await sleep(25)
    }
    throw new Error(`no writable writer with streaming readers within ${timeoutMs} ms: ${last}`)
  }
}
