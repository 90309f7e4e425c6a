/**
 * Writer health: the probe that judges the writer every 100 ms, and what follows a verdict — a
 * lost writer (killed, stopped, unresponsive) schedules a promotion `promoteAfterMs` later, a lost
 * writer that answers again before it is replaced is the writer again. Also the bookkeeping of an
 * instance becoming the writer, and of a reader going down.
 *
 * @module
 */

import { nowMs } from './clock.ts'
import type { Cluster, Member } from './cluster.ts'
import type { Endpoints } from './endpoints.ts'
import { adminSql, type Sql, within } from './instance.ts'
import type { TopologyTable } from './topology-table.ts'

export class Health {
  private probeSql?: { id: string; sql: Sql }
  private probeInflight = false
  private lastProbeOk = 0
  private lastTick = nowMs()

  constructor(
    private readonly c: Cluster,
    private readonly endpoints: Endpoints,
    private readonly table: TopologyTable,
    /** Runs the pending failover (serialized with the other operations). */
    private readonly failover: () => Promise<void>,
  ) {}

  /** Starts judging the writer. */
  start(): void {
    this.resetProbe()
    this.lastTick = nowMs()
    this.probeLoop()
  }

  stop(): void {
    void this.probeSql?.sql.end({ timeout: 0 }).catch(() => {})
    // A lab handed on (lab/pool.ts) starts probing again later, with a connection of its own.
    this.probeSql = undefined
    this.probeInflight = false
  }

  /** Makes `m` the writer; the probe gives it a full `probeTimeoutMs` from now. */
  setWriter(m: Member): void {
    m.role = 'writer'
    m.lastRole = 'writer'
    this.c.writer = m.inst.id
    this.resetProbe()
  }

  /** Runs `fn` while `m` becomes the writer: no probe verdict on it in between. */
  async settle<T>(m: Member, fn: () => Promise<T>): Promise<T> {
    this.c.settling = m.inst.id
    try {
      return await fn()
    } finally {
      this.c.settling = null
      this.resetProbe()
    }
  }

  private resetProbe(): void {
    const target = this.c.writer ?? this.c.lost?.id
    if (this.probeSql?.id !== target) {
      void this.probeSql?.sql.end({ timeout: 0 }).catch(() => {})
      this.probeSql = undefined
      this.probeInflight = false
    }
    this.lastProbeOk = nowMs()
  }

  /** Probes the writer (and a lost-but-alive writer, which may recover) every 100 ms. */
  private probeLoop(): void {
    if (this.c.closed) return
    this.c.later(100, () => {
      try {
        this.probe()
      } finally {
        this.probeLoop()
      }
    })
  }

  private probe(): void {
    const c = this.c
    // A control plane that did not run (a long synchronous step) saw nothing: that time counts
    // against no server; only time it was watching does.
    const now = nowMs()
    const stalled = now - this.lastTick - 100
    this.lastTick = now
    if (stalled > 50) this.lastProbeOk = Math.min(now, this.lastProbeOk + stalled)
    if (this.table.dirty && c.writer) void this.table.write()
    const id = c.writer ?? (c.lost?.reason === 'unresponsive' ? c.lost.id : null)
    if (!id) return
    const m = c.members.get(id)!
    // Not yet (or no longer) a server to judge: being started, promoted, or down.
    if (c.settling === id || !m.inst.running || (m.state !== 'running' && m.state !== 'frozen')) return
    if (this.probeSql?.id !== id) {
      void this.probeSql?.sql.end({ timeout: 0 }).catch(() => {})
      this.probeSql = { id, sql: adminSql(m.inst.pgPort, 1) }
      this.probeInflight = false
    }
    if (!this.probeInflight) {
      this.probeInflight = true
      const sql = this.probeSql.sql
      within(c.options.probeTimeoutMs, sql`SELECT 1`)
        .then(() => {
          // The probe reaches the server directly; a black-holed endpoint counts as no answer.
          if (m.gate.fault !== 'blackhole') this.probeOk(m)
        })
        .catch(() => {})
        .finally(() => {
          if (this.probeSql?.sql === sql) this.probeInflight = false
        })
    }
    if (c.writer === id && nowMs() - this.lastProbeOk > c.options.probeTimeoutMs) {
      this.writerLost(m, 'unresponsive')
    }
  }

  private probeOk(m: Member): void {
    const c = this.c
    this.lastProbeOk = nowMs()
    if (c.lost?.id === m.inst.id && !c.writer && m.state === 'running') {
      if (c.lost.timer) clearTimeout(c.lost.timer)
      c.lost = null
      this.setWriter(m)
      c.refreshSync()
      c.events.emit('writer-recovered', m.inst.id)
      this.endpoints.changed()
    }
  }

  /** The writer died or stopped answering: promotion follows in `promoteAfterMs`. */
  writerLost(m: Member, reason: string): void {
    const c = this.c
    if (c.writer !== m.inst.id) return
    c.writer = null
    m.role = 'down'
    m.downSince = new Date()
    m.lastRole = 'writer'
    c.events.emit('writer-lost', m.inst.id, { reason })
    // Synchronous: a commit was acknowledged once one reader of the writer's sync set had it, and
    // WAL is one stream, so the most advanced of them has all; asynchronous: no such promise.
    const candidates = new Set(
      c
        .readers((r) => r.state === 'running' && !r.stale && (c.options.async || c.syncSet.has(r.inst.id)))
        .map((r) => r.inst.id),
    )
    const timer = c.later(c.options.promoteAfterMs, () => {
      if (c.lost) c.lost.timer = undefined
      void this.failover().catch((e) => c.log(`failover: ${(e as Error).message}`))
    })
    c.lost = { id: m.inst.id, timer, reason, candidates }
  }

  /** An instance's postmaster exited. */
  onExit(m: Member, code: number | null, signal: string | null): void {
    const c = this.c
    if (c.closed) return
    // 'killed' / 'stopped' when we did it; an instance that dies on its own counts as killed.
    const expected = m.state === 'killed' || m.state === 'stopped'
    const reason = expected ? m.state : 'exited'
    if (!expected) m.state = 'killed'
    if (c.writer === m.inst.id) this.writerLost(m, reason)
    else if (m.role === 'reader') this.readerDown(m)
    c.log(`${m.inst.id} exited (code ${code}, signal ${signal})`)
  }

  readerDown(m: Member): void {
    if (m.role !== 'reader') return
    m.role = 'down'
    m.downSince = new Date()
    m.lastRole = 'reader'
    this.c.refreshSync()
    this.endpoints.changed()
  }
}
