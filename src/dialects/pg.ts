/**
 * Plain PostgreSQL streaming replication (self-hosted, Patroni, ...): the hosts are the ones listed
 * in the connection string, each asked for its own role and what its WAL receiver calls itself;
 * the writer's `pg_stat_replication` gives each standby's replay lag (see standby-lag.ts).
 *
 * @module
 */
import type { DbConnection } from '../core/connection-factory.ts'
import type { Dialect, TopologyContext } from '../core/dialect.ts'
import { type HostInfo, sameHost } from '../core/host.ts'
import { electWriter } from './split-brain.ts'
import {
  identityOf,
  lagOf,
  probeOf,
  readIdentity,
  STANDBY_IDENTITY_QUERY,
  type StandbyIdentity,
  type WriterQuery,
} from './standby-lag.ts'

const UNKNOWN: StandbyIdentity = Object.freeze({ role: 'unknown', slotName: null, applicationName: null })

/**
 * The plain streaming-replication dialect.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app@db1:5432,db2:5432,db3:5432/app', { dialect: 'pg' })
 * ```
 */
export const pgDialect: Dialect = Object.freeze({
  name: 'pg' as const,
  async readTopology(conn: DbConnection, context: TopologyContext): Promise<HostInfo[]> {
    const own = await readIdentity(conn)
    const identities = await Promise.all(
      context.initialHosts.map(
        (h): Promise<StandbyIdentity> =>
          sameHost(h, conn.host)
            ? Promise.resolve(own)
            : context
                .probe<Parameters<typeof identityOf>[0][number]>(h, STANDBY_IDENTITY_QUERY)
                .then(identityOf, () => UNKNOWN),
      ),
    )
    const claimers = context.initialHosts.filter((_, i) => identities[i]!.role === 'writer')
    const writer = await electWriter(claimers, conn, context)
    // Lag is the writer's to tell (its pg_stat_replication). The topology connection is on the
    // first listed host that answers, which after a failover is often a standby (the old writer
    // back as one): then the writer is asked over its probe connection, or every reader's lag
    // would stay unknown and maxReplicaLagMs / lowestLag would have nothing to go on.
    // Lag needs pg_monitor; without it the hosts and roles still stand.
    const source: WriterQuery | undefined = !writer
      ? undefined
      : own.role === 'writer' && sameHost(conn.host, writer)
        ? conn
        : probeOf(context, writer)
    const lags = source
      ? await lagOf(source, identities).catch(() => identities.map(() => undefined))
      : identities.map(() => undefined)
    return context.initialHosts.flatMap((h, i) => {
      const role = identities[i]!.role
      // A primary that lost the election is left out: it is no standby of the writer.
      if (role === 'writer' && !sameHost(h, writer)) return []
      return [{ host: h.host, port: h.port, id: h.host, role, lagMs: role === 'writer' ? 0 : lags[i] }]
    })
  },
})
