/**
 * The events a client emits (`sql.ha.on(...)`). A tiny emitter of our own: the core may not
 * import `node:events`, and a listener that throws must not break failover.
 *
 * @module
 */
import type { HostAddress } from './host.ts'
import type { Topology } from './topology.ts'

/** Payloads of the events, by name. */
export interface HaEventMap {
  /** A new topology reading differs from the previous one. */
  topology: { topology: Topology; previous: Topology | undefined }
  /** Failover started because the connection to `from` was lost. */
  failoverStart: { from: HostAddress | undefined; reason: string; atMs: number }
  /** Failover ended: `to` is the new host (undefined when it failed). */
  failover: {
    from: HostAddress | undefined
    to: HostAddress | undefined
    ok: boolean
    tookMs: number
    reason: string
    error?: unknown
  }
  /** A host stopped answering (host monitoring or a failed connection). */
  hostDown: { host: HostAddress; reason: string }
  /** A host that was down answers again. */
  hostUp: { host: HostAddress }
  /** The writer for new statements changed. */
  writerChanged: { from: HostAddress | undefined; to: HostAddress }
}

/** Name of an event. */
export type HaEventName = keyof HaEventMap

/** Subscribe to and emit {@link HaEventMap} events. */
export interface HaEvents {
  /** Adds a listener; returns a function that removes it. */
  on<K extends HaEventName>(name: K, listener: (event: HaEventMap[K]) => void): () => void
  /** Removes a listener added with `on`. */
  off<K extends HaEventName>(name: K, listener: (event: HaEventMap[K]) => void): void
  /** Calls every listener of `name`; a throwing listener is reported to `onListenerError`. */
  emit<K extends HaEventName>(name: K, event: HaEventMap[K]): void
}

/** Creates an event emitter; listener errors go to `onListenerError` instead of the emitter. */
export function createEvents(onListenerError: (error: unknown) => void = () => {}): HaEvents {
  const listeners = new Map<HaEventName, Set<(event: never) => void>>()
  return {
    on(name, listener) {
      let set = listeners.get(name)
      if (!set) listeners.set(name, (set = new Set()))
      set.add(listener as (event: never) => void)
      return () => this.off(name, listener)
    },
    off(name, listener) {
      listeners.get(name)?.delete(listener as (event: never) => void)
    },
    emit(name, event) {
      for (const listener of [...(listeners.get(name) ?? [])]) {
        try {
          ;(listener as (e: typeof event) => void)(event)
        } catch (error) {
          onListenerError(error)
        }
      }
    },
  }
}
