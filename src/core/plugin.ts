/**
 * The plugin interface. Every new connection and every statement passes through the enabled
 * plugins in order; each may wrap, retry, observe or refuse by what it does around `next()`.
 *
 * @module
 */
import type { Clock } from '../runtime/clock.ts'
import type { Runtime } from '../runtime/runtime.ts'
import type { ConnectionFactory, ConnectPurpose, ErrorKind } from './connection-factory.ts'
import type { DialectName } from './dialect.ts'
import type { HaEvents } from './events.ts'
import type { HostAddress, TargetRole } from './host.ts'
import type { Logger } from './logger.ts'
import type { Topology } from './topology.ts'

/**
 * A new connection about to be opened. Plugins may change `user` and `password` before calling
 * `next()` (the `iam` plugin puts a token in `password`). `next()` opens and authenticates the
 * connection with them, for every connection (user pools included); it rejects if the connection
 * fails, with the server's own error (28P01, 28000) if the server refused the credentials, and a
 * plugin may then replace them and call `next()` again before `deadline`.
 */
export interface ConnectContext {
  /** The host the connection is for. */
  readonly host: HostAddress
  /** Why it is opened: user statements, or the driver's own topology, monitoring or probe work. */
  readonly purpose: ConnectPurpose
  /** The user to log in as; a plugin may replace it. */
  user: string
  /** The password to log in with (`undefined`: the configured one); a plugin may replace it. */
  password: string | undefined
  /**
   * When the whole connect must have settled, in the client clock's time (`connectTimeoutMs`
   * from the start for user connections). Plugins bound their waits and back-offs by it; no
   * attempt starts after it.
   */
  readonly deadline: number
}

/** What an execution is: one statement, a whole `sql.begin` transaction, or a statement on a reserved connection. */
export type ExecuteKind = 'statement' | 'transaction' | 'reserved' | 'listen'

/**
 * One statement (or one transaction) on its way to a server.
 *
 * The pipeline's last step picks `host` and sets `sent` as soon as anything may have reached the
 * server; a plugin that sees `sent === false` after a failure knows a retry cannot run anything twice.
 */
export interface ExecuteContext {
  /** What is being run. */
  readonly kind: ExecuteKind
  /** Which role of host the statement needs. */
  readonly targetRole: TargetRole
  /** The host this attempt runs on; set when the attempt starts. Pinned for reserved connections. */
  host: HostAddress | undefined
  /** True when the statement runs inside an open transaction: its outcome can't be retried. */
  inTransaction: boolean
  /** Whether anything of this attempt may have reached a server. */
  sent: boolean
  /** Whether the caller has already received part of the result (cursor, forEach, COPY). */
  delivered: boolean
  /** 0 for the first attempt, incremented by each transparent retry. */
  attempt: number
  /** The statement text for logs (never its parameters); may be empty. */
  readonly description: string
  /**
   * Read-your-writes on a reader: a statement the driver runs on the attempt's connection right
   * before the work, in the same round trip, setting {@link Precheck.value}. Set by the core only
   * for work whose result it may discard ({@link ExecuteRequest.discardable}).
   */
  precheck?: Precheck | undefined
}

/** A one-value statement pipelined before the work (see {@link ExecuteContext.precheck}). */
export interface Precheck {
  /** The statement's text; it takes no parameters. */
  readonly text: string
  /** Set by the driver when it sends the statement: its first column of its first row. */
  value?: Promise<unknown>
}

/**
 * The client's validated options as plugins see them: the core's timeouts typed, and every option
 * (the plugins' own included) by name.
 *
 * @example
 * ```ts
 * const timeoutMs = services.options.probeTimeoutMs
 * const retries = services.options['auditRetries'] // a plugin's own option, by name
 * ```
 */
export interface PluginOptions {
  /** Timeout of one user connection attempt, in ms. */
  readonly connectTimeoutMs: number
  /** Timeout of the driver's own probe and topology connections and statements, in ms. */
  readonly probeTimeoutMs: number
  /** Every other option, by name. */
  readonly [option: string]: unknown
}

/** The client's services a plugin may use; handed to {@link HaPlugin.init} once. */
export interface PluginServices {
  /** The validated, frozen options of the client (a plugin reads its own typed with `readOptions`). */
  readonly options: PluginOptions
  /** The client's source of time (the same as {@link PluginServices.runtime}'s). */
  readonly clock: Clock
  /** The client's time and timers: a plugin that waits or polls does it through these. */
  readonly runtime: Runtime
  /** The client's logger (secrets masked); silent unless the user gave one. */
  readonly logger: Logger
  /** The client's events (`sql.ha.on`); plugins may listen and emit. */
  readonly events: HaEvents
  /** Opens internal connections (through the connect pipeline, so IAM and secrets apply). */
  readonly factory: ConnectionFactory
  /** Classifies any driver error (see {@link ErrorKind}). */
  classify(error: unknown): ErrorKind
  /** The latest topology, if one has been read. */
  topology(): Topology | undefined
  /** Reads the topology now (shared with every client of the cluster); resolves with the new reading. */
  refreshTopology(): Promise<Topology | undefined>
  /** Asks the shared topology monitor to poll fast until the topology settles. */
  requestFastPolling(reason: string): void
  /** The host user statements targeting the writer go to. */
  currentWriter(): HostAddress | undefined
  /** Makes `host` the writer for this client's new statements (after it was verified writable). */
  setWriter(host: HostAddress): void
  /** Drops every connection of this client to `host` at once; statements on them reject. */
  abortHost(host: HostAddress, reason: string): void
  /**
   * Opens one user connection to `host` now (if this client has none), so that the first statement
   * there pays no connect and authentication, and logs in ahead as many more as `like` (the lost
   * writer) had open at once, for the pool's next connections; none without `like`. Returns a
   * release for when the failover is over: `kept` when `host` became the writer; otherwise what it
   * opened closes if unused.
   */
  warmHost(host: HostAddress, like?: HostAddress): (kept?: boolean) => void
  /** Hosts this client has user connections open to. */
  connectedHosts(): HostAddress[]
  /** Records that `host` failed: no statement is routed to it until {@link markHostUp}. */
  markHostDown(host: HostAddress, reason: string): void
  /** Records that `host` answers again. */
  markHostUp(host: HostAddress): void
  /** Whether `host` is currently marked down. */
  isHostDown(host: HostAddress): boolean
  /** Whether this client has ever completed a statement (failover only makes sense after that). */
  hasConnected(): boolean
  /** The cluster's dialect, once known (given, or detected at the first topology read). */
  dialect(): DialectName | undefined
  /** A signal aborted when the client ends, for plugin loops to stop on. */
  readonly endSignal: AbortSignal
}

/**
 * A plugin: any of the hooks below, all optional.
 *
 * @example
 * ```ts
 * const timing: HaPlugin = {
 *   name: 'timing',
 *   async execute(ctx, next) {
 *     const t0 = performance.now()
 *     try { return await next() } finally { console.log(ctx.description, performance.now() - t0) }
 *   },
 * }
 * // `plugins` replaces the default list: add the names of the built-in plugins to keep (README: Plugins).
 * const sql = postgresHa(url, { plugins: [timing] })
 * ```
 */
export interface HaPlugin {
  /** A unique name, used in logs and in the `plugins` option. */
  readonly name: string
  /** Called once before the client's first connection, with the services of the client. */
  init?(services: PluginServices): void | Promise<void>
  /** Wraps opening a connection; may set credentials, observe failures or retry. */
  connect?(ctx: ConnectContext, next: () => Promise<void>): Promise<void>
  /** Wraps running one statement or transaction; may observe, retry, translate errors or refuse. */
  execute?<T>(ctx: ExecuteContext, next: () => Promise<T>): Promise<T>
  /** Releases what the plugin holds; called once by `sql.end()`. */
  end?(): void | Promise<void>
}
