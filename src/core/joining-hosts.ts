/**
 * Hosts joining a cluster: listed by the topology with a role never known yet (a standby still
 * starting or being built, a Patroni member creating its replica). While there are some, the
 * topology monitor reads again sooner than its calm interval, so that a joining reader gets reads
 * about as soon as it is ready rather than up to `topologyRefreshMs` later.
 *
 * @module
 */
import { hostKey } from './host.ts'
import type { Topology } from './topology.ts'

/**
 * The first pause before the next read while hosts are joining; it doubles at each read that finds
 * the same joining hosts, up to the calm interval. A listed host that never comes costs a handful
 * of reads (after 1, 2, 4, 8, 16 s), then the calm rate. A host that was known and went down (an
 * old writer) is not joining.
 */
export const JOINING_RECHECK_MS = 1_000

/**
 * Which hosts are joining, from one topology reading to the next.
 *
 * @example
 * ```ts
 * const joining = new JoiningHosts()
 * if (joining.note(topology)) reschedule()
 * const delay = joining.delay(30_000) // 1000, then 2000, 4000 ... while the same hosts join
 * ```
 */
export class JoiningHosts {
  /** Hosts seen as a writer or a reader. */
  readonly #known = new Set<string>()
  /** The joining hosts of the last reading, as one key; '' for none. */
  #key = ''
  /** Readings in a row that found the same joining hosts. */
  #reads = 0

  /** Takes a reading in; true when hosts newly started joining (the next read should come sooner). */
  note(topology: Topology): boolean {
    for (const h of topology.hosts) if (h.role !== 'unknown') this.#known.add(hostKey(h))
    const key = topology.hosts
      .filter((h) => h.role === 'unknown' && !this.#known.has(hostKey(h)))
      .map(hostKey)
      .sort()
      .join(' ')
    if (key === this.#key) {
      if (key) this.#reads++
      return false
    }
    this.#key = key
    this.#reads = 0
    return key !== ''
  }

  /** The pause before the next read while hosts join, at most `calmMs`; undefined when none does. */
  delay(calmMs: number): number | undefined {
    if (!this.#key) return undefined
    return Math.min(calmMs, JOINING_RECHECK_MS * 2 ** Math.min(this.#reads, 20))
  }
}
