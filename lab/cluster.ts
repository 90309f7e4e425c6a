/**
 * The control plane's shared state: the instances and what it believes about each, the writer,
 * a lost writer waiting for its replacement, and the replication configuration derived from them.
 * The parts of the control plane (endpoints, topology table, health and promotion, faults,
 * lifecycle) each own their own mechanics and read and change this state.
 *
 * @module
 */
import type { Server } from 'node:net'
import type { EventLog } from './events.ts'
import type { Instance } from './instance.ts'
import type { PgBin } from './pg-bin.ts'
import type { Gate, StartupHandler } from './proxy.ts'
import type { LabDialect, LabManager, LabNode } from './types.ts'

/** Options after defaults; `dir` and `port` resolved. */
export interface ControlOptions {
  nodes: number
  manager: LabManager
  dialect: LabDialect
  promoteAfterMs: number
  endpointLagMs: number
  probeTimeoutMs: number
  async: boolean
  dir: string
  port?: number
  startup?: StartupHandler
}

export type Role = LabNode['role']

export interface Member {
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

/**
 * The lost writer, waiting for a promotion. `candidates`: the readers that were running at the
 * loss, so had every commit it acknowledged (synchronous replication); only they may replace it.
 */
export interface LostWriter {
  id: string
  timer?: ReturnType<typeof setTimeout>
  reason: string
  candidates: Set<string>
}

export class Cluster {
  readonly members = new Map<string, Member>()
  writer: string | null = null
  lost: LostWriter | null = null
  /**
   * An instance being made the writer (promoted, or restarted as the writer): the probe leaves it
   * alone until the operation ends; it is judged from then on, never from an older answer.
   */
  settling: string | null = null
  /** The readers in the writer's `synchronous_standby_names`: one of them has each commit. */
  syncSet = new Set<string>()
  bin!: PgBin
  /** The port every endpoint listens on. */
  port = 0
  closed = false
  private timers = new Set<ReturnType<typeof setTimeout>>()

  constructor(
    readonly options: ControlOptions,
    readonly events: EventLog,
    readonly log: (m: string) => void,
  ) {}

  member(target: string): Member {
    const id = target === 'writer' ? this.writer : target
    if (!id) throw new Error('the cluster has no writer right now')
    const m = this.members.get(id)
    if (!m)
      throw new Error(
        `unknown instance "${target}"; instances: ${[...this.members.keys()].join(', ')}, writer`,
      )
    return m
  }

  readers(filter: (m: Member) => boolean = () => true): Member[] {
    return [...this.members.values()].filter((m) => m.role === 'reader' && filter(m))
  }

  /** A timer cleared by `clearTimers` (at `down`). */
  later(ms: number, fn: () => void): ReturnType<typeof setTimeout> {
    const t = setTimeout(() => {
      this.timers.delete(t)
      fn()
    }, ms)
    this.timers.add(t)
    return t
  }

  clearTimers(): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    if (this.lost?.timer) clearTimeout(this.lost.timer)
  }

  /**
   * Everything but the writer runs as a standby: with no writer (all lost), it follows the lost
   * writer, which is the writer again if it comes back, and stays read-only until then.
   */
  configFor(m: Member) {
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
  refreshSync(): void {
    const w = this.writer ? this.members.get(this.writer) : undefined
    if (!w?.inst.running) return
    w.inst.writeConfig(this.configFor(w), true)
    w.inst.reload()
  }

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
}
