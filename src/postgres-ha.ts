/**
 * `postgresHa()`: parses the options once, builds the core client over the postgres.js driver, and
 * returns the postgres.js-shaped `sql`.
 *
 * @module
 */
import type { Options as PostgresOptions, PostgresType, Sql } from 'postgres'
import { HaClient } from './core/client.ts'
import { type HostAddress, hostKey } from './core/host.ts'
import { parseHostPattern } from './core/host-pattern.ts'
import { type HaOptions, parseOptions } from './core/options.ts'
import { parseRdsHost, rdsInstanceHostPattern } from './core/rds-hosts.ts'
import { dialectByName } from './dialects/detect.ts'
import {
  createConnectionFactory,
  createHostPools,
  createSql,
  parseConnection,
  sqlControl,
} from './drivers/postgresjs/mod.ts'
import { createHaApi, type HaApi } from './ha-api.ts'
import { resolvePlugins } from './plugins/registry.ts'

/** Everything `postgresHa()` accepts: the postgres.js options plus postgres-ha's own. */
export type PostgresHaOptions<T extends Record<string, PostgresType> = {}> = PostgresOptions<T> & HaOptions

/** The `sql` returned by `postgresHa()`: a postgres.js `Sql` plus `sql.ha`. */
export type PostgresHaSql<T extends Record<string, unknown> = {}> = Sql<T> & { readonly ha: HaApi }

/** The JavaScript types of custom postgres.js `types`, as postgres.js itself maps them. */
export type TypesOf<T extends Record<string, PostgresType>> =
  Record<string, PostgresType> extends T
    ? {}
    : {
        [type in keyof T]: T[type] extends {
          serialize: (value: infer R) => any
          parse: (raw: any) => infer R
        }
          ? R
          : never
      }

/**
 * Creates a high-availability postgres.js client. Accepts what `postgres()` accepts (a URL, an
 * options object, or both) plus the options in {@link HaOptions}; returns an `sql` with the
 * postgres.js API and `sql.ha` for events and topology.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app:secret@db.cluster-abc123.us-east-1.rds.amazonaws.com/app', {
 *   failoverTimeoutMs: 60_000,
 * })
 * const [{ now }] = await sql`select now()`
 * await sql.end()
 * ```
 */
export function postgresHa<T extends Record<string, PostgresType> = {}>(
  options?: PostgresHaOptions<T>,
): PostgresHaSql<TypesOf<T>>
/** Creates a high-availability postgres.js client from a connection URL and options (see above). */
export function postgresHa<T extends Record<string, PostgresType> = {}>(
  url: string,
  options?: PostgresHaOptions<T>,
): PostgresHaSql<TypesOf<T>>
export function postgresHa(
  url?: string | PostgresHaOptions,
  options?: PostgresHaOptions,
): PostgresHaSql<Record<string, unknown>> {
  const given = (typeof url === 'string' ? options : url) as Record<string, unknown> | undefined
  const { postgresJs, ha } = parseOptions(given)
  const plugins = resolvePlugins(ha.plugins)
  const parsed =
    typeof url === 'string'
      ? parseConnection(url, postgresJs as PostgresOptions<{}>)
      : parseConnection(postgresJs as PostgresOptions<{}>)
  const first = parsed.hosts[0]!
  const hostPattern =
    ha.clusterInstanceHostPattern ??
    (parseHostPattern(rdsInstanceHostPattern(first.host) ?? '?') as Exclude<
      ReturnType<typeof parseHostPattern>,
      string
    >)
  const clusterId = ha.clusterId ?? deriveClusterId(parsed.hosts)

  // The pools and the client need each other: pool connections run the client's connect plugins.
  let client: HaClient | undefined
  const pools = createHostPools({
    parsed,
    connectHook: (ctx) => client!.runConnectPlugins(ctx),
    connectTimeoutMs: ha.connectTimeoutMs,
  })
  client = new HaClient({
    options: Object.freeze({
      ...ha,
      // Plugins such as `iam` check TLS; they see the resolved postgres.js setting.
      pluginOptions: Object.freeze({ ...ha.pluginOptions, ssl: parsed.options.ssl }),
    }),
    plugins,
    driverFactory: createConnectionFactory({ parsed }),
    initialHosts: parsed.hosts,
    clusterId,
    hostPattern,
    dialect: ha.dialect === 'auto' ? undefined : dialectByName(ha.dialect),
    user: parsed.user,
    abortHost: (host, reason) => pools.abort(host, reason),
    connectedHosts: () => pools.hosts().filter((h) => pools.connectionCount(h) > 0),
    connectionCount: (host) => pools.connectionCount(host),
    onUserResolved: (user) => pools.setUser(user),
  })
  const haClient = client
  const sql = createSql({
    executor: haClient,
    pools,
    base: parsed.base,
    ha: createHaApi(haClient, clusterId),
    onEnd: () => haClient.end(),
  })
  // A LISTEN lives on one connection: when the writer moves, it moves with it.
  haClient.events.on('writerChanged', ({ from }) => {
    if (from)
      void sqlControl(sql)
        ?.relisten()
        .catch((error) => haClient.logger.warn('re-listen failed', { error: String(error) }))
  })
  return sql as unknown as PostgresHaSql<Record<string, unknown>>
}

/**
 * Clients share a topology monitor when they name the same cluster. An RDS cluster's writer and
 * reader endpoints are one cluster; other hosts are identified by the sorted host list.
 */
function deriveClusterId(hosts: readonly HostAddress[]): string {
  const first = hosts[0]!
  const rds = parseRdsHost(first.host)
  if (rds.kind === 'cluster-writer' || rds.kind === 'cluster-reader' || rds.kind === 'cluster-custom')
    return `${rds.name}.${rds.domain}`.toLowerCase()
  return hosts.map(hostKey).sort().join(',').toLowerCase()
}
