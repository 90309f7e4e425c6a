/**
 * The control plane: what Aurora does for a cluster. It owns the instances, the endpoint proxies
 * and the emulated DNS; it probes the writer, promotes the most advanced reader `promoteAfterMs`
 * after losing it, re-points the other readers without restarting them, fences a stale writer,
 * rejoins instances as readers, and logs every step as an event.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { mkdirSync, rmSync } from 'node:fs'
import type { Server } from 'node:net'
import { join } from 'node:path'
import { emulationSql, hostPattern } from './emulation.ts'
import { EventLog } from './events.ts'
import { APP_PASSWORD, APP_USER, adminSql, DATABASE, Instance, type Sql, sleep, within } from './instance.ts'
import { chownR, findPgBin, type PgBin, repoRoot } from './pg-bin.ts'
import { defaultStartup, Gate, listen, type StartupHandler } from './proxy.ts'
import { ensureTemplate, freePort } from './template.ts'
import type { LabDialect, LabNode, LabStatus } from './types.ts'
import { nowMs } from './types.ts'

export const CLUSTER_HOST = '127.0.0.10'
export const READER_HOST = '127.0.0.20'
const firstOctet = 11

/** Options after defaults; `dir` and `port` resolved. */
export interface ControlOptions {
  nodes: number
  dialect: LabDialect
  promoteAfterMs: number
  endpointLagMs: number
  probeTimeoutMs: number
  async: boolean
  dir: string
  port?: number
  startup?: StartupHandler
}

type Role = LabNode['role']

interface Member {
  inst: Instance
  gate: Gate
  server?: Server
  role: Role
  state: LabNode['state']
  /**
   * May hold WAL the writer does not have: it ran as a primary and lost that role, or it was down
   * when another instance was promoted (it may have received WAL beyond the fork point). Must be
   * rewound (or recopied) before streaming, and is never promoted.
   */
  stale: boolean
  lastRole: 'writer' | 'reader'
  sessionId: string
  downSince?: Date
  ord: number
}

export class Control {
  readonly events: EventLog
  readonly members = new Map<string, Member>()
  writer: string | null = null
  private bin!: PgBin
  private port = 0
  private servers: Server[] = []
  private dns = { cluster: null as string | null, readers: [] as string[] }
  private readerTurn = 0
  private chain: Promise<unknown> = Promise.resolve()
  private topoChain: Promise<unknown> = Promise.resolve()
  private topoDirty = false
  private timers = new Set<ReturnType<typeof setTimeout>>()
  /**
   * The lost writer, waiting for a promotion. `candidates`: the readers that were running at the
   * loss, so had every commit it acknowledged (synchronous replication); only they may replace it.
   */
  private lost: {
    id: string
    timer?: ReturnType<typeof setTimeout>
    reason: string
    candidates: Set<string>
  } | null = null
  /**
   * An instance being made the writer (promoted, or restarted as the writer): the probe leaves it
   * alone until the operation ends; it is judged from then on, never from an older answer.
   */
  private settling: string | null = null
  /** The readers in the writer's `synchronous_standby_names`: one of them has each commit. */
  private syncSet = new Set<string>()
  private probeSql?: { id: string; sql: Sql }
  private probeInflight = false
  private lastProbeOk = 0
  private lastTick = nowMs()
  private closed = false
  upMs = 0

  constructor(
    readonly options: ControlOptions,
    private readonly log: (m: string) => void,
  ) {
    mkdirSync(join(options.dir, 'logs'), { recursive: true })
    this.events = new EventLog(join(options.dir, 'events.jsonl'), log)
  }

  /** Runs `fn` after every operation queued before it (operations never interleave). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn)
    this.chain = run.catch(() => {})
    return run
  }

  private member(target: string): Member {
    const id = target === 'writer' ? this.writer : target
    if (!id) throw new Error('the cluster has no writer right now')
    const m = this.members.get(id)
    if (!m)
      throw new Error(
        `unknown instance "${target}"; instances: ${[...this.members.keys()].join(', ')}, writer`,
      )
    return m
  }

  private readers(filter: (m: Member) => boolean = () => true): Member[] {
    return [...this.members.values()].filter((m) => m.role === 'reader' && filter(m))
  }

  // ---------------------------------------------------------------- up

  async up(): Promise<void> {
    const started = performance.now()
    const o = this.options
    this.bin = findPgBin()
    const template = await ensureTemplate(this.bin, join(repoRoot, '.lab'), this.log)
    mkdirSync(join(o.dir, 'data'), { recursive: true })
    chownR(join(o.dir, 'data'))
    const ids = Array.from({ length: o.nodes }, (_, i) => `127.0.0.${firstOctet + i}`)
    const pgPorts = await Promise.all(ids.map(() => freePort()))
    for (const [i, id] of ids.entries()) {
      const inst = new Instance(this.bin, id, pgPorts[i]!, o.dir)
      const gate = new Gate(id, () => (inst.running ? inst.pgPort : undefined), o.startup ?? defaultStartup)
      const m: Member = {
        inst,
        gate,
        role: i === 0 ? 'writer' : 'reader',
        state: 'stopped',
        stale: false,
        lastRole: i === 0 ? 'writer' : 'reader',
        sessionId: randomUUID(),
        ord: i,
      }
      inst.onExit = (code, signal) => this.onExit(m, code, signal)
      this.members.set(id, m)
    }
    await this.listenAll()
    const members = [...this.members.values()]
    for (const m of members) m.inst.createFromTemplate(template)
    const [writer, ...readers] = members
    this.writer = writer!.inst.id
    for (const m of members) m.state = 'running'
    writer!.inst.writeConfig(this.configFor(writer!))
    for (const r of readers) r.inst.writeConfig(this.configFor(r))
    await Promise.all(members.map((m) => m.inst.start()))
    const sql = emulationSql(o.dialect)
    if (sql) await writer!.inst.admin.begin((tx) => tx.unsafe(sql))
    await this.writeTopology(true)
    await this.waitForWriter(60_000)
    this.dns = this.desiredDns()
    this.resetProbe()
    this.lastTick = nowMs()
    this.probeLoop()
    this.upMs = performance.now() - started
    this.events.emit('up', undefined, { ms: Math.round(this.upMs), nodes: o.nodes, pg: this.bin.version })
  }

  /** Binds every endpoint address on one port (a free one unless given). */
  private async listenAll(): Promise<void> {
    const bind = async (port: number) => {
      const servers: Server[] = []
      try {
        for (const m of this.members.values()) {
          m.server = await listen(m.inst.id, port, () => m.gate)
          servers.push(m.server)
        }
        servers.push(await listen(CLUSTER_HOST, port, () => this.routeCluster()))
        servers.push(await listen(READER_HOST, port, () => this.routeReader()))
        return servers
      } catch (e) {
        for (const s of servers) s.close()
        throw e
      }
    }
    if (this.options.port) {
      this.servers = await bind(this.options.port)
      this.port = this.options.port
      return
    }
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = await freePort(CLUSTER_HOST)
      try {
        this.servers = await bind(port)
        this.port = port
        return
      } catch {}
    }
    throw new Error('found no port free on every lab address after 20 attempts; pass --port')
  }

  private routeCluster(): Gate | undefined {
    return this.dns.cluster ? this.members.get(this.dns.cluster)?.gate : undefined
  }

  private routeReader(): Gate | undefined {
    const ids = this.dns.readers
    if (ids.length === 0) return undefined
    return this.members.get(ids[this.readerTurn++ % ids.length]!)?.gate
  }

  /**
   * Everything but the writer runs as a standby: with no writer (all lost), it follows the lost
   * writer, which is the writer again if it comes back, and stays read-only until then.
   */
  private configFor(m: Member) {
    const isWriter = m.role === 'writer' && this.writer === m.inst.id
    const follow = this.writer ?? this.lost?.id
    const upstream = isWriter || !follow ? undefined : this.members.get(follow)!.inst.pgPort
    const syncing = isWriter && !this.options.async ? this.readers((r) => r.state === 'running') : []
    // Every configuration computed for the writer is written and applied at once.
    if (isWriter) this.syncSet = new Set(syncing.map((r) => r.inst.id))
    const sync = syncing.map((r) => r.inst.appName)
    return { upstreamPort: upstream, standby: !isWriter, syncNames: sync, dialect: this.options.dialect }
  }

  /** Rewrites the writer's `synchronous_standby_names` for the running readers. */
  private refreshSync(): void {
    const w = this.writer ? this.members.get(this.writer) : undefined
    if (!w?.inst.running) return
    w.inst.writeConfig(this.configFor(w), true)
    w.inst.reload()
  }

  // ---------------------------------------------------------------- topology and DNS

  /** Writes the topology table on the writer; `synchronous` waits for a standby like any write. */
  private writeTopology(synchronous = false): Promise<void> {
    const run = async () => {
      const w = this.writer ? this.members.get(this.writer) : undefined
      if (w?.state !== 'running') {
        this.topoDirty = true
        return
      }
      const rows = [...this.members.values()].map((m) => ({
        server_id: m.inst.id,
        session_id: m.sessionId,
        role: m.role,
        down_since: m.role === 'down' ? (m.downSince ?? new Date()) : null,
        lag_ms: 0,
        cpu: 1 + m.ord,
        port: this.port,
        ord: m.ord,
      }))
      this.topoDirty = false
      try {
        await within(
          synchronous ? 30_000 : 5_000,
          w.inst.admin.begin(async (tx) => {
            if (!synchronous) await tx`SET LOCAL synchronous_commit = local`
            await tx`
              INSERT INTO lab_internal.instances ${tx(rows)}
              ON CONFLICT (server_id) DO UPDATE SET session_id = excluded.session_id, role = excluded.role,
                down_since = excluded.down_since, lag_ms = excluded.lag_ms, cpu = excluded.cpu,
                port = excluded.port, ord = excluded.ord`
          }),
          'topology write',
        )
      } catch (e) {
        this.topoDirty = true
        if (synchronous) throw e
        this.log(`topology write failed: ${(e as Error).message}`)
      }
    }
    const p = this.topoChain.then(run, run)
    this.topoChain = p.catch(() => {})
    return p
  }

  private desiredDns() {
    const readers = this.readers((r) => r.state === 'running' || r.state === 'frozen').map((r) => r.inst.id)
    const cluster = this.writer ?? this.dns.cluster
    return { cluster, readers: readers.length ? readers : cluster ? [cluster] : [] }
  }

  /** Topology changed: the table now, the emulated DNS `endpointLagMs` later. */
  private changed(): void {
    void this.writeTopology()
    const next = this.desiredDns()
    const apply = () => {
      if (this.closed) return
      if (next.cluster !== this.dns.cluster) {
        this.events.emit('endpoint-moved', next.cluster ?? undefined, {
          endpoint: 'cluster',
          from: this.dns.cluster,
          to: next.cluster,
        })
      }
      if (next.readers.join() !== this.dns.readers.join()) {
        this.events.emit('endpoint-moved', undefined, {
          endpoint: 'reader',
          from: this.dns.readers,
          to: next.readers,
        })
      }
      this.dns = next
    }
    if (this.options.endpointLagMs <= 0) apply()
    else this.later(this.options.endpointLagMs, apply)
  }

  private later(ms: number, fn: () => void): ReturnType<typeof setTimeout> {
    const t = setTimeout(() => {
      this.timers.delete(t)
      fn()
    }, ms)
    this.timers.add(t)
    return t
  }

  // ---------------------------------------------------------------- writer health

  /** Makes `m` the writer; the probe gives it a full `probeTimeoutMs` from now. */
  private setWriter(m: Member): void {
    m.role = 'writer'
    m.lastRole = 'writer'
    this.writer = m.inst.id
    this.resetProbe()
  }

  /** Runs `fn` while `m` becomes the writer: no probe verdict on it in between. */
  private async settle<T>(m: Member, fn: () => Promise<T>): Promise<T> {
    this.settling = m.inst.id
    try {
      return await fn()
    } finally {
      this.settling = null
      this.resetProbe()
    }
  }

  private resetProbe(): void {
    const target = this.writer ?? this.lost?.id
    if (this.probeSql?.id !== target) {
      void this.probeSql?.sql.end({ timeout: 0 }).catch(() => {})
      this.probeSql = undefined
      this.probeInflight = false
    }
    this.lastProbeOk = nowMs()
  }

  /** Probes the writer (and a lost-but-alive writer, which may recover) every 100 ms. */
  private probeLoop(): void {
    if (this.closed) return
    this.later(100, () => {
      try {
        this.probe()
      } finally {
        this.probeLoop()
      }
    })
  }

  private probe(): void {
    // A control plane that did not run (a long synchronous step) saw nothing: that time counts
    // against no server; only time it was watching does.
    const now = nowMs()
    const stalled = now - this.lastTick - 100
    this.lastTick = now
    if (stalled > 50) this.lastProbeOk = Math.min(now, this.lastProbeOk + stalled)
    if (this.topoDirty && this.writer) void this.writeTopology()
    const id = this.writer ?? (this.lost?.reason === 'unresponsive' ? this.lost.id : null)
    if (!id) return
    const m = this.members.get(id)!
    // Not yet (or no longer) a server to judge: being started, promoted, or down.
    if (this.settling === id || !m.inst.running || (m.state !== 'running' && m.state !== 'frozen')) return
    if (this.probeSql?.id !== id) {
      void this.probeSql?.sql.end({ timeout: 0 }).catch(() => {})
      this.probeSql = { id, sql: adminSql(m.inst.pgPort, 1) }
      this.probeInflight = false
    }
    if (!this.probeInflight) {
      this.probeInflight = true
      const sql = this.probeSql.sql
      within(this.options.probeTimeoutMs, sql`SELECT 1`)
        .then(() => {
          // The probe reaches the server directly; a black-holed endpoint counts as no answer.
          if (m.gate.fault !== 'blackhole') this.probeOk(m)
        })
        .catch(() => {})
        .finally(() => {
          if (this.probeSql?.sql === sql) this.probeInflight = false
        })
    }
    if (this.writer === id && nowMs() - this.lastProbeOk > this.options.probeTimeoutMs) {
      this.writerLost(m, 'unresponsive')
    }
  }

  private probeOk(m: Member): void {
    this.lastProbeOk = nowMs()
    if (this.lost?.id === m.inst.id && !this.writer && m.state === 'running') {
      if (this.lost.timer) clearTimeout(this.lost.timer)
      this.lost = null
      this.setWriter(m)
      this.refreshSync()
      this.events.emit('writer-recovered', m.inst.id)
      this.changed()
    }
  }

  /** The writer died or stopped answering: promotion follows in `promoteAfterMs`. */
  private writerLost(m: Member, reason: string): void {
    if (this.writer !== m.inst.id) return
    this.writer = null
    m.role = 'down'
    m.downSince = new Date()
    m.lastRole = 'writer'
    this.events.emit('writer-lost', m.inst.id, { reason })
    // Synchronous: a commit was acknowledged once one reader of the writer's sync set had it, and
    // WAL is one stream, so the most advanced of them has all; asynchronous: no such promise.
    const candidates = new Set(
      this.readers(
        (r) => r.state === 'running' && !r.stale && (this.options.async || this.syncSet.has(r.inst.id)),
      ).map((r) => r.inst.id),
    )
    const timer = this.later(this.options.promoteAfterMs, () => {
      if (this.lost) this.lost.timer = undefined
      void this.exclusive(() => this.failover()).catch((e) => this.log(`failover: ${(e as Error).message}`))
    })
    this.lost = { id: m.inst.id, timer, reason, candidates }
  }

  private onExit(m: Member, code: number | null, signal: string | null): void {
    if (this.closed) return
    // 'killed' / 'stopped' when we did it; an instance that dies on its own counts as killed.
    const expected = m.state === 'killed' || m.state === 'stopped'
    const reason = expected ? m.state : 'exited'
    if (!expected) m.state = 'killed'
    if (this.writer === m.inst.id) this.writerLost(m, reason)
    else if (m.role === 'reader') this.readerDown(m)
    this.log(`${m.inst.id} exited (code ${code}, signal ${signal})`)
  }

  private readerDown(m: Member): void {
    if (m.role !== 'reader') return
    m.role = 'down'
    m.downSince = new Date()
    m.lastRole = 'reader'
    this.refreshSync()
    this.changed()
  }

  // ---------------------------------------------------------------- failover

  /**
   * The most advanced running standby (received WAL), preferring reachable endpoints, among the
   * readers `eligible` accepts.
   */
  private async bestReader(
    eligible: (m: Member) => boolean = () => true,
  ): Promise<{ m: Member; lsn: string } | undefined> {
    const candidates = this.readers((r) => r.state === 'running' && !r.stale && eligible(r))
    const scored = await Promise.all(
      candidates.map(async (m) => {
        try {
          const [row] = await within(
            1000,
            m.inst
              .admin`SELECT coalesce(greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0') - '0/0' AS pos,
              greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text AS lsn,
              pg_is_in_recovery() AS standby`,
          )
          // Never "promote" a server that is not a standby: it would be a second primary.
          if (!row!.standby) return undefined
          return { m, pos: BigInt(row!.pos), lsn: String(row!.lsn) }
        } catch {
          return undefined
        }
      }),
    )
    const ok = scored.filter((s) => s !== undefined)
    ok.sort(
      (a, b) =>
        Number(b.m.gate.fault === 'none') - Number(a.m.gate.fault === 'none') ||
        (b.pos > a.pos ? 1 : b.pos < a.pos ? -1 : 0) ||
        a.m.ord - b.m.ord,
    )
    return ok[0]
  }

  private async failover(): Promise<void> {
    if (this.writer || !this.lost || this.closed) return
    const lost = this.members.get(this.lost.id)!
    // A writer that still runs (black-holed, not frozen) could still acknowledge commits: fence it
    // before reading the readers' positions, so the chosen one has every acknowledged commit.
    if (lost.inst.running && !lost.inst.frozen) {
      lost.state = 'killed'
      await lost.inst.kill()
      this.events.emit('fenced', lost.inst.id, { reason: 'stale writer still running' })
    }
    // A reader that was down at the loss may lack commits the writer acknowledged without it; one
    // of the sync set that is down now may hold the only copy of the last acknowledged commit.
    const candidates = this.lost.candidates
    const down = [...candidates].filter((id) => this.members.get(id)!.state !== 'running')
    const best =
      down.length && !this.options.async ? undefined : await this.bestReader((r) => candidates.has(r.inst.id))
    if (!best) {
      this.events.emit('failover-failed', lost.inst.id, {
        reason: down.length
          ? `waiting for ${down.join(', ')}: may hold the last acknowledged commits`
          : 'no running reader to promote',
        candidates: [...candidates],
      })
      return
    }
    this.lost = null
    lost.stale = true
    await this.promote(best.m, lost.inst.id, best.lsn)
  }

  /** Re-points the other readers at `m`, promotes it, then waits for its first write. */
  private async promote(m: Member, from: string | null, lsn: string): Promise<void> {
    const others = this.readers((r) => r !== m)
    // Whoever is down now misses the fork of the new timeline, and may hold WAL beyond it.
    for (const o of this.members.values()) if (o !== m && !o.inst.running) o.stale = true
    this.setWriter(m)
    await this.settle(m, async () => {
      for (const r of others) {
        if (!r.inst.running) continue
        // Cascading from the candidate first: they follow its promotion without reconnecting.
        r.inst.writeConfig(this.configFor(r))
        r.inst.reload()
      }
      m.inst.writeConfig(this.configFor(m), true)
      m.inst.reload()
      const promoteStart = nowMs()
      await m.inst.admin`SELECT pg_promote(false)`
      const deadline = Date.now() + 30_000
      for (;;) {
        const [row] = await m.inst.admin`SELECT pg_is_in_recovery() AS r`
        if (!row!.r) break
        if (Date.now() > deadline) throw new Error(`${m.inst.id} did not leave recovery in 30 s`)
        await sleep(5)
      }
      this.events.emit('promoted', m.inst.id, { from, lsn, ms: Math.round(nowMs() - promoteStart) })
    })
    await this.writeTopology(true)
    if (this.writer !== m.inst.id) throw new Error(`${m.inst.id} was lost right after its promotion`)
    this.events.emit('writer-ready', m.inst.id, { from })
    this.changed()
  }

  // ---------------------------------------------------------------- operations

  async kill(target: string): Promise<void> {
    const m = this.member(target)
    this.events.emit('fault', m.inst.id, { fault: 'kill' })
    const wasWriter = this.writer === m.inst.id
    m.state = 'killed'
    await m.inst.kill()
    if (wasWriter) this.writerLost(m, 'killed')
    else this.readerDown(m)
  }

  async freeze(target: string): Promise<void> {
    const m = this.member(target)
    if (m.state !== 'running') throw new Error(`${m.inst.id} is ${m.state}, not running`)
    m.inst.freeze()
    m.state = 'frozen'
    this.events.emit('fault', m.inst.id, { fault: 'freeze' })
    if (m.role === 'reader') this.refreshSync()
  }

  async stop(target: string): Promise<void> {
    const m = this.member(target)
    this.events.emit('fault', m.inst.id, { fault: 'stop' })
    const wasWriter = this.writer === m.inst.id
    m.state = 'stopped'
    if (wasWriter) this.writerLost(m, 'stopped')
    else this.readerDown(m)
    await m.inst.stop()
  }

  async blackhole(target: string): Promise<void> {
    const m = this.member(target)
    m.gate.blackhole()
    this.events.emit('fault', m.inst.id, { fault: 'blackhole' })
  }

  async latency(target: string, ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new Error(`latency must be a number of ms >= 0, got ${ms}`)
    const m = this.member(target)
    m.gate.latency(ms)
    this.events.emit('fault', m.inst.id, { fault: 'latency', ms })
  }

  async heal(target?: string): Promise<void> {
    const list = target ? [this.member(target)] : [...this.members.values()]
    for (const m of list) {
      const wasFault = m.gate.fault
      if (m.state === 'frozen') {
        if (this.writer !== m.inst.id && m.lastRole === 'writer' && this.lost?.id !== m.inst.id) {
          // A replaced writer must never run again as a primary: fence it instead of resuming.
          m.state = 'killed'
          await m.inst.kill()
          m.stale = true
          this.events.emit('fenced', m.inst.id, { reason: 'replaced while frozen' })
        } else {
          m.inst.thaw()
          m.state = 'running'
          if (m.role === 'reader') this.refreshSync()
          this.events.emit('heal', m.inst.id, { fault: 'freeze' })
          // A failover that waited for this reader.
          if (m.role === 'reader' && this.lost && !this.lost.timer) await this.failover()
        }
      }
      if (wasFault !== 'none') {
        m.gate.heal()
        this.events.emit('heal', m.inst.id, { fault: wasFault })
      }
    }
  }

  /** Starts a stopped or killed instance: as the writer if it still is one, else as a reader. */
  async start(id: string): Promise<void> {
    const m = this.member(id)
    if (m.inst.running)
      throw new Error(`${m.inst.id} is already running (${m.state}); use heal for a frozen one`)
    if (!this.writer && this.lost?.id === m.inst.id && !m.stale) {
      // The writer came back before any promotion: it is the writer again.
      if (this.lost.timer) clearTimeout(this.lost.timer)
      this.lost = null
      this.setWriter(m)
      await this.settle(m, async () => {
        m.inst.writeConfig(this.configFor(m))
        await m.inst.start()
        m.state = 'running'
      })
      this.events.emit('writer-recovered', m.inst.id)
      await this.writeTopology(true)
      if (this.writer !== m.inst.id) throw new Error(`${m.inst.id} was lost again right after its start`)
      this.events.emit('writer-ready', m.inst.id, { from: m.inst.id })
      this.changed()
      return
    }
    if (!this.writer) {
      if (m.stale) {
        // It may have WAL no one else has; only a running writer can rewind it.
        throw new Error(
          `${m.inst.id} can rejoin only by a rewind from a running writer, and there is none; ` +
            `start ${this.lost?.id ?? 'the lost writer'} first`,
        )
      }
      // No writer to follow yet: run as a standby of the lost writer (it streams again if that one
      // comes back), then let a pending failover use it.
      m.role = 'reader'
      m.lastRole = 'reader'
      m.inst.writeConfig(this.configFor(m))
      await m.inst.start()
      m.state = 'running'
      this.changed()
      if (this.lost && !this.lost.timer) await this.failover()
      return
    }
    await this.rejoin(m)
  }

  /** Brings `m` back as a streaming reader of the current writer. */
  private async rejoin(m: Member): Promise<void> {
    const w = this.members.get(this.writer!)!
    const started = performance.now()
    let how = 'restart'
    if (m.stale) {
      how = await this.rebuild(m, w)
    }
    m.role = 'reader'
    m.inst.writeConfig(this.configFor(m))
    await this.startStandby(m, w)
    m.state = 'running'
    if (!(await this.streaming(m, w, 10_000))) {
      this.log(`${m.inst.id} does not stream after ${how}; rebuilding it`)
      m.role = 'down'
      m.state = 'stopped'
      await m.inst.stop()
      how = await this.rebuild(m, w, how === 'pg_rewind')
      m.role = 'reader'
      m.inst.writeConfig(this.configFor(m))
      await this.startStandby(m, w)
      m.state = 'running'
      if (!(await this.streaming(m, w, 30_000)))
        throw new Error(`${m.inst.id} does not stream from ${w.inst.id}`)
    }
    m.stale = false
    m.lastRole = 'reader'
    this.refreshSync()
    this.events.emit('reader-rejoined', m.inst.id, {
      writer: w.inst.id,
      how,
      ms: Math.round(performance.now() - started),
    })
    this.changed()
  }

  /**
   * Starts `m` as a standby of `w`. A rewound standby is consistent only once it replays a record
   * past the point pg_rewind saw on the writer, and an idle writer may write none for 15 s (its
   * next running-transactions record): a small WAL message every 100 ms provides one.
   */
  private async startStandby(m: Member, w: Member): Promise<void> {
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
    if (this.bin.rewind && !forceCopy) {
      try {
        if (m.lastRole === 'reader') await this.shutDownInRecovery(m)
        // pg_rewind reads the source's timeline from its control file, which a just-promoted
        // server updates only at its first checkpoint.
        await w.inst.admin`CHECKPOINT`
        const out = await m.inst.rewind(w.inst.pgPort)
        this.log(`pg_rewind of ${m.inst.id}: ${out.trim().replaceAll('\n', ' | ')}`)
        return 'pg_rewind'
      } catch (e) {
        this.log(`pg_rewind of ${m.inst.id} failed, copying instead: ${(e as Error).message}`)
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
    m.inst.writeConfig({ syncNames: [], standby: true, dialect: this.options.dialect })
    try {
      await m.inst.start()
    } finally {
      await m.inst.stop()
    }
  }

  /** Whether the writer reports `m` as streaming within `timeoutMs`. */
  private async streaming(m: Member, w: Member, timeoutMs: number): Promise<boolean> {
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
    const old = this.member('writer')
    const target = id ? this.member(id) : (await this.bestReader())?.m
    if (!target) throw new Error('switchover needs a running reader')
    if (target === old) throw new Error(`${id} is already the writer`)
    if (target.role !== 'reader' || target.state !== 'running') {
      throw new Error(`${target.inst.id} is ${target.role}/${target.state}, not a running reader`)
    }
    this.events.emit('switchover', old.inst.id, { to: target.inst.id })
    // A fast shutdown waits until connected standbys have received all WAL, shutdown record included.
    this.writer = null
    old.role = 'down'
    old.downSince = new Date()
    old.state = 'stopped'
    await old.inst.stop()
    const [row] = await target.inst.admin`SELECT pg_last_wal_receive_lsn()::text AS lsn`
    await this.promote(target, old.inst.id, String(row!.lsn))
    old.stale = false
    await this.rejoin(old)
  }

  /** A writable writer with every running reader streaming from it. */
  async waitForWriter(timeoutMs = 30_000): Promise<LabNode> {
    const deadline = Date.now() + timeoutMs
    let last = 'no writer'
    while (Date.now() < deadline) {
      const w = this.writer ? this.members.get(this.writer) : undefined
      if (w && w.state === 'running') {
        try {
          const want = this.readers((r) => r.state === 'running').map((r) => r.inst.appName)
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
            return this.nodeOf(w)
          }
        } catch (e) {
          last = (e as Error).message
        }
      }
      await sleep(25)
    }
    throw new Error(`no writable writer with streaming readers within ${timeoutMs} ms: ${last}`)
  }

  // ---------------------------------------------------------------- status and shutdown

  nodeOf(m: Member): LabNode {
    return {
      id: m.inst.id,
      role: m.role,
      host: m.inst.id,
      port: this.port,
      state: m.state,
      fault: m.gate.fault,
      ...(m.gate.fault === 'latency' ? { latencyMs: m.gate.latencyMs } : {}),
    }
  }

  status(): LabStatus {
    const o = this.options
    return {
      dir: o.dir,
      dialect: o.dialect,
      port: this.port,
      database: DATABASE,
      user: APP_USER,
      password: APP_PASSWORD,
      nodes: [...this.members.values()].map((m) => this.nodeOf(m)),
      writer: this.writer,
      clusterEndpoint: { host: CLUSTER_HOST, port: this.port },
      readerEndpoint: { host: READER_HOST, port: this.port },
      instanceHostPattern: hostPattern(o.dialect),
      events: this.events.events,
      options: {
        nodes: o.nodes,
        dialect: o.dialect,
        promoteAfterMs: o.promoteAfterMs,
        endpointLagMs: o.endpointLagMs,
        probeTimeoutMs: o.probeTimeoutMs,
        async: o.async,
      },
      pgVersion: this.bin?.version ?? '',
      pgBin: this.bin?.dir ?? '',
      targets: { upMs: Math.round(this.upMs), upTargetMs: 10_000, killToWriterReadyTargetMs: 1500 },
    }
  }

  /** Internal ports and data directories, for the crash-safe `down`. */
  processes(): { id: string; pgPort: number; dataDir: string }[] {
    return [...this.members.values()].map((m) => ({
      id: m.inst.id,
      pgPort: m.inst.pgPort,
      dataDir: m.inst.dataDir,
    }))
  }

  /** Kills every server, closes every endpoint; removes the data (or the whole folder). */
  async down(removeDir: boolean): Promise<void> {
    this.closed = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    if (this.lost?.timer) clearTimeout(this.lost.timer)
    void this.probeSql?.sql.end({ timeout: 0 }).catch(() => {})
    for (const m of this.members.values()) {
      m.gate.closeAll()
      await m.inst.closeAdmin()
      await m.inst.kill()
    }
    for (const s of this.servers) s.close()
    rmSync(removeDir ? this.options.dir : join(this.options.dir, 'data'), { recursive: true, force: true })
  }
}
