/**
 * The monitor of one host, shared by every client in the process. While any statement on the host
 * has run longer than `failureDetectionTime`, it probes the host over its own connection every
 * `failureDetectionInterval` (each connect and probe bounded by that interval); after
 * `failureDetectionCount` failures in a row the host is declared down and every watcher is told.
 *
 * @module
 */
import type { ConnectionFactory, DbConnection } from '../../core/connection-factory.ts'
import { type HostAddress, hostKey } from '../../core/host.ts'
import { isAnswer } from '../../core/host-answers.ts'
import type { Runtime } from '../../runtime/runtime.ts'
import type { TimerHandle } from '../../runtime/timers.ts'

/** A statement being watched, and whom to tell if its host dies. */
export interface HostWatch {
  readonly factory: ConnectionFactory
  readonly intervalMs: number
  readonly count: number
  /** How long the monitor's own login may take while the host keeps answering (`connectTimeoutMs`). */
  readonly connectTimeoutMs: number
  /** Called at most once, when the host is declared down. */
  onDown(reason: string): void
}

/** An idle monitor keeps its probe connection this long, for the next long statement. */
const IDLE_CLOSE_MS = 10_000

/** Probes one host while it is watched. */
export class HostMonitor {
  readonly host: HostAddress
  readonly #runtime: Runtime
  #watches = new Set<HostWatch>()
  #conn: DbConnection | undefined
  #failures = 0
  #timer: TimerHandle | undefined
  #idleTimer: TimerHandle | undefined
  #probing = false
  /** How long the last successful probe took: what this host needs when healthy. */
  #healthyMs = 0
  #onIdle: () => void
  /** Probes sent, for tests. */
  probes = 0

  /** `runtime` is the first watcher's: the monitor is shared, its timers are its own. */
  constructor(host: HostAddress, runtime: Runtime, onIdle: () => void) {
    this.host = host
    this.#runtime = runtime
    this.#onIdle = onIdle
  }

  /** Starts watching for one statement; returns the function that stops it. */
  watch(w: HostWatch): () => void {
    this.#watches.add(w)
    this.#runtime.stopTimer(this.#idleTimer)
    this.#idleTimer = undefined
    if (!this.#timer && !this.#probing) this.#schedule(0)
    return () => this.#unwatch(w)
  }

  get watchCount(): number {
    return this.#watches.size
  }

  #unwatch(w: HostWatch): void {
    if (this.#watches.delete(w) && this.#watches.size === 0) this.#goIdle()
  }

  /** Nothing is watched any more: stop probing, and close the connection unless a watch comes soon. */
  #goIdle(): void {
    this.#runtime.stopTimer(this.#timer)
    this.#timer = undefined
    this.#failures = 0
    this.#runtime.stopTimer(this.#idleTimer)
    this.#idleTimer = this.#runtime.startTimer(() => this.close(), IDLE_CLOSE_MS)
  }

  /** Closes the probe connection and forgets the monitor. */
  close(): void {
    this.#runtime.stopTimer(this.#timer)
    this.#runtime.stopTimer(this.#idleTimer)
    this.#timer = this.#idleTimer = undefined
    this.#conn?.abort()
    this.#conn = undefined
    if (this.#watches.size === 0) this.#onIdle()
  }

  #settings(): HostWatch | undefined {
    for (const w of this.#watches) return w
    return undefined
  }

  #schedule(ms: number): void {
    this.#timer = this.#runtime.startTimer(() => {
      this.#timer = undefined
      void this.#probe()
    }, ms)
  }

  async #probe(): Promise<void> {
    const settings = this.#settings()
    if (!settings) return
    this.#probing = true
    const started = this.#runtime.now()
    let ok = false
    try {
      if (!this.#conn || this.#conn.closed) {
        // "Cannot connect" and "connected and silent" fail within the interval; a login that
        // keeps getting answers (a slow network, a busy server) may take up to the connect timeout.
        const conn = await settings.factory.connect({
          host: this.host,
          purpose: 'monitor',
          timeoutMs: Math.max(settings.intervalMs, settings.connectTimeoutMs),
          silenceTimeoutMs: settings.intervalMs,
        })
        // Closed while connecting: nobody would ever close this connection.
        if (this.#watches.size === 0) {
          conn.abort()
          return
        }
        this.#conn = conn
      }
      this.probes++
      const sent = this.#runtime.now()
      // What a healthy probe of this host needs never counts as failure (a slow network).
      await this.#conn.query('select 1', [], {
        timeoutMs: Math.max(settings.intervalMs, 2 * this.#healthyMs),
      })
      this.#healthyMs = this.#runtime.now() - sent
      ok = true
    } catch (error) {
      this.#conn?.abort()
      this.#conn = undefined
      // A host that answered with an error (refused credentials, too many connections) is alive,
      // whatever is wrong with the request: only silence and lost connections count as failures.
      ok = isAnswer(settings.factory.classify(error))
    } finally {
      this.#probing = false
    }
    if (this.#watches.size === 0) return
    if (ok) this.#failures = 0
    else if (++this.#failures >= settings.count) {
      const reason = `no answer from ${hostKey(this.host)} to ${this.#failures} probes ${settings.intervalMs} ms apart`
      const watches = [...this.#watches]
      this.#watches.clear()
      this.#goIdle()
      for (const w of watches) w.onDown(reason)
      return
    }
    // Probes start one interval apart whatever each took, so detection time stays predictable.
    this.#schedule(Math.max(0, settings.intervalMs - (this.#runtime.now() - started)))
  }
}

/** Whether an error of this kind came from a host that is up. */
const monitors = new Map<string, HostMonitor>()

/** The shared monitor of a host, created on first use. */
export function hostMonitorFor(host: HostAddress, runtime: Runtime): HostMonitor {
  const key = hostKey(host)
  let monitor = monitors.get(key)
  if (!monitor) {
    const created = new HostMonitor({ host: host.host, port: host.port }, runtime, () => {
      if (monitors.get(key) === created) monitors.delete(key)
    })
    monitors.set(key, created)
    monitor = created
  }
  return monitor
}

/**
 * Closes every monitor nothing watches right now. A client's `end()` calls it so that no probe
 * connection outlives the client; a monitor another client still uses is left alone.
 */
export function closeIdleHostMonitors(): void {
  for (const monitor of [...monitors.values()]) if (monitor.watchCount === 0) monitor.close()
}

/** How many host monitors exist in this process (tests, idle benchmark). */
export function hostMonitorCount(): number {
  return monitors.size
}
