/**
 * Hosts marked down: a host a plugin found dead gets no statements for a while, is tried again
 * every second in the meantime, and is reported up (`hostUp`) as soon as it accepts a connection.
 *
 * @module
 */
import type { Runtime } from '../runtime/runtime.ts'
import type { TimerHandle } from '../runtime/timers.ts'
import type { ConnectionFactory } from './connection-factory.ts'
import type { HaEvents } from './events.ts'
import { type HostAddress, hostKey } from './host.ts'
import { noAnswerFrom } from './host-answers.ts'
import type { Logger } from './logger.ts'

/**
 * How long a host stays marked down. Long enough that a stale topology reading can't route
 * statements back to a dead writer during a failover; short enough that a host that came back
 * (a restarted old writer, now a reader) is used again without a restart of the client.
 */
const DOWN_MARK_MS = 30_000

/** How often hosts marked down are tried again, to report them up. */
const RECHECK_MS = 1_000

/** What {@link DownMarks} needs from its client. */
export interface DownMarksDeps {
  readonly runtime: Runtime
  readonly logger: Logger
  readonly events: HaEvents
  /** Opens the probe connections of the rechecks (through the connect plugins). */
  readonly factory: ConnectionFactory
  readonly probeTimeoutMs: number
  /** Aborted when `sql.end()` starts: connections it destroys say nothing about a host. */
  readonly stopping: AbortSignal
  /** Aborted once the client ended: no more rechecks. */
  readonly ended: AbortSignal
}

/**
 * The client's down marks.
 *
 * @example
 * ```ts
 * const marks = new DownMarks(deps)
 * marks.markDown(host, 'connection refused') // emits hostDown, rechecks every second
 * marks.isDown(host) // true for up to 30 s, until a recheck connects
 * ```
 */
export class DownMarks {
  readonly #deps: DownMarksDeps
  readonly #down = new Map<string, { host: HostAddress; until: number }>()
  #recheckTimer: TimerHandle | undefined

  constructor(deps: DownMarksDeps) {
    this.#deps = deps
  }

  isDown(host: HostAddress): boolean {
    const mark = this.#down.get(hostKey(host))
    if (mark === undefined) return false
    if (this.#deps.runtime.now() < mark.until) return true
    this.#down.delete(hostKey(host))
    return false
  }

  markDown(host: HostAddress, reason: string): void {
    if (this.#deps.stopping.aborted) return
    const key = hostKey(host)
    const wasDown = this.isDown(host)
    this.#down.set(key, {
      host: { host: host.host, port: host.port },
      until: this.#deps.runtime.now() + DOWN_MARK_MS,
    })
    this.#scheduleRecheck()
    if (wasDown) return
    this.#deps.logger.warn('host down', { host: key, reason })
    this.#deps.events.emit('hostDown', { host, reason })
  }

  markUp(host: HostAddress): void {
    if (!this.#down.delete(hostKey(host))) return
    this.#deps.logger.info('host up', { host: hostKey(host) })
    this.#deps.events.emit('hostUp', { host })
  }

  /** Stops the rechecks (the client ended). */
  stop(): void {
    this.#deps.runtime.stopTimer(this.#recheckTimer)
  }

  /** While hosts are down, tries each every {@link RECHECK_MS}; one that accepts a connection is up. */
  #scheduleRecheck(): void {
    if (this.#recheckTimer || this.#deps.ended.aborted) return
    this.#recheckTimer = this.#deps.runtime.startTimer(() => {
      this.#recheckTimer = undefined
      void this.#recheck()
    }, RECHECK_MS)
  }

  async #recheck(): Promise<void> {
    const { factory, ended, runtime } = this.#deps
    await Promise.all(
      [...this.#down.values()].map(async ({ host }) => {
        // A host that answers, with an error too (too many connections, refused credentials), is
        // up; silence or a refused connection means still down.
        const silent = await noAnswerFrom(factory, host, this.#deps.probeTimeoutMs)
        if (silent === undefined && !ended.aborted) this.markUp(host)
      }),
    )
    for (const [key, mark] of this.#down) if (runtime.now() >= mark.until) this.#down.delete(key)
    if (this.#down.size > 0) this.#scheduleRecheck()
  }
}
