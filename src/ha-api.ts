/**
 * `sql.ha`: the high-availability side of a client — events, the topology, the current writer.
 *
 * @module
 */
import type { Sql } from 'postgres'
import type { HaClient } from './core/client.ts'
import type { HaEventMap, HaEventName } from './core/events.ts'
import type { HostAddress } from './core/host.ts'
import type { Topology } from './core/topology.ts'
import { holdOpenUntil } from './runtime/timers.ts'

/**
 * The high-availability API of an `sql` made by `postgresHa()`.
 *
 * @example
 * ```ts
 * sql.ha.on('failover', (e) => console.log(`new writer ${e.to?.host} after ${e.tookMs} ms`))
 * console.log(sql.ha.topology()?.writer)
 * ```
 */
export interface HaApi {
  /** Adds a listener; returns a function that removes it. */
  on<K extends HaEventName>(name: K, listener: (event: HaEventMap[K]) => void): () => void
  /** Removes a listener. */
  off<K extends HaEventName>(name: K, listener: (event: HaEventMap[K]) => void): void
  /** The latest topology reading, if one was taken. */
  topology(): Topology | undefined
  /** Reads the topology now. */
  refreshTopology(): Promise<Topology | undefined>
  /** The host statements for the writer go to now. */
  writer(): HostAddress | undefined
  /** The cluster id under which this client shares its topology monitor. */
  readonly clusterId: string
  /** Resolves once the client has read the topology (or found it cannot); the first statement does this anyway. */
  ready(): Promise<void>
  /**
   * A postgres.js `Sql` over the same client whose statements go to readers, picked by
   * `readerHostSelectorStrategy` (a `begin()` stays on one reader); with no reader up it follows
   * `readerFallback`. It shares `sql`'s pools: `sql.ha.reader.end()` ends the client, as `sql.end()`.
   *
   * @example
   * ```ts
   * const reports = await sql.ha.reader`select * from reports where day = ${day}`
   * const db = withReplicas(drizzle(sql), [drizzle(sql.ha.reader)])
   * ```
   */
  readonly reader: Sql & { readonly ha: HaApi }
}

/** Builds `sql.ha` over a client; `reader` is `sql.ha.reader` (its own `ha` is this api, attached after). */
export function createHaApi(
  client: HaClient,
  clusterId: string,
  reader: Sql & { readonly ha: HaApi },
): HaApi {
  return Object.freeze({
    reader,
    on: (name, listener) => client.events.on(name, listener),
    off: (name, listener) => client.events.off(name, listener),
    topology: () => client.topology(),
    // The monitor's connections never hold the process open; a caller awaiting a read does.
    refreshTopology: () => holdOpenUntil(client.monitor.refresh()),
    writer: () => client.writer(),
    clusterId,
    ready: () => client.ready(),
  } satisfies HaApi)
}
