/**
 * Two hosts answering as primary (a partition, or an old primary restarted without `pg_rewind`
 * next to the standby promoted in its place): the writer is chosen by evidence, never by the
 * order the hosts were listed. A promotion starts a new timeline, so the primary on the highest
 * timeline is the one promoted last; the others are left out of the topology (their data forked
 * off). With no such evidence (the same timeline, or a timeline that cannot be read) none is
 * trusted as the writer.
 *
 * @module
 */
import type { DbConnection } from '../core/connection-factory.ts'
import type { TopologyContext } from '../core/dialect.ts'
import { type HostAddress, hostKey, sameHost } from '../core/host.ts'

/**
 * The timeline a primary writes WAL on (the first 8 hex digits of its current WAL file name);
 * readable by any user, unlike `pg_control_checkpoint()`, and current right after a promotion,
 * before its first checkpoint.
 */
export const TIMELINE_QUERY =
  "SELECT ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int8 AS timeline"

/**
 * Of `claimers` (hosts that answered as primary), the one to trust as the writer, or undefined
 * when the evidence does not single one out. Each host left out is reported to
 * `context.ignoreRow` (logged once) with why.
 *
 * @example
 * ```ts
 * const writer = await electWriter([a, b], conn, context) // b: on timeline 3, a on 2
 * ```
 */
export async function electWriter(
  claimers: readonly HostAddress[],
  conn: DbConnection,
  context: TopologyContext,
): Promise<HostAddress | undefined> {
  if (claimers.length <= 1) return claimers[0]
  const timelines = await Promise.all(
    claimers.map((h) =>
      (sameHost(h, conn.host)
        ? conn.query<{ timeline: unknown }>(TIMELINE_QUERY)
        : context.probe<{ timeline: unknown }>(h, TIMELINE_QUERY)
      ).then(
        (rows) => toTimeline(rows[0]?.timeline),
        () => undefined,
      ),
    ),
  )
  const names = claimers.map(hostKey).join(', ')
  const best = Math.max(...timelines.map((t) => t ?? -1))
  const top = claimers.filter((_, i) => timelines[i] === best)
  if (best < 0 || top.length !== 1) {
    context.ignoreRow(
      `split brain: ${names} all answer as primary and their timelines (${timelines.map((t) => t ?? '?').join(', ')}) ` +
        'do not tell which was promoted last; none is used as the writer until only one answers as primary',
    )
    return undefined
  }
  const writer = top[0]!
  for (const [i, h] of claimers.entries())
    if (h !== writer)
      context.ignoreRow(
        `split brain: ${hostKey(h)} answers as primary on timeline ${timelines[i] ?? '?'}, ` +
          `${hostKey(writer)} on timeline ${best}: using ${hostKey(writer)}, ignoring ${hostKey(h)} ` +
          '(an old primary that came back without pg_rewind; rewind it or rebuild it as a standby)',
      )
  return writer
}

function toTimeline(value: unknown): number | undefined {
  const n = typeof value === 'string' ? Number(value) : typeof value === 'bigint' ? Number(value) : value
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : undefined
}
