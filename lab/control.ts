/**
 * The control plane: what Aurora does for a cluster. It owns the instances, the endpoint proxies
 * and the emulated DNS; it probes the writer, promotes the most advanced reader `promoteAfterMs`
 * after losing it, re-points the other readers without restarting them, fences a stale writer,
 * rejoins instances as readers, and logs every step as an event. This file brings the cluster up
 * and down and composes the parts, one concept each: `cluster.ts` (shared state),
 * `endpoints.ts` (endpoints and DNS lag), `topology-table.ts` (emulation tables), `health.ts` and
 * `promotion.ts` (health and promotion), `faults.ts`, `lifecycle.ts` (start, rejoin, switchover).
 *
 * @module
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { Cluster, type ControlOptions } from './cluster.ts'
import type { ControlPlane, LabTiming } from './control-plane.ts'
import { emulationSql, hostPattern } from './emulation.ts'
import { CLUSTER_HOST, Endpoints, READER_HOST } from './endpoints.ts'
import { EventLog } from './events.ts'
import { Faults } from './faults.ts'
import { Health } from './health.ts'
import { APP_PASSWORD, APP_USER, DATABASE, sleep, within } from './instance.ts'
import { Lifecycle } from './lifecycle.ts'
import { FIRST_OCTET, Membership, newMember } from './membership.ts'
import { chownR, findPgBin, removeTree } from './pg-bin.ts'
import { dropPublic, endSessions, fingerprint, replayedUpToNow } from './pool.ts'
import { freePort } from './ports.ts'
import { Promotion } from './promotion.ts'
import { labRoot } from './scratch.ts'
import { releaseSegmentsOf } from './shared-memory.ts'
import { ensureTemplate } from './template.ts'
import { TopologyTable } from './topology-table.ts'
import type { LabNode, LabStatus } from './types.ts'

export type { ControlOptions } from './cluster.ts'
export { CLUSTER_HOST, READER_HOST } from './endpoints.ts'

export class Control implements ControlPlane {
  readonly events: EventLog
  private readonly c: Cluster
  private readonly table: TopologyTable
  private readonly endpoints: Endpoints
  private readonly health: Health
  private readonly promotion: Promotion
  private readonly faults: Faults
  private readonly lifecycle: Lifecycle
  private readonly membership: Membership
  private chain: Promise<unknown> = Promise.resolve()
  /** The catalog digest right after bring-up: a lab is handed on only if it has it again (pool.ts). */
  private pristine?: string
  upMs = 0

  constructor(
    readonly options: ControlOptions,
    private readonly log: (m: string) => void,
  ) {
    mkdirSync(join(options.dir, 'logs'), { recursive: true })
    this.events = new EventLog(join(options.dir, 'events.jsonl'), log)
    const c = new Cluster(options, this.events, log)
    this.c = c
    this.table = new TopologyTable(c)
    this.endpoints = new Endpoints(c, this.table)
    this.health = new Health(c, this.endpoints, this.table, () =>
      this.exclusive(() => this.promotion.failover()),
    )
    this.promotion = new Promotion(c, this.health, this.endpoints, this.table)
    this.faults = new Faults(c, this.health, this.promotion)
    this.lifecycle = new Lifecycle(c, this.health, this.promotion, this.endpoints, this.table)
    this.membership = new Membership(c, this.health, this.endpoints, this.table, this.lifecycle)
  }

  /** Runs `fn` after every operation queued before it (operations never interleave). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn)
    this.chain = run.catch(() => {})
    return run
  }

  async up(): Promise<void> {
    const started = performance.now()
    const o = this.options
    const c = this.c
    c.bin = findPgBin()
    const template = await ensureTemplate(c.bin, labRoot(), this.log)
    mkdirSync(join(o.dir, 'data'), { recursive: true })
    chownR(join(o.dir, 'data'))
    const ids = Array.from({ length: o.nodes }, (_, i) => `127.0.0.${FIRST_OCTET + i}`)
    const pgPorts = await Promise.all(ids.map(() => freePort()))
    for (const [i, id] of ids.entries())
      c.members.set(id, newMember(c, this.health, id, pgPorts[i]!, i === 0 ? 'writer' : 'reader', i))
    await this.endpoints.listenAll()
    const members = [...c.members.values()]
    await Promise.all(members.map((m) => m.inst.createFromTemplate(template)))
    const [writer, ...readers] = members
    c.writer = writer!.inst.id
    for (const m of members) m.state = 'running'
    writer!.inst.writeConfig(c.configFor(writer!))
    for (const r of readers) r.inst.writeConfig(c.configFor(r))
    await Promise.all(members.map((m) => m.inst.start()))
    const sql = emulationSql(o.dialect)
    if (sql) await writer!.inst.admin.begin((tx) => tx.unsafe(sql))
    await this.table.write(true)
    await this.lifecycle.waitForWriter(60_000)
    this.endpoints.resolveNow()
    this.pristine = await fingerprint(writer!.inst.admin)
    this.health.start()
    this.upMs = performance.now() - started
    this.events.emit('up', undefined, { ms: Math.round(this.upMs), nodes: o.nodes, pg: c.bin.version })
  }

  /**
   * Readies the lab for its next user (lab/pool.ts says when a lab qualifies): true once it is a
   * working cluster as at bring-up, whichever instance is the writer (its event log emptied, its
   * writer no longer probed until `adopt`), false when it must be taken down instead.
   */
  async park(): Promise<boolean> {
    const c = this.c
    const o = this.options
    const ids = Array.from({ length: o.nodes }, (_, i) => `127.0.0.${FIRST_OCTET + i}`)
    const members = [...c.members.values()]
    const shapeKept =
      this.pristine !== undefined &&
      !c.closed &&
      !c.lost &&
      !c.settling &&
      c.writer !== null &&
      members.length === ids.length &&
      members.every(
        (m, i) =>
          m.inst.id === ids[i] &&
          m.role === (m.inst.id === c.writer ? 'writer' : 'reader') &&
          m.state === 'running' &&
          m.inst.running &&
          !m.inst.frozen &&
          !m.stale &&
          m.gate.fault === 'none',
      )
    if (!shapeKept) return false
    // No pending promotion or endpoint move; the probe stops until the next user adopts the lab.
    c.clearTimers()
    this.health.stop()
    const writer = members.find((m) => m.inst.id === c.writer)!
    const readers = members.filter((m) => m !== writer)
    for (const m of members) if (!(await endSessions(m.inst.admin))) return false
    // Every reader still a standby (none promoted behind the lab's back), replaying, with no slot or
    // ALTER SYSTEM setting of its own (neither is replicated from the writer).
    for (const m of readers) {
      const [r] = await within(
        2_000,
        m.inst.admin`SELECT pg_is_in_recovery() AS standby,
          CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS paused,
          (SELECT count(*) FROM pg_replication_slots)::int
            + (SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf')::int AS own`,
      )
      if (!r!.standby || r!.paused || r!.own !== 0) return false
    }
    // Every reader streams from it before anything is written: a commit waits for a sync standby.
    await this.lifecycle.waitForWriter(5_000)
    // Replication as at bring-up: one streaming walsender per reader on the writer, under the
    // reader's name, and each reader's receiver on the writer's timeline under that name. The pg
    // dialect takes a standby's lag only from exactly one row of that name (read-lag's wait for it
    // timed out once on a lab adopted after failovers, cause not pinned down). At most 5 s.
    const expected = readers.map((m) => `${m.inst.appName} streaming`).sort()
    const replicationSettled = async () => {
      const [w] = await within(
        2_000,
        writer.inst
          .admin`SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS tli,
          array(SELECT application_name::text || ' ' || state FROM pg_stat_replication) AS rows`,
      )
      if (JSON.stringify([...(w!.rows as string[])].sort()) !== JSON.stringify(expected)) return false
      for (const m of readers) {
        const [r] = await within(
          2_000,
          m.inst.admin`SELECT status, received_tli,
            substring(conninfo from 'application_name=([^ ]+)') AS name FROM pg_stat_wal_receiver`,
        )
        if (r?.status !== 'streaming' || r.received_tli !== w!.tli || r.name !== m.inst.appName) return false
      }
      return true
    }
    const settleBy = Date.now() + 5_000
    while (!(await replicationSettled())) {
      if (Date.now() > settleBy) return false
      await sleep(50)
    }
    await dropPublic(writer.inst.admin)
    if ((await fingerprint(writer.inst.admin)) !== this.pristine) return false
    await within(5_000, this.table.write(true), 'the topology table write')
    // Every reader has replayed everything up to now (the drops included).
    const behind = await replayedUpToNow(
      writer.inst.admin,
      readers.map((m) => ({ id: m.inst.id, admin: m.inst.admin })),
    )
    if (behind) return false
    this.endpoints.resolveNow()
    this.events.reset()
    return true
  }

  /**
   * A parked lab (`park`) taken by its next user, with that user's timings (they are read at each
   * use, never kept from bring-up): the writer is probed again.
   */
  async adopt(timing: LabTiming = {}): Promise<void> {
    for (const name of ['promoteAfterMs', 'endpointLagMs', 'probeTimeoutMs'] as const) {
      const value = timing[name]
      if (value !== undefined) this.options[name] = value
    }
    this.health.start()
    await this.lifecycle.waitForWriter(10_000)
  }

  kill(target: string): Promise<void> {
    return this.faults.kill(target)
  }
  freeze(target: string): Promise<void> {
    return this.faults.freeze(target)
  }
  stop(target: string): Promise<void> {
    return this.faults.stop(target)
  }
  blackhole(target: string): Promise<void> {
    return this.faults.blackhole(target)
  }
  latency(target: string, ms: number): Promise<void> {
    return this.faults.latency(target, ms)
  }
  heal(target?: string): Promise<void> {
    return this.faults.heal(target)
  }
  start(id: string): Promise<void> {
    return this.lifecycle.start(id)
  }
  switchover(id?: string): Promise<void> {
    return this.lifecycle.switchover(id)
  }
  waitForWriter(timeoutMs = 30_000): Promise<LabNode> {
    return this.lifecycle.waitForWriter(timeoutMs)
  }
  addReader(): Promise<LabNode> {
    return this.membership.addReader()
  }
  remove(id: string): Promise<void> {
    return this.membership.remove(id)
  }

  status(): LabStatus {
    const o = this.options
    const c = this.c
    return {
      dir: o.dir,
      dialect: o.dialect,
      manager: 'lab',
      port: c.port,
      database: DATABASE,
      user: APP_USER,
      password: APP_PASSWORD,
      nodes: [...c.members.values()].map((m) => c.nodeOf(m)),
      writer: c.writer,
      clusterEndpoint: { host: CLUSTER_HOST, port: c.port },
      readerEndpoint: { host: READER_HOST, port: c.port },
      instanceHostPattern: hostPattern(o.dialect),
      events: this.events.events,
      options: {
        nodes: o.nodes,
        manager: 'lab',
        dialect: o.dialect,
        promoteAfterMs: o.promoteAfterMs,
        endpointLagMs: o.endpointLagMs,
        probeTimeoutMs: o.probeTimeoutMs,
        async: o.async,
      },
      pgVersion: c.bin?.version ?? '',
      pgBin: c.bin?.dir ?? '',
      targets: { upMs: Math.round(this.upMs), upTargetMs: 10_000, killToWriterReadyTargetMs: 1500 },
    }
  }

  /** Internal ports and data directories, for the crash-safe `down`. */
  processes(): { id: string; pgPort: number; dataDir: string }[] {
    return [...this.c.members.values()].map((m) => ({
      id: m.inst.id,
      pgPort: m.inst.pgPort,
      dataDir: m.inst.dataDir,
    }))
  }

  /** Kills every server, closes every endpoint; removes the data (or the whole folder). */
  async down(removeDir: boolean): Promise<void> {
    const c = this.c
    c.closed = true
    c.clearTimers()
    this.health.stop()
    const postmasters: number[] = []
    for (const m of c.members.values()) {
      m.gate.closeAll()
      await m.inst.closeAdmin()
      if (m.inst.pid) postmasters.push(m.inst.pid)
      await m.inst.kill()
    }
    // Also when no startLab() caller runs forceDown after this (its process died, or a deno bench
    // ended): killed servers leave their System V segments behind (shared-memory.ts).
    await releaseSegmentsOf(postmasters)
    this.endpoints.close()
    removeTree(removeDir ? this.options.dir : join(this.options.dir, 'data'))
  }
}
