/**
 * The topology monitor of one cluster, shared by every client of that cluster in the process.
 * It polls slowly when all is calm and fast after any sign of trouble until the topology settles,
 * reads from whichever host answers, and never keeps the process alive.
 *
 * @module
 */

import type { Runtime } from '../runtime/runtime.ts'
import type { TimerHandle } from '../runtime/timers.ts'
import type { ConnectionFactory, DbConnection } from './connection-factory.ts'
import { type Dialect, type DialectDetector, readRole, type TopologyContext } from './dialect.ts'
import { type HostAddress, hostKey } from './host.ts'
import type { HostPattern } from './host-pattern.ts'
import { InstanceReachability } from './instance-reachability.ts'
import { JoiningHosts } from './joining-hosts.ts'
import type { Logger } from './logger.ts'
import { makeTopology, sameShape, type Topology } from './topology.ts'

/** How a monitor polls; fixed by the first client of the cluster. */
export interface TopologyMonitorConfig {
  readonly clusterId: string
  /** A dialect, or `undefined` to detect it on the first connection. */
  readonly dialect: Dialect | undefined
  readonly hostPattern: HostPattern
  readonly initialHosts: readonly HostAddress[]
  readonly defaultPort: number
  readonly refreshMs: number
  readonly fastRefreshMs: number
  readonly probeTimeoutMs: number
  /** Time and timers (the first client's: the monitor is shared, its timers are its own). */
  readonly runtime: Runtime
  readonly logger: Logger
  /** The first client's validated options, where dialects read their own. */
  readonly options: Readonly<Record<string, unknown>>
  /** Tells the dialect when none is given. */
  readonly detect: DialectDetector
}

/** A client of the monitor: lends its connection factory and hears about changes. */
export interface TopologySubscriber {
  readonly factory: ConnectionFactory
  onTopology(topology: Topology, previous: Topology | undefined): void
}

/**
 * With one host and nothing that knows the others (`pg`), a failover can only wait for that host
 * to be a writer again: said once per monitor, with the fixes.
 */
export function warnSingleHost(config: Pick<TopologyMonitorConfig, 'initialHosts' | 'logger'>): void {
  if (config.initialHosts.length !== 1 || warned.has(config)) return
  warned.add(config)
  const host = hostKey(config.initialHosts[0]!)
  config.logger.warn(
    `dialect pg with one host (${host}) and no discovery source: after a failover this client can only ` +
      'wait for that host to be the writer again. List every host of the cluster ' +
      "(postgres://user@db1:5432,db2:5432,db3:5432/db), or on Patroni use dialect: 'patroni' " +
      '(REST API on patroniRestPort, default 8008, or patroniUrls).',
    { host },
  )
}
const warned = new WeakSet<object>()

/** Consecutive identical readings with a writer after which fast polling stops. */
const SETTLE_READS = 3

/**
 * The longest pause between reads while every read fails. A persistent error (the wrong dialect,
 * a missing permission) must not open connections at the fast rate forever; a cluster that is
 * down for a while is still looked at every few seconds.
 */
const MAX_ERROR_BACKOFF_MS = 5_000

/** Distinct ignored topology rows logged per monitor; a flood of bad rows is not a flood of lines. */
const MAX_IGNORED_LOGGED = 50

/**
 * Polls one cluster's topology for all its subscribers.
 *
 * @example
 * ```ts
 * const monitor = new TopologyMonitor(config)
 * monitor.subscribe(subscriber)
 * const topology = await monitor.refresh()
 * ```
 */
export class TopologyMonitor {
  readonly config: TopologyMonitorConfig
  #dialect: Dialect | undefined
  #current: Topology | undefined
  #conn: DbConnection | undefined
  #probes = new Map<string, DbConnection>()
  #inflight: Promise<Topology | undefined> | undefined
  #subscribers = new Set<TopologySubscriber>()
  #timer: TimerHandle | undefined
  #fast = false
  #stableReads = 0
  /** Reads in a row that failed on every host. */
  #failedReads = 0
  /** The error last logged, so that a persistent one is logged once. */
  #loggedError: string | undefined
  /** Ignored topology rows already logged. */
  #ignored = new Set<string>()
  #stopped = false
  #connecting = 0
  /** Listed hosts whose role was never known: read again sooner while they join. */
  readonly #joining = new JoiningHosts()
  readonly #reachability: InstanceReachability
  /** Number of topology statements sent, for tests and the idle benchmark. */
  reads = 0
  /** Why the last read failed on every host, cleared by a successful read. */
  lastError: unknown

  constructor(config: TopologyMonitorConfig) {
    this.config = config
    this.#dialect = config.dialect
    this.#reachability = new InstanceReachability({
      ...config,
      clock: config.runtime,
      pattern: config.hostPattern.source,
    })
    if (config.dialect?.name === 'pg') warnSingleHost(config)
  }

  /** The latest reading, if any. */
  get current(): Topology | undefined {
    return this.#current
  }

  /** The dialect in use, once known. */
  get dialect(): Dialect | undefined {
    return this.#dialect
  }

  /** Whether the monitor is polling fast. */
  get fast(): boolean {
    return this.#fast
  }

  /** How many clients use this monitor. */
  get subscriberCount(): number {
    return this.#subscribers.size
  }

  subscribe(subscriber: TopologySubscriber): void {
    this.#subscribers.add(subscriber)
    if (!this.#timer && !this.#stopped) this.#schedule(this.#nextDelay())
  }

  /** Removes a client; the last one out stops the monitor. Returns true when it stopped. */
  unsubscribe(subscriber: TopologySubscriber): boolean {
    this.#subscribers.delete(subscriber)
    if (this.#subscribers.size > 0) return false
    this.stop()
    return true
  }

  /** Polls fast until the topology settles. */
  requestFastPolling(reason: string): void {
    if (this.#stopped) return
    if (!this.#fast)
      this.config.logger.debug('topology: polling fast', { cluster: this.config.clusterId, reason })
    this.#fast = true
    this.#stableReads = 0
    this.config.runtime.stopTimer(this.#timer)
    this.#schedule(0)
  }

  /** Reads the topology now; concurrent calls share one read. */
  refresh(): Promise<Topology | undefined> {
    if (this.#stopped) return Promise.resolve(this.#current)
    this.#inflight ??= this.#read().finally(() => {
      this.#inflight = undefined
    })
    return this.#inflight
  }

  /** Stops polling and closes the monitor's connections. */
  stop(): void {
    this.#stopped = true
    this.config.runtime.stopTimer(this.#timer)
    this.#timer = undefined
    this.#conn?.abort()
    this.#conn = undefined
    for (const c of this.#probes.values()) c.abort()
    this.#probes.clear()
  }

  #schedule(ms: number): void {
    this.#timer = this.config.runtime.startTimer(() => {
      this.#timer = undefined
      void this.refresh().finally(() => {
        if (!this.#stopped && !this.#timer && this.#subscribers.size > 0) this.#schedule(this.#nextDelay())
      })
    }, ms)
  }

  /** Calm, fast, or backing off after failed reads (doubling from the fast rate). */
  #nextDelay(): number {
    const { fastRefreshMs, refreshMs } = this.config
    if (this.#failedReads > 0) {
      const cap = Math.min(refreshMs, Math.max(fastRefreshMs, MAX_ERROR_BACKOFF_MS))
      return Math.min(cap, fastRefreshMs * 2 ** Math.min(this.#failedReads - 1, 20))
    }
    if (this.#fast) return fastRefreshMs
    return this.#joining.delay(refreshMs) ?? refreshMs
  }

  #factory(): ConnectionFactory | undefined {
    for (const s of this.#subscribers) return s.factory
    return undefined
  }

  /** Hosts to read from, best first: the open connection's, the writer, the other known hosts, the listed ones. */
  #candidates(): HostAddress[] {
    const seen = new Set<string>()
    const out: HostAddress[] = []
    const add = (h: HostAddress | undefined) => {
      if (h && !seen.has(hostKey(h))) {
        seen.add(hostKey(h))
        out.push({ host: h.host, port: h.port })
      }
    }
    add(this.#conn && !this.#conn.closed ? this.#conn.host : undefined)
    add(this.#current?.writer)
    for (const h of this.#current?.readers ?? []) if (h.role !== 'unknown') add(h)
    for (const h of this.config.initialHosts) add(h)
    return out
  }

  /** Whether a topology read is opening its connection now (bounded by `probeTimeoutMs`). */
  get connecting(): boolean {
    return this.#connecting > 0
  }

  async #read(): Promise<Topology | undefined> {
    const factory = this.#factory()
    if (!factory) return this.#current
    let lastError: unknown
    for (const host of this.#candidates()) {
      if (this.#stopped) return this.#current
      try {
        const conn = await this.#connection(factory, host)
        this.#dialect ??= await this.#detect(conn)
        this.reads++
        const hosts = await this.#dialect.readTopology(conn, this.#context(factory))
        if (hosts.length === 0) throw new Error(`${hostKey(host)} reported an empty topology`)
        if (!(await this.#reachability.usable(factory, host, hosts))) {
          // Not a failed read: the listed host answers and is used as it is, polled at the calm pace.
          this.lastError = undefined
          this.#readSucceeded()
          this.#fast = false
          return this.#current
        }
        this.lastError = undefined
        this.#readSucceeded()
        this.#accept(makeTopology(this.config.clusterId, hosts, this.config.runtime.wallNow(), hostKey(host)))
        return this.#current
      } catch (error) {
        lastError = error
        // A statement the server refused (no such function, no permission) leaves a good
        // connection: keep it rather than log in again for the next read.
        const kind = factory.classify(error)
        const broken = kind === 'connection-lost' || kind === 'connect-failed'
        if (broken && this.#conn && hostKey(this.#conn.host) === hostKey(host)) {
          this.#conn.abort()
          this.#conn = undefined
        }
      }
    }
    this.lastError = lastError
    this.#readFailed(lastError)
    return this.#current
  }

  /** Logs an ignored topology row once (the same row comes back on every read). */
  #ignoredRow(reason: string): void {
    if (this.#ignored.has(reason)) return
    if (this.#ignored.size >= MAX_IGNORED_LOGGED) return
    this.#ignored.add(reason)
    this.config.logger.warn('topology: row ignored', { cluster: this.config.clusterId, reason })
  }

  #readSucceeded(): void {
    if (this.#failedReads > 0 && this.#loggedError !== undefined)
      this.config.logger.info('topology: read again', { cluster: this.config.clusterId })
    this.#failedReads = 0
    this.#loggedError = undefined
  }

  /** Backs off, and logs a persistent error once (again only if it changes). */
  #readFailed(error: unknown): void {
    this.#failedReads++
    this.#fast = true
    this.#stableReads = 0
    const message = String((error as Error)?.message ?? error)
    if (message !== this.#loggedError) {
      this.#loggedError = message
      this.config.logger.warn('topology: no host answered the topology read; retrying with back-off', {
        cluster: this.config.clusterId,
        dialect: this.#dialect?.name,
        error: message,
      })
    }
    // A read outside the timer (the first statement, a failover) must not leave the next one
    // scheduled for the calm interval.
    if (!this.#stopped && this.#subscribers.size > 0) {
      this.config.runtime.stopTimer(this.#timer)
      this.#schedule(this.#nextDelay())
    }
  }

  async #connection(factory: ConnectionFactory, host: HostAddress): Promise<DbConnection> {
    // Reused or new, every statement on it is bounded: a frozen host must not stall polling.
    if (this.#conn && !this.#conn.closed && hostKey(this.#conn.host) === hostKey(host))
      return this.#wrapTimeout(this.#conn)
    this.#conn?.abort()
    this.#conn = undefined
    this.#connecting++
    const conn = await factory
      .connect({ host, purpose: 'topology', timeoutMs: this.config.probeTimeoutMs })
      .finally(() => this.#connecting--)
    if (this.#stopped) {
      conn.abort()
      throw new Error('topology monitor stopped')
    }
    this.#conn = conn
    return this.#wrapTimeout(conn)
  }

  /** Bounds every topology statement by the probe timeout so a frozen host can't stall polling. */
  #wrapTimeout(conn: DbConnection): DbConnection {
    const timeoutMs = this.config.probeTimeoutMs
    return {
      host: conn.host,
      get closed() {
        return conn.closed
      },
      query: (text, params, options) => conn.query(text, params, { timeoutMs, ...options }),
      close: () => conn.close(),
      abort: () => conn.abort(),
    }
  }

  #context(factory: ConnectionFactory): TopologyContext {
    return {
      hostPattern: this.config.hostPattern,
      defaultPort: this.config.defaultPort,
      initialHosts: this.config.initialHosts,
      knownHosts: this.#current?.hosts ?? [],
      probeTimeoutMs: this.config.probeTimeoutMs,
      options: this.config.options,
      probeRole: (host) =>
        this.#onProbe(factory, host, (conn) =>
          readRole(conn, { timeoutMs: this.config.probeTimeoutMs }),
        ).catch(() => 'unknown' as const),
      probe: (host, text) =>
        this.#onProbe(factory, host, (conn) =>
          conn.query(text, [], { timeoutMs: this.config.probeTimeoutMs }),
        ),
      ignoreRow: (reason) => this.#ignoredRow(reason),
    }
  }

  /** The dialect by the cluster's SQL; a plain one asks Patroni's REST API, bounded to a second. */
  async #detect(conn: DbConnection): Promise<Dialect> {
    const timeoutMs = Math.min(this.config.probeTimeoutMs, 1000)
    const dialect = await this.config.detect(conn, this.config.options, timeoutMs)
    this.config.logger.debug('topology: dialect detected', {
      cluster: this.config.clusterId,
      dialect: dialect.name,
    })
    if (dialect.name === 'pg') warnSingleHost(this.config)
    return dialect
  }

  /** Runs `work` on the probe connection of `host` (opened on first use, dropped when it fails). */
  async #onProbe<T>(
    factory: ConnectionFactory,
    host: HostAddress,
    work: (conn: DbConnection) => Promise<T>,
  ): Promise<T> {
    const key = hostKey(host)
    let conn = this.#probes.get(key)
    try {
      if (!conn || conn.closed) {
        conn = await factory.connect({ host, purpose: 'topology', timeoutMs: this.config.probeTimeoutMs })
        if (this.#stopped) {
          conn.abort()
          throw new Error('topology monitor stopped')
        }
        this.#probes.set(key, conn)
      }
      return await work(conn)
    } catch (error) {
      conn?.abort()
      this.#probes.delete(key)
      throw error
    }
  }

  #accept(next: Topology): void {
    const previous = this.#current
    this.#current = next
    const joiningStarted = this.#joining.note(next) && !this.#fast
    const changed = !sameShape(previous, next)
    if (changed || !next.writer) this.#stableReads = 0
    else this.#stableReads++
    if (this.#fast && this.#stableReads >= SETTLE_READS) {
      this.#fast = false
      this.config.logger.debug('topology: settled', { cluster: this.config.clusterId })
    }
    const becameFast = !next.writer && !this.#fast
    if (becameFast) this.#fast = true
    // A read outside the timer (the first statement, a failover) must not leave the next one
    // scheduled for the calm interval: once, whichever of the two asked for sooner reads.
    if ((joiningStarted || becameFast) && this.#timer && !this.#stopped) {
      this.config.runtime.stopTimer(this.#timer)
      this.#schedule(this.#nextDelay())
    }
    if (changed)
      for (const s of [...this.#subscribers]) {
        try {
          s.onTopology(next, previous)
        } catch (error) {
          this.config.logger.warn('topology: a subscriber failed', { error: String(error) })
        }
      }
  }
}
