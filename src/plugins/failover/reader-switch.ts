/**
 * Reader failover: a client that targets readers moves to another live reader, or to the writer
 * when no reader is left. The first loss on a reader counts for the whole host, and the other
 * readers in use are verified before reads go on to them.
 *
 * @module
 */
import { type HostAddress, hostKey, sameHost } from '../../core/host.ts'
import { noAnswerFrom } from '../../core/host-answers.ts'
import type { PluginServices } from '../../core/plugin.ts'

/** Another reader than `failed` that is not marked down, else the writer. */
export function pickOtherReader(
  services: PluginServices,
  failed: HostAddress | undefined,
): HostAddress | undefined {
  const readers = (services.topology()?.readers ?? []).filter(
    (h) => h.role === 'reader' && !sameHost(h, failed) && !services.isHostDown(h),
  )
  if (readers.length > 0) {
    const pick = readers[Math.floor(Math.random() * readers.length)]!
    return { host: pick.host, port: pick.port }
  }
  const writer = services.currentWriter()
  return writer && hostKey(writer) !== (failed && hostKey(failed)) ? writer : undefined
}

/** What {@link readerLosses} gives the failover plugin. */
export interface ReaderLosses {
  /**
   * A connection to reader `failed` was lost. The first loss marks the host down for routing and
   * drops every connection of this client to it at once (statements that were never sent run
   * elsewhere; those in flight reject), then verifies the other readers in use. Later losses on
   * the same host (its other connections, in flight at the time) change nothing.
   */
  lost(failed: HostAddress, reason: string): void
  /** Settles once the readers being verified are judged; `undefined` when none is. */
  readonly verifying: Promise<void> | undefined
}

/**
 * The first loss on each reader, and the check of the other readers it triggers. A reader that
 * died with others (a host, a zone) keeps its pooled connections open until the runtime reports
 * each one closed; a read sent on one of them may have run, so it would be a
 * `FailoverSuccessError`. So, as the AWS drivers' reader failover connects to a reader before
 * using it, each other reader of the topology is asked for a fresh connection (within
 * `probeTimeoutMs`) before reads go on: one that does not answer is marked down and its
 * connections dropped, and reads issued meanwhile wait for the verdict.
 *
 * @example
 * ```ts
 * const losses = readerLosses(services)
 * losses.lost(ctx.host, 'connection lost') // marks it down, verifies the other readers
 * await losses.verifying // before routing the next read
 * ```
 */
export function readerLosses(services: PluginServices): ReaderLosses {
  const checking = new Map<string, Promise<void>>()
  let verifying: Promise<void> | undefined

  const verify = async (host: HostAddress): Promise<void> => {
    // Only silence or a refused or broken connection says the host is gone; any answer (too
    // many connections, refused credentials) is a live server, judged by its statements.
    const kind = await noAnswerFrom(services.factory, host, services.options.probeTimeoutMs)
    if (kind === undefined || services.endSignal.aborted || services.isHostDown(host)) return
    services.markHostDown(host, `no answer after another reader was lost (${kind})`)
    services.abortHost(host, 'no answer after another reader was lost')
  }

  return {
    lost(failed, reason) {
      if (services.endSignal.aborted || services.isHostDown(failed)) return
      services.markHostDown(failed, reason)
      // The connection tracker does this too on hostDown; a plugin list without it must not
      // leave the host's other pooled connections in use.
      services.abortHost(failed, reason)
      // Every reader, not only those with sockets open: a socket the peer closed counts as gone
      // here before postgres.js has heard of it, and would still take a statement.
      const writer = services.currentWriter()
      for (const h of services.topology()?.readers ?? []) {
        const host = { host: h.host, port: h.port }
        const key = hostKey(host)
        if (h.role !== 'reader' || sameHost(host, failed) || sameHost(host, writer) || checking.has(key))
          continue
        if (services.isHostDown(host)) continue
        checking.set(
          key,
          verify(host).finally(() => checking.delete(key)),
        )
      }
      if (checking.size === 0) return
      // Covers every check under way, those an earlier loss started included.
      const all: Promise<void> = Promise.all(checking.values()).then(() => {
        if (verifying === all) verifying = undefined
      })
      verifying = all
    },
    get verifying() {
      return verifying
    },
  }
}
