/**
 * The failover lab's programmatic API: a local PostgreSQL cluster that fails over like Aurora,
 * with fault injection, for tests, benchmarks and demos on Node, Deno and Bun. The cluster, its
 * control plane and its fault proxies run in a background Node process; this module talks to it.
 *
 * @example
 * ```ts
 * import postgres from 'postgres'
 * import { startLab } from './lab/mod.ts'
 *
 * await using lab = await startLab({ nodes: 3 })
 * const sql = postgres(lab.url('cluster'))
 * const before = nowMs()
 * await lab.kill('writer')
 * const ready = await lab.waitForEvent('writer-ready', { afterMs: before })
 * await sql.end()
 * ```
 *
 * @module
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { call, forceDown, readLabFile, spawnDaemon } from './client.ts'
import type { LabFile } from './daemon.ts'
import { labRoot, staleLabs } from './scratch.ts'
import type { LabEvent, LabNode, LabOptions, LabStatus } from './types.ts'

export { atOrAfter, CLOCK_SLACK_MS, nowMs } from './clock.ts'
export type { StartupHandler } from './proxy.ts'
export type {
  LabDialect,
  LabEvent,
  LabManager,
  LabNode,
  LabOptions,
  LabStatus,
  LabTargets,
  PatroniLabInfo,
} from './types.ts'

/** Which endpoint `url()` points at: the cluster endpoint, the reader endpoint, or an instance id. */
export type LabTarget = 'cluster' | 'reader' | (string & {})

/** A running lab. Every method is a request to its control plane. */
export interface Lab extends AsyncDisposable {
  /** The lab's folder. */
  readonly dir: string
  status(): Promise<LabStatus>
  /** `postgres://user:password@host:port/db` of an endpoint (default: the cluster endpoint). */
  url(target?: LabTarget): string
  /** SIGKILL of the instance's postmaster and every backend at once (`'writer'`: the current one). */
  kill(target: string): Promise<void>
  /** SIGSTOP of every process of the instance; `heal` resumes it (or fences a replaced writer). */
  freeze(target: string): Promise<void>
  /** Clean (fast) shutdown. */
  stop(target: string): Promise<void>
  /** Starts a stopped or killed instance; it rejoins as a reader unless it still is the writer. */
  start(id: string): Promise<void>
  /** Graceful: the writer stops cleanly, `id` (default: the most advanced reader) is promoted. */
  switchover(id?: string): Promise<void>
  /** The instance endpoint accepts and holds connections, moving no byte either way. */
  blackhole(target: string): Promise<void>
  /** Delays every chunk through the instance endpoint by `ms`, both directions. */
  latency(target: string, ms: number): Promise<void>
  /** Removes faults (and resumes frozen instances) of one instance or of all. */
  heal(target?: string): Promise<void>
  /**
   * Adds a reader to the running cluster: the next free id (`127.0.0.14` after three nodes), a base
   * backup of the writer, streaming, with its instance endpoint, in the topology (Aurora and RDS
   * emulation) and behind the reader endpoint. Resolves with its node once the topology lists it.
   */
  addReader(): Promise<LabNode>
  /** Removes a reader (or a down instance): clean shutdown, out of the topology, endpoint closed, data deleted. */
  remove(id: string): Promise<void>
  events(): Promise<LabEvent[]>
  /** The first event of `type` at or after `afterMs` (default: any time), waiting up to `timeoutMs`. */
  waitForEvent(
    type: string,
    opts?: { afterMs?: number; timeoutMs?: number; node?: string },
  ): Promise<LabEvent>
  /** Waits for a writable writer with every running reader streaming from it. */
  waitForWriter(opts?: { timeoutMs?: number }): Promise<LabNode>
  /** Kills everything, removes the lab's data; idempotent. */
  down(): Promise<void>
}

class RemoteLab implements Lab {
  private downed?: Promise<void>
  /** Instance ids `url()` accepts: the initial ones and those added since. */
  private readonly ids: Set<string>

  constructor(
    readonly dir: string,
    private readonly file: LabFile,
    private readonly initial: LabStatus,
  ) {
    this.ids = new Set(initial.nodes.map((n) => n.id))
  }

  private op(op: string, ...args: unknown[]): Promise<any> {
    if (this.downed) return Promise.reject(new Error('the lab is down'))
    return call(this.file, op, args)
  }

  status(): Promise<LabStatus> {
    return this.op('status')
  }

  url(target: LabTarget = 'cluster'): string {
    const s = this.initial
    const host =
      target === 'cluster' ? s.clusterEndpoint.host : target === 'reader' ? s.readerEndpoint.host : target
    if (target !== 'cluster' && target !== 'reader' && !this.ids.has(target)) {
      throw new Error(`unknown target "${target}"; use cluster, reader or one of ${[...this.ids].join(', ')}`)
    }
    return `postgres://${s.user}:${encodeURIComponent(s.password)}@${host}:${s.port}/${s.database}`
  }

  kill(target: string): Promise<void> {
    return this.op('kill', target)
  }
  freeze(target: string): Promise<void> {
    return this.op('freeze', target)
  }
  stop(target: string): Promise<void> {
    return this.op('stop', target)
  }
  start(id: string): Promise<void> {
    return this.op('start', id)
  }
  switchover(id?: string): Promise<void> {
    return this.op('switchover', id)
  }
  blackhole(target: string): Promise<void> {
    return this.op('blackhole', target)
  }
  latency(target: string, ms: number): Promise<void> {
    return this.op('latency', target, ms)
  }
  heal(target?: string): Promise<void> {
    return this.op('heal', target)
  }
  async addReader(): Promise<LabNode> {
    const node = (await this.op('addReader')) as LabNode
    this.ids.add(node.id)
    return node
  }
  remove(id: string): Promise<void> {
    return this.op('remove', id)
  }
  events(): Promise<LabEvent[]> {
    return this.op('events')
  }
  waitForEvent(type: string, opts: { afterMs?: number; timeoutMs?: number; node?: string } = {}) {
    return this.op('waitForEvent', type, opts)
  }
  waitForWriter(opts: { timeoutMs?: number } = {}): Promise<LabNode> {
    return this.op('waitForWriter', opts)
  }

  down(): Promise<void> {
    this.downed ??= forceDown(this.dir)
    return this.downed
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.down()
  }
}

function validate(o: LabOptions): void {
  const int = (name: keyof LabOptions, min: number, max: number) => {
    const v = o[name]
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)) {
      throw new RangeError(`LabOptions.${name} must be an integer from ${min} to ${max}, got ${String(v)}`)
    }
  }
  int('nodes', 1, 9)
  int('promoteAfterMs', 0, 600_000)
  int('endpointLagMs', 0, 3_600_000)
  int('probeTimeoutMs', 100, 600_000)
  int('port', 1, 65535)
  if (o.dialect !== undefined && !['aurora-pg', 'rds-multi-az-pg', 'pg'].includes(o.dialect)) {
    throw new RangeError(
      `LabOptions.dialect must be aurora-pg, rds-multi-az-pg or pg, got ${String(o.dialect)}`,
    )
  }
  if (o.manager !== undefined && o.manager !== 'lab' && o.manager !== 'patroni') {
    throw new RangeError(`LabOptions.manager must be lab or patroni, got ${String(o.manager)}`)
  }
  if (o.manager === 'patroni') {
    // Patroni decides promotion timing itself (ttl 10, loop_wait 1) and has no endpoints.
    const own = ['promoteAfterMs', 'endpointLagMs', 'probeTimeoutMs', 'proxyStartupModule'] as const
    for (const name of own) {
      if (o[name] !== undefined) throw new RangeError(`LabOptions.${name} does not apply to manager patroni`)
    }
    if (o.dialect !== undefined && o.dialect !== 'pg') {
      throw new RangeError(`LabOptions.dialect must be pg (or absent) with manager patroni, got ${o.dialect}`)
    }
  }
}

/** Fills defaults; `removeDir` when the lab's folder is ours to delete. */
export function daemonConfig(options: LabOptions, ownerPid?: number) {
  validate(options)
  const dir =
    options.dir ??
    join(labRoot(), `run-${process.pid}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`)
  const patroni = options.manager === 'patroni'
  return {
    nodes: options.nodes ?? 3,
    manager: options.manager ?? 'lab',
    dialect: options.dialect ?? (patroni ? 'pg' : 'aurora-pg'),
    promoteAfterMs: options.promoteAfterMs ?? 1000,
    endpointLagMs: options.endpointLagMs ?? 30_000,
    probeTimeoutMs: options.probeTimeoutMs ?? 1000,
    async: options.async ?? false,
    dir,
    ...(options.port ? { port: options.port } : {}),
    ...(options.proxyStartupModule ? { proxyStartupModule: options.proxyStartupModule } : {}),
    ...(ownerPid ? { ownerPid } : {}),
    removeDir: options.dir === undefined,
  }
}

/**
 * Starts a lab and resolves once its writer accepts writes and every reader streams. The lab is
 * torn down by `down()` / `await using`, and also when the calling process dies.
 *
 * @example
 * ```ts
 * await using lab = await startLab({ dialect: 'rds-multi-az-pg', endpointLagMs: 0 })
 * ```
 */
export async function startLab(options: LabOptions = {}): Promise<Lab> {
  if (options.dir === undefined) {
    for (const stale of staleLabs(labRoot())) {
      await forceDown(stale)
      rmSync(stale, { recursive: true, force: true })
    }
  }
  // Ports are found free and bound by PostgreSQL a moment later: another process (a test job
  // running beside this one) can take one in between. Such a start is tried again on new ports.
  for (let attempt = 1; ; attempt++) {
    const config = daemonConfig(options, process.pid)
    try {
      const file = await spawnDaemon(config)
      const status = (await call(file, 'status')) as LabStatus
      return new RemoteLab(config.dir, file, status)
    } catch (error) {
      if (attempt >= 3 || !/Address already in use/.test(String((error as Error | undefined)?.message)))
        throw error
    }
  }
}

/**
 * For test harnesses that hand a lab from one test file to the next (tests/helpers/shared-lab.ts):
 * readies `lab` for another user (lab/pool.ts says when a lab qualifies). True once parked: it no
 * longer belongs to this process, and goes down by itself if nobody adopts it within 60 s. False
 * when it must be taken down (`down()`) instead.
 */
export async function parkLab(lab: Lab): Promise<boolean> {
  const file = readLabFile(lab.dir)
  if (!file?.ready) return false
  return (await call(file, 'park', [], 30_000)) === true
}

/**
 * Takes the lab parked in `dir` (`parkLab`) for this process, after checking again that it is as a
 * fresh one, with `options`' timings (promoteAfterMs, endpointLagMs, probeTimeoutMs; the lab reads
 * them at each use); rejects when it is not parked or no longer qualifies (then take it down with
 * `forceDown`).
 */
export async function adoptLab(dir: string, options: LabOptions = {}): Promise<Lab> {
  const file = readLabFile(dir)
  if (!file?.ready) throw new Error(`no lab in ${dir}`)
  const { promoteAfterMs, endpointLagMs, probeTimeoutMs } = daemonConfig(options)
  const timing = { promoteAfterMs, endpointLagMs, probeTimeoutMs }
  const status = (await call(file, 'adopt', [process.pid, timing], 30_000)) as LabStatus
  return new RemoteLab(dir, file, status)
}
