/**
 * A topology whose hosts cannot be reached while the host the user gave answers: a CNAME or an IP
 * used for an Aurora cluster, with the default `?` pattern or a wrong `clusterInstanceHostPattern`,
 * turns instance ids into names nobody can connect to. Following such a topology would send every
 * statement to nowhere and fail over forever; ignoring it keeps the user's host working, as plain
 * postgres.js would. Each host is asked once (again only after {@link RECHECK_MS}), and the finding
 * is logged once, with the fix.
 *
 * @module
 */

import type { Clock } from '../runtime/clock.ts'
import type { ConnectionFactory } from './connection-factory.ts'
import { type HostAddress, type HostInfo, hostKey, sameHost } from './host.ts'
import { noAnswerFrom } from './host-answers.ts'
import type { Logger } from './logger.ts'

/** How long a finding stands before the hosts are asked again (DNS may have caught up). */
const RECHECK_MS = 5 * 60_000

/** What {@link InstanceReachability} needs. */
export interface ReachabilityConfig {
  readonly initialHosts: readonly HostAddress[]
  readonly probeTimeoutMs: number
  readonly clock: Clock
  readonly logger: Logger
  /** The pattern in use, for the log line (`?` by default). */
  readonly pattern: string
}

/** Remembers, per topology host, whether a connection to it opens. */
export class InstanceReachability {
  readonly #config: ReachabilityConfig
  readonly #verdicts = new Map<string, { reachable: boolean; at: number }>()
  #logged = false

  constructor(config: ReachabilityConfig) {
    this.#config = config
  }

  /**
   * Whether a topology of `hosts`, read from `source`, can be followed: true unless it was read
   * from a host the user gave, names none of them, and not one of its hosts accepts a connection.
   *
   * @example
   * ```ts
   * if (!(await reachability.usable(factory, readFrom, topologyHosts))) return // keep the user's host
   * ```
   */
  async usable(
    factory: ConnectionFactory,
    source: HostAddress,
    hosts: readonly HostInfo[],
  ): Promise<boolean> {
    const { initialHosts } = this.#config
    if (!initialHosts.some((h) => sameHost(h, source))) return true
    if (hosts.some((h) => initialHosts.some((i) => sameHost(h, i)))) return true
    // The writer first: the client connects to it next anyway (an IAM token for it is reused), so
    // a healthy cluster costs one connection more, and the others are asked only if it fails.
    const [first, ...others] = [...hosts].sort(
      (a, b) => Number(b.role === 'writer') - Number(a.role === 'writer'),
    )
    if (first && (await this.#reachable(factory, first))) return true
    const answers = await Promise.all(others.map((h) => this.#reachable(factory, h)))
    if (answers.some(Boolean)) return true
    if (!this.#logged) {
      this.#logged = true
      this.#config.logger.warn(
        `topology: ${hosts.map(hostKey).join(', ')} (the cluster's instances, named with ` +
          `clusterInstanceHostPattern ${JSON.stringify(this.#config.pattern)}) cannot be reached, while ` +
          `${hostKey(source)} answers: using ${initialHosts.map(hostKey).join(', ')} only, without topology ` +
          '(no read scaling; a failover waits for that host). Set clusterInstanceHostPattern to how instance ' +
          "names become host names, e.g. '?.abc123def.us-east-1.rds.amazonaws.com' for Aurora.",
        { source: hostKey(source) },
      )
    }
    return false
  }

  async #reachable(factory: ConnectionFactory, host: HostAddress): Promise<boolean> {
    const now = this.#config.clock.now()
    const known = this.#verdicts.get(hostKey(host))
    if (known && (known.reachable || now - known.at < RECHECK_MS)) return known.reachable
    // A host that answers with a refusal (credentials, too many connections) is there.
    const reachable = (await noAnswerFrom(factory, host, this.#config.probeTimeoutMs)) === undefined
    this.#verdicts.set(hostKey(host), { reachable, at: now })
    return reachable
  }
}
