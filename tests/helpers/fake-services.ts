/**
 * The services a client hands its plugins, kept in plain fields a test can read and set: the
 * writer, the hosts marked down, the topology, every host dropped. Time is a {@link FakeRuntime}
 * and errors are classified by the driver's own classifier, so a plugin under test meets the
 * same meanings it meets in a client.
 *
 * @example
 * ```ts
 * const f = fakeServices({ factory: cluster.factory, writer: a })
 * const plugin = failoverPlugin()
 * plugin.init!(f.services)
 * ```
 *
 * @module
 */
import type { ConnectionFactory } from '../../src/core/connection-factory.ts'
import { createEvents, type HaEvents } from '../../src/core/events.ts'
import { type HostAddress, hostKey } from '../../src/core/host.ts'
import { type Logger, safeLogger } from '../../src/core/logger.ts'
import type { DialectName, ResolvedHaOptions } from '../../src/core/options.ts'
import type { PluginServices } from '../../src/core/plugin.ts'
import type { Topology } from '../../src/core/topology.ts'
import { classify } from '../../src/drivers/postgresjs/classify.ts'
import { type FakeRuntime, fakeRuntime } from './fake-runtime.ts'

/** What {@link fakeServices} starts from. */
export interface FakeServicesInput {
  /** The client's validated options (core and plugin options), as plugins read them. */
  readonly options?: Record<string, unknown>
  readonly runtime?: FakeRuntime
  /** Internal connections; by default every connect throws (plugins that never connect). */
  readonly factory?: ConnectionFactory
  readonly writer?: HostAddress
  readonly topology?: Topology
  /** Whether the client has completed a statement (default true). */
  readonly connected?: boolean
  /** The cluster's dialect, as the topology monitor would report it. */
  readonly dialect?: DialectName
}

/** The client state behind the services, for a test to read and set. */
export interface FakeClientState {
  writer: HostAddress | undefined
  topology: Topology | undefined
  connected: boolean
  /** Hosts marked down, by `host:port`. */
  readonly down: Set<string>
  /** Every `abortHost` call, in order. */
  readonly dropped: Array<{ host: string; reason: string }>
  /** Every `setWriter` call, in order. */
  readonly writers: string[]
  /** Every `warmHost` call, in order, and every release of one. */
  readonly warmed: string[]
  readonly released: string[]
  /** Reasons given to `requestFastPolling`. */
  readonly fastPolling: string[]
  refreshes: number
}

/** What {@link fakeServices} gives a test. */
export interface FakeServices {
  readonly services: PluginServices
  readonly runtime: FakeRuntime
  readonly events: HaEvents
  readonly state: FakeClientState
  /** Every line logged, as `level message JSON(fields)`, after masking. */
  readonly logLines: string[]
  /** Ends the client: aborts the services' `endSignal`. */
  end(): void
}

/** Builds the services of a pretend client. */
export function fakeServices(input: FakeServicesInput = {}): FakeServices {
  const runtime = input.runtime ?? fakeRuntime()
  const logLines: string[] = []
  const record =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      logLines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`)
    }
  const logger: Logger = safeLogger({
    debug: record('debug'),
    info: record('info'),
    warn: record('warn'),
    error: record('error'),
  })
  const events = createEvents()
  const ended = new AbortController()
  const state: FakeClientState = {
    writer: input.writer,
    topology: input.topology,
    connected: input.connected ?? true,
    down: new Set(),
    dropped: [],
    writers: [],
    warmed: [],
    released: [],
    fastPolling: [],
    refreshes: 0,
  }
  const noConnections: ConnectionFactory = {
    connect: () => Promise.reject(new Error('no connections in these fake services')),
    classify,
  }
  const services: PluginServices = Object.freeze({
    options: Object.freeze({
      probeTimeoutMs: 2_000,
      connectTimeoutMs: 10_000,
      ...input.options,
    }) as unknown as ResolvedHaOptions,
    runtime,
    clock: runtime,
    logger,
    events,
    factory: input.factory ?? noConnections,
    classify,
    topology: () => state.topology,
    refreshTopology: async () => {
      state.refreshes++
      return state.topology
    },
    requestFastPolling: (reason: string) => void state.fastPolling.push(reason),
    currentWriter: () => state.writer,
    setWriter: (host: HostAddress) => {
      const from = state.writer
      state.writer = { host: host.host, port: host.port }
      state.writers.push(hostKey(host))
      if (!from || hostKey(from) !== hostKey(host)) events.emit('writerChanged', { from, to: state.writer })
    },
    abortHost: (host: HostAddress, reason: string) =>
      void state.dropped.push({ host: hostKey(host), reason }),
    warmHost: (host: HostAddress) => {
      state.warmed.push(hostKey(host))
      return () => void state.released.push(hostKey(host))
    },
    connectedHosts: () => [],
    markHostDown: (host: HostAddress) => void state.down.add(hostKey(host)),
    markHostUp: (host: HostAddress) => void state.down.delete(hostKey(host)),
    isHostDown: (host: HostAddress) => state.down.has(hostKey(host)),
    hasConnected: () => state.connected,
    dialect: () => input.dialect,
    endSignal: ended.signal,
  } satisfies PluginServices)
  return { services, runtime, events, state, logLines, end: () => ended.abort(new Error('client ended')) }
}
