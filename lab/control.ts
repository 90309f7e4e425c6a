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
import type { ControlPlane } from './control-plane.ts'
import { emulationSql, hostPattern } from './emulation.ts'
import { CLUSTER_HOST, Endpoints, READER_HOST } from './endpoints.ts'
import { EventLog } from './events.ts'
import { Faults } from './faults.ts'
import { Health } from './health.ts'
import { APP_PASSWORD, APP_USER, DATABASE } from './instance.ts'
import { Lifecycle } from './lifecycle.ts'
import { FIRST_OCTET, Membership, newMember } from './membership.ts'
import { chownR, findPgBin, removeTree } from './pg-bin.ts'
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
    this.health.start()
    this.upMs = performance.now() - started
    this.events.emit('up', undefined, { ms: Math.round(this.upMs), nodes: o.nodes, pg: c.bin.version })
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
