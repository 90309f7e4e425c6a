/**
 * The core of a postgres-ha client: routes each statement to a host, runs it through the plugins,
 * shares its cluster's topology monitor, and exposes events. Knows nothing of postgres.js.
 *
 * @module
 */

import type { Runtime } from '../runtime/runtime.ts'
import type { TimerHandle } from '../runtime/timers.ts'
import type { PluginConnect } from './connect-contract.ts'
import type { ConnectionFactory, ConnectRequest, DbConnection } from './connection-factory.ts'
import { DefaultReadOnly } from './default-read-only.ts'
import type { Dialect, DialectDetector } from './dialect.ts'
import { DownMarks } from './down-marks.ts'
import type { Driver } from './driver.ts'
import { ClientEndedError, NoReaderAvailableError, NoWriterAvailableError } from './errors.ts'
import { createEvents, type HaEvents } from './events.ts'
import { type ExecuteLane, executeLanes } from './execute-lane.ts'
import type { Attempt, ExecuteRequest, Executor, Lane } from './executor.ts'
import { type HostAddress, type HostInfo, hostKey, sameHost, type TargetRole } from './host.ts'
import type { HostPattern } from './host-pattern.ts'
import { type Logger, safeLogger } from './logger.ts'
import { acquireMonitor, type MonitorLease } from './monitor-registry.ts'
import type { ReaderFallback, ResolvedHaOptions } from './options.ts'
import { type ExecuteChain, executeChain } from './pipeline.ts'
import type { ExecuteContext, HaPlugin, PluginServices } from './plugin.ts'
import { ReadYourWrites, readAfterWrite } from './read-your-writes.ts'
import { lagPollMs, pollLag } from './replica-lag.ts'
import { type ReaderPicker, readerPicker, withinLag } from './routing.ts'
import type { Topology } from './topology.ts'

/** What the driver gives the core. */
export interface HaClientDeps {
  readonly options: ResolvedHaOptions
  /** The plugins, already resolved from names, in order. */
  readonly plugins: readonly HaPlugin[]
  /** The driver: the client's own connections (wrapped with the connect plugins) and the user connections it keeps. */
  readonly driver: Driver
  /** The plugins' connect chain within a deadline, shared with the driver (see `pluginConnect`). */
  readonly connect: PluginConnect
  /** The user's hosts, in order (the cluster endpoint, or every host of a self-managed cluster). */
  readonly initialHosts: readonly HostAddress[]
  readonly clusterId: string
  readonly hostPattern: HostPattern
  readonly dialect: Dialect | undefined
  /** Tells the dialect when `dialect` is undefined (see {@link DialectDetector}). */
  readonly detectDialect: DialectDetector
  /** The user name postgres.js would use; plugins may replace it per connection. */
  readonly user: string
  /**
   * Where the client's own statements meant for readers go when none fits (default: the
   * `readerFallback` option), and libpq's `default_transaction_read_only` check of
   * `target_session_attrs` `read-write`/`read-only` (see session-attrs.ts).
   */
  readonly session?: {
    readonly fallback: ReaderFallback
    readonly checkDefaultReadOnly: 'read-write' | 'read-only' | undefined
  }
}

/**
 * The driver-agnostic client. The postgres.js `sql` surface calls {@link HaClient.execute} for
 * every statement and {@link HaClient.connect} for every new connection.
 *
 * @example
 * ```ts
 * const client = new HaClient(deps)
 * const rows = await client.execute({ kind: 'statement' }, (host, ctx) => runOn(host, ctx))
 * ```
 */
export class HaClient implements Executor {
  readonly events: HaEvents
  readonly logger: Logger
  readonly options: ResolvedHaOptions
  /** Internal connections through the connect plugins. */
  readonly factory: ConnectionFactory
  readonly #deps: HaClientDeps
  /** Time and timers: every wait of the client goes through it. */
  readonly #runtime: Runtime
  readonly #execute: ExecuteChain
  /** The plugins' lanes (core/execute-lane.ts); `undefined`: a plugin has none, no fast path. */
  readonly #lanes: readonly ExecuteLane[] | undefined
  readonly #pickReader: ReaderPicker
  readonly #lease: MonitorLease
  readonly #mainFallback: ReaderFallback
  readonly #checkReadOnly: 'read-write' | 'read-only' | undefined
  readonly #defaultReadOnly: DefaultReadOnly | undefined
  /** Set with `readYourWrites`. */
  readonly readYourWrites: ReadYourWrites | undefined
  readonly #stopLagPolling: (() => void) | undefined
  /** Hosts marked down: a host that came back is tried again meanwhile. */
  readonly #marks: DownMarks
  readonly #ended = new AbortController()
  /** Aborted as soon as `sql.end()` starts: connections it destroys are not a failure to react to. */
  readonly #stopping = new AbortController()
  #writer: HostAddress | undefined
  /** The user the connect plugins last resolved. */
  #user: string
  #ready: Promise<void> | undefined
  #isReady = false
  #connected = false
  #pluginsInit: Promise<void> | undefined
  /** The services handed to plugins. */
  readonly services: PluginServices

  constructor(deps: HaClientDeps) {
    this.#deps = deps
    this.#runtime = deps.options.runtime
    this.#user = deps.user
    this.options = deps.options
    this.logger = safeLogger(deps.options.logger)
    this.events = createEvents((error) =>
      this.logger.warn('an event listener threw', { error: String(error) }),
    )
    this.#execute = executeChain(deps.plugins)
    this.#lanes = executeLanes(deps.plugins)
    this.#pickReader = readerPicker(deps.options.readerHostSelectorStrategy, (host) =>
      deps.driver.connectionCount(host),
    )
    const driver = deps.driver
    this.factory = {
      classify: (e) => driver.classify(e),
      connect: (request) => this.#connectInternal(request),
    }
    this.#marks = new DownMarks({
      runtime: this.#runtime,
      logger: this.logger,
      events: this.events,
      factory: this.factory,
      probeTimeoutMs: deps.options.probeTimeoutMs,
      stopping: this.#stopping.signal,
      ended: this.#ended.signal,
    })
    this.#lease = acquireMonitor(
      {
        clusterId: deps.clusterId,
        dialect: deps.dialect,
        hostPattern: deps.hostPattern,
        initialHosts: deps.initialHosts,
        defaultPort: deps.initialHosts[0]?.port ?? 5432,
        refreshMs: deps.options.topologyRefreshMs,
        fastRefreshMs: deps.options.topologyFastRefreshMs,
        probeTimeoutMs: Math.min(deps.options.probeTimeoutMs, deps.options.connectTimeoutMs),
        runtime: deps.options.runtime,
        logger: this.logger,
        options: deps.options,
        detect: deps.detectDialect,
      },
      { factory: this.factory, onTopology: (t, previous) => this.#onTopology(t, previous) },
    )
    this.services = Object.freeze({
      options: deps.options,
      clock: deps.options.runtime,
      runtime: deps.options.runtime,
      logger: this.logger,
      events: this.events,
      factory: this.factory,
      classify: (e: unknown) => driver.classify(e),
      topology: () => this.topology(),
      refreshTopology: () => this.#lease.monitor.refresh(),
      requestFastPolling: (reason: string) => this.#lease.monitor.requestFastPolling(reason),
      currentWriter: () => this.#writer,
      setWriter: (host: HostAddress) => this.#setWriter(host, 'failover'),
      abortHost: (host: HostAddress, reason: string) => {
        if (driver.dropHost(host, reason))
          this.logger.debug('connections dropped', { host: hostKey(host), reason })
      },
      warmHost: (host: HostAddress, like?: HostAddress) => driver.warmHost(host, like),
      connectedHosts: () => driver.connectedHosts(),
      markHostDown: (host: HostAddress, reason: string) => this.#marks.markDown(host, reason),
      markHostUp: (host: HostAddress) => this.#marks.markUp(host),
      isHostDown: (host: HostAddress) => this.#marks.isDown(host),
      hasConnected: () => this.#connected,
      dialect: () => this.#lease.monitor.dialect?.name,
      endSignal: this.#stopping.signal,
    })
    this.#mainFallback = deps.session?.fallback ?? deps.options.readerFallback
    this.#checkReadOnly = deps.session?.checkDefaultReadOnly
    if (this.#checkReadOnly)
      this.#defaultReadOnly = new DefaultReadOnly(this.factory, this.services.options.probeTimeoutMs)
    if (deps.options.readYourWrites)
      this.readYourWrites = new ReadYourWrites({
        factory: this.factory,
        writer: () => this.#writer,
        timeoutMs: deps.options.readYourWritesTimeoutMs,
        probeTimeoutMs: deps.options.probeTimeoutMs,
        runtime: deps.options.runtime,
        signal: this.#ended.signal,
      })
    const { maxReplicaLagMs, readerHostSelectorStrategy } = deps.options
    if (maxReplicaLagMs !== undefined || readerHostSelectorStrategy === 'lowestLag')
      this.#stopLagPolling = pollLag(
        () => this.#lease.monitor.refresh(),
        lagPollMs(maxReplicaLagMs),
        deps.options.runtime,
      )
    const current = this.#lease.monitor.current
    if (current) this.#onTopology(current, undefined)
  }

  /**
   * An internal connection (topology, probe, monitor, recheck) through the connect plugins, within
   * one deadline of `request.timeoutMs` that includes the plugins (IAM signing, a Secrets Manager
   * read): a plugin that never answers must not wedge the caller (see `connectWithin`).
   */
  async #connectInternal(request: ConnectRequest): Promise<DbConnection> {
    const driver = this.#deps.driver
    let conn: DbConnection | undefined
    const start = {
      host: request.host,
      purpose: request.purpose,
      user: request.user ?? this.#deps.user,
      password: request.password,
    }
    const ctx = await this.#deps.connect(
      start,
      async (login, timeoutMs) => {
        conn = await driver.connect({ ...request, ...login, timeoutMs })
        return () => conn?.abort()
      },
      request.timeoutMs,
    )
    // The first topology read runs before any user connection, so the pools learn the user in time.
    if (ctx.user !== this.#user) {
      this.#user = ctx.user
      this.#deps.driver.switchUser(ctx.user)
    }
    return conn!
  }

  /** The latest topology reading of this client's cluster. */
  topology(): Topology | undefined {
    return this.#lease.monitor.current
  }

  /** The host writer-bound statements go to now. */
  writer(): HostAddress | undefined {
    return this.#writer
  }

  /** The shared monitor (tests and benchmarks count its reads). */
  get monitor(): MonitorLease['monitor'] {
    return this.#lease.monitor
  }

  /** Whether `sql.end()` was called. */
  get ended(): boolean {
    return this.#ended.signal.aborted
  }

  /** Runs a unit of work through the plugins on the host routing chooses. */
  execute<T>(request: ExecuteRequest, attempt: Attempt<T>): Promise<T> {
    if (this.#ended.signal.aborted) return Promise.reject(new ClientEndedError())
    const ctx: ExecuteContext = {
      kind: request.kind,
      targetRole: request.targetRole ?? this.options.targetRole,
      host: request.pinnedHost,
      inTransaction: request.inTransaction ?? false,
      sent: false,
      delivered: false,
      attempt: 0,
      description: request.description ?? '',
    }
    const run = this.#runner(request, ctx, attempt)
    const done = this.#isReady ? this.#execute(ctx, run) : this.ready().then(() => this.#execute(ctx, run))
    // Whatever settled on the writer may have committed; it costs the write nothing but a count.
    if (this.readYourWrites && request.forReader !== true && request.kind !== 'listen') {
      const ryw = this.readYourWrites
      return done.finally(() => ryw.noteWrite())
    }
    return done
  }

  /**
   * The fast path (core/execute-lane.ts) for work bound for the writer once the client is ready
   * and has connected: no reader routing, no read-your-writes, no host pinned but the writer, no `read-write`
   * check left to make, and every plugin's lane open. The first attempt then runs on the writer
   * the chain's `run` would have picked. The lane is the attempt's context too: one object per
   * statement.
   */
  lane(request: ExecuteRequest): Lane | undefined {
    const lanes = this.#lanes
    if (
      !this.#laneOpen ||
      request.forReader === true ||
      (request.targetRole ?? this.options.targetRole) !== 'writer'
    )
      return undefined
    // What route('writer') gives.
    const host = this.#writer ?? this.#deps.initialHosts[0]!
    // A reserved connection's first attempt runs where it is pinned: on the lane only if that is the writer.
    if (request.pinnedHost !== undefined && !sameHost(request.pinnedHost, host)) return undefined
    if (this.#checkReadOnly === 'read-write' && this.#defaultReadOnly!.known(host) !== false) return undefined
    const lane = new StatementLane(request, host, lanes!, this.#resume)
    for (let i = 0; i < lanes!.length; i++) if (!lanes![i]!.open(lane)) return undefined
    lane.start()
    return lane
  }

  /**
   * Whether the lane may be open at all: every plugin has one, the client is ready and connected,
   * no read-your-writes, and `sql.end()` has not been called. One field, so that the check per
   * statement is one read; {@link HaClient.#updateLane} keeps it.
   */
  #laneOpen = false
  #updateLane(): void {
    this.#laneOpen =
      this.#lanes !== undefined &&
      this.#isReady &&
      this.#connected &&
      this.readYourWrites === undefined &&
      !this.#ended.signal.aborted
  }

  /** A lane's first attempt failed: unwinds as the chain would, the innermost plugin first. */
  readonly #resume = <T>(lane: StatementLane, error: unknown, attempt: Attempt<T>): Promise<T> => {
    const { lanes, states } = lane
    const run = this.#runner(lane.request, lane, attempt)
    let outcome = Promise.reject(error) as Promise<T>
    for (let i = lanes.length - 1; i >= 0; i--)
      outcome = lanes[i]!.resume(lane, states[i], outcome, () => this.#execute(lane, run, i + 1))
    return outcome
  }

  /** The chain's last step: picks the host of each attempt (routing, read-your-writes) and runs it. */
  #runner<T>(request: ExecuteRequest, ctx: ExecuteContext, attempt: Attempt<T>): () => Promise<T> {
    const pinned = request.pinnedHost
    const forReader = request.forReader === true
    const fallback = forReader ? this.options.readerFallback : this.#mainFallback
    const ryw = forReader ? this.readYourWrites : undefined
    return (): Promise<T> => {
      if (this.#ended.signal.aborted) return Promise.reject(new ClientEndedError())
      let host: HostAddress
      try {
        host = pinned && ctx.attempt === 0 ? pinned : this.route(ctx.targetRole, fallback)
      } catch (error) {
        return Promise.reject(error)
      }
      if (ryw && !sameHost(host, this.#writer) && !ryw.known(host)) {
        const onWriter = () => this.#run(this.route('writer'), ctx, attempt)
        if (request.discardable === true)
          return readAfterWrite(
            ryw,
            host,
            ctx,
            (h) => this.#run(h, ctx, attempt),
            onWriter,
            (e) => {
              const kind = this.#deps.driver.classify(e)
              return kind === 'connection-lost' || kind === 'connect-failed'
            },
          )
        // Behind after the wait, or unable to tell: the writer has the write.
        return Promise.resolve(ryw.caughtUp(host)).then((ok) =>
          ok ? this.#run(host, ctx, attempt) : onWriter(),
        )
      }
      // Asked once per host (again after a topology change), not per statement.
      if (
        this.#checkReadOnly === 'read-write' &&
        ctx.targetRole === 'writer' &&
        this.#defaultReadOnly!.known(host) !== false
      )
        return this.#checkWritable(host).then(() => this.#run(host, ctx, attempt))
      return this.#run(host, ctx, attempt)
    }
  }

  #run<T>(host: HostAddress, ctx: ExecuteContext, attempt: Attempt<T>): Promise<T> {
    ctx.host = host
    ctx.sent = false
    // Only the first success matters; after it, statements pay no extra promise for this.
    if (this.#connected) return attempt(host, ctx)
    return attempt(host, ctx).then((result) => {
      this.#connected = true
      this.#updateLane()
      return result
    })
  }

  /** `target_session_attrs=read-write`: the writer's sessions must not start read-only. */
  async #checkWritable(host: HostAddress): Promise<void> {
    const check = this.#defaultReadOnly!
    const readOnly = check.known(host) ?? (await check.check(host).catch(() => false))
    if (readOnly)
      throw new NoWriterAvailableError(
        `target_session_attrs is read-write and ${hostKey(host)} has default_transaction_read_only on`,
      )
  }

  /** Resolves once plugins are initialised and a first topology read was tried (bounded by `connectTimeoutMs`). */
  ready(): Promise<void> {
    this.#ready ??= this.#runtime.holdOpenUntil(this.#bootstrap().then(() => this.#prepareSession())).then(
      () => {
        this.#isReady = true
        this.#updateLane()
      },
      (error) => {
        // The next statement tries again: the cluster may be back by then.
        this.#ready = undefined
        throw error
      },
    )
    return this.#ready
  }

  /** `target_session_attrs=read-only`: whether the writer may serve reads is known before the first read. */
  async #prepareSession(): Promise<void> {
    const writer = this.#lease.monitor.current?.writer
    if (this.#checkReadOnly === 'read-only' && writer && this.#defaultReadOnly?.known(writer) === undefined)
      await this.#defaultReadOnly?.check(writer).catch(() => undefined)
  }

  async #bootstrap(): Promise<void> {
    this.#pluginsInit ??= (async () => {
      for (const plugin of this.#deps.plugins) await plugin.init?.(this.services)
    })()
    await this.#pluginsInit
    if (this.#lease.monitor.current) return
    let timer: TimerHandle | undefined
    // A cluster that doesn't answer must not hold the first statement longer than a connect would.
    const refresh = this.#lease.monitor.refresh().catch(() => undefined)
    await Promise.race([
      refresh,
      new Promise<void>((resolve) => {
        timer = this.#runtime.startTimer(resolve, this.options.connectTimeoutMs)
      }),
    ])
    this.#runtime.stopTimer(timer)
    // Its connect, bounded by the same timeout and started a moment later, is about to tell
    // whether the host answers: its verdict beats a second connect by the statement itself.
    if (!this.#lease.monitor.current && this.#lease.monitor.connecting) await refresh
    if (this.#lease.monitor.current) return
    // No host could be reached at all: say so now, with the driver's own error (what a user of the
    // driver alone would see), rather than let the statement time out again. Any other failure
    // (no topology functions, no permission) falls back to the listed hosts.
    const error = this.#lease.monitor.lastError
    const kind = error === undefined ? 'other' : this.#deps.driver.classify(error)
    if (kind === 'auth-failed' || kind === 'connect-failed' || kind === 'connection-lost') throw error
  }

  /**
   * The host for a statement that targets `role`: a reader that is up, known and within
   * `maxReplicaLagMs`; with none, the writer, or {@link NoReaderAvailableError} when `fallback` is
   * `'error'`.
   */
  route(role: TargetRole, fallback: ReaderFallback = this.#mainFallback): HostAddress {
    if (role !== 'writer') {
      const topology = this.#lease.monitor.current
      const maxLag = this.options.maxReplicaLagMs
      const candidates = (role === 'reader' ? (topology?.readers ?? []) : (topology?.hosts ?? [])).filter(
        (h: HostInfo) =>
          h.role !== 'unknown' && !this.#marks.isDown(h) && (h.role === 'writer' || withinLag(h, maxLag)),
      )
      // libpq's read-only: a primary whose sessions start read-only serves reads too.
      const writer = topology?.writer
      if (
        role === 'reader' &&
        this.#checkReadOnly === 'read-only' &&
        writer &&
        !this.#marks.isDown(writer) &&
        this.#defaultReadOnly?.known(writer) === true
      )
        candidates.push(writer)
      const picked = this.#pickReader(candidates)
      if (picked) return { host: picked.host, port: picked.port }
      if (role === 'reader' && fallback === 'error') throw new NoReaderAvailableError(this.#whyNoReader())
    }
    return this.#writer ?? this.#deps.initialHosts[0]!
  }

  #whyNoReader(): string {
    const readers = this.#lease.monitor.current?.readers ?? []
    if (readers.length === 0) return 'the topology lists no reader'
    const max = this.options.maxReplicaLagMs
    return readers
      .map((h) => {
        const state =
          h.role === 'unknown'
            ? 'not answering'
            : this.#marks.isDown(h)
              ? 'down'
              : !withinLag(h, max)
                ? `lag ${h.lagMs} ms > maxReplicaLagMs ${max}`
                : 'ok'
        return `${hostKey(h)} ${state}`
      })
      .join(', ')
  }

  #onTopology(topology: Topology, previous: Topology | undefined): void {
    this.events.emit('topology', { topology, previous })
    if (this.#defaultReadOnly) {
      this.#defaultReadOnly.forget()
      // read-only routing needs to know the writer's answer before a read can use it.
      if (this.#checkReadOnly === 'read-only' && topology.writer)
        void this.#defaultReadOnly.check(topology.writer).catch(() => undefined)
    }
    const w = topology.writer
    if (w && !this.#marks.isDown(w) && !sameHost(w, this.#writer)) this.#setWriter(w, 'topology')
  }

  #setWriter(host: HostAddress, why: string): void {
    const address = { host: host.host, port: host.port }
    this.#marks.markUp(address)
    if (sameHost(address, this.#writer)) return
    const from = this.#writer
    this.#writer = address
    if (from) this.logger.info('writer changed', { from: hostKey(from), to: hostKey(address), why })
    this.events.emit('writerChanged', { from, to: address })
  }

  /** Ends the plugins and lets go of the shared monitor. Safe to call twice. */
  /** `sql.end()` has started: plugins stop reacting (no failover, no host verdicts) from now on. */
  ending(): void {
    if (!this.#stopping.signal.aborted) this.#stopping.abort(new ClientEndedError())
  }

  async end(): Promise<void> {
    if (this.#ended.signal.aborted) return
    this.ending()
    this.#ended.abort(new ClientEndedError())
    this.#updateLane()
    this.#marks.stop()
    this.#stopLagPolling?.()
    this.readYourWrites?.end()
    this.#lease.release()
    for (const plugin of [...this.#deps.plugins].reverse()) {
      try {
        await plugin.end?.()
      } catch (error) {
        this.logger.warn('a plugin failed to end', { plugin: plugin.name, error: String(error) })
      }
    }
  }
}

/**
 * A statement on the fast path (see {@link HaClient.lane}): the {@link Lane} and the
 * {@link ExecuteContext} of its attempts in one object, with what each plugin's lane returned.
 */
class StatementLane implements Lane, ExecuteContext {
  readonly kind: ExecuteContext['kind']
  readonly targetRole: TargetRole = 'writer'
  inTransaction: boolean
  sent = false
  delivered = false
  attempt = 0
  readonly description: string
  precheck: ExecuteContext['precheck'] = undefined
  readonly states: unknown[]

  constructor(
    readonly request: ExecuteRequest,
    public host: HostAddress,
    readonly lanes: readonly ExecuteLane[],
    readonly resume: <T>(lane: StatementLane, error: unknown, attempt: Attempt<T>) => Promise<T>,
  ) {
    this.kind = request.kind
    this.inTransaction = request.inTransaction ?? false
    this.description = request.description ?? ''
    this.states = new Array(lanes.length)
  }

  get ctx(): ExecuteContext {
    return this
  }

  start(): void {
    for (let i = 0; i < this.lanes.length; i++) this.states[i] = this.lanes[i]!.start(this)
  }

  settled(): void {
    for (let i = 0; i < this.lanes.length; i++) this.lanes[i]!.settled(this.states[i])
  }

  failed<T>(error: unknown, attempt: Attempt<T>): Promise<T> {
    return this.resume(this, error, attempt)
  }
}
