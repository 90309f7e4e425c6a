/**
 * Finds the writer after the old one failed: every known host is probed in parallel, each on its
 * own loop with its own timeouts, so a black-holed host never slows the others down; the first
 * host that proves writable (`pg_is_in_recovery()` false, checked on the host itself) wins.
 *
 * @module
 */
import type { ConnectionFactory, DbConnection } from '../../core/connection-factory.ts'
import { readRole } from '../../core/dialect.ts'
import { type HostAddress, hostKey, sameHost } from '../../core/host.ts'
import type { Runtime } from '../../runtime/runtime.ts'

/** What a search needs. */
export interface WriterSearchInput {
  readonly factory: ConnectionFactory
  /** Time and timers: every wait of the search goes through it. */
  readonly runtime: Runtime
  /** Hosts to probe; called each round so hosts the topology learns about join in. */
  candidates(): HostAddress[]
  /** The topology's current writer, preferred when two hosts claim to be writable. */
  reportedWriter(): HostAddress | undefined
  /** Next in preference: the synchronous standbys (the ones a cluster manager promotes). */
  preferred?(): readonly HostAddress[]
  /** The host that failed; accepted only if no other host is writable. */
  readonly failed: HostAddress | undefined
  readonly probeIntervalMs: number
  readonly probeTimeoutMs: number
  readonly deadline: number
  readonly signal: AbortSignal
  /**
   * Nothing can tell of another host (one host, `pg`): a reader there ends the search at once, and
   * is reported here, instead of probing it until the deadline.
   */
  readonly onlyHostIsReader?: (host: HostAddress) => void
  /** Called once per host, the first time a probe connection to it opens. */
  readonly onReachable?: (host: HostAddress) => void
}

/** Probes hosts until one is writable or the deadline passes; resolves with it, or undefined. */
export async function searchWriter(input: WriterSearchInput): Promise<HostAddress | undefined> {
  const stop = new AbortController()
  const onAbort = () => stop.abort()
  input.signal.addEventListener('abort', onAbort, { once: true })
  const probing = new Map<string, Promise<void>>()
  const writable = new Map<string, HostAddress>()
  let wake: (() => void) | undefined
  const conns: DbConnection[] = []
  const reached = new Set<string>()
  let failedSeenAt: number | undefined

  const probeLoop = async (host: HostAddress) => {
    let conn: DbConnection | undefined
    while (!stop.signal.aborted && input.runtime.now() < input.deadline) {
      // Neither the connect nor the probe may outlast the search.
      const timeoutMs = Math.max(1, Math.min(input.probeTimeoutMs, input.deadline - input.runtime.now()))
      try {
        if (!conn || conn.closed) {
          conn = await input.factory.connect({ host, purpose: 'probe', timeoutMs })
          // A connect that finishes after the search ended must not outlive it.
          if (stop.signal.aborted) {
            conn.abort()
            break
          }
          conns.push(conn)
          if (!reached.has(hostKey(host))) {
            reached.add(hostKey(host))
            input.onReachable?.(host)
          }
        }
        const role = await readRole(conn, { timeoutMs })
        if (role === 'reader' && input.onlyHostIsReader) {
          input.onlyHostIsReader(host)
          stop.abort()
          wake?.()
          return
        }
        if (role === 'writer') {
          writable.set(hostKey(host), host)
          wake?.()
          // A writable host other than the failed one ends the search; the failed one waits a
          // round for a better answer (it may be a stale writer that came back).
          if (!sameHost(host, input.failed)) return
        }
      } catch {
        conn?.abort()
        conn = undefined
      }
      await input.runtime
        .sleep(input.probeIntervalMs, { signal: stop.signal, keepAlive: true })
        .catch(() => {})
    }
  }

  try {
    while (!stop.signal.aborted && input.runtime.now() < input.deadline) {
      for (const host of input.candidates()) {
        const key = hostKey(host)
        if (!probing.has(key)) probing.set(key, probeLoop(host))
      }
      const chosen = choose(writable, input.reportedWriter(), input.failed, input.preferred?.())
      if (chosen && !sameHost(chosen, input.failed)) return chosen
      // The failed host answering as writer is accepted one round later, if nobody better shows up:
      // a lost connection on a healthy writer is common, a stale writer coming back is rare.
      if (chosen) {
        failedSeenAt ??= input.runtime.now()
        if (input.runtime.now() - failedSeenAt >= input.probeIntervalMs) return chosen
      }
      await new Promise<void>((resolve) => {
        wake = resolve
        void input.runtime
          .sleep(Math.min(input.probeIntervalMs, Math.max(0, input.deadline - input.runtime.now())), {
            signal: stop.signal,
            keepAlive: true,
          })
          .catch(() => {})
          .then(resolve)
      })
      wake = undefined
    }
    return choose(writable, input.reportedWriter(), input.failed, input.preferred?.())
  } finally {
    stop.abort()
    input.signal.removeEventListener('abort', onAbort)
    for (const c of conns) c.abort()
  }
}

function choose(
  writable: Map<string, HostAddress>,
  reported: HostAddress | undefined,
  failed: HostAddress | undefined,
  preferred: readonly HostAddress[] = [],
): HostAddress | undefined {
  if (writable.size === 0) return undefined
  if (reported && writable.has(hostKey(reported)) && !sameHost(reported, failed)) return reported
  for (const host of preferred) if (writable.has(hostKey(host)) && !sameHost(host, failed)) return host
  for (const host of writable.values()) if (!sameHost(host, failed)) return host
  return writable.values().next().value
}
