/**
 * `postgresHa()`: parses the options once, builds the core client over the postgres.js driver, and
 * returns the postgres.js-shaped `sql`.
 *
 * @module
 */
import type { Options as PostgresOptions, PostgresType, Sql } from 'postgres'
import { HaClient } from './core/client.ts'
import { pluginConnect } from './core/connect-contract.ts'
import { type HostAddress, hostKey, type TargetRole } from './core/host.ts'
import { parseHostPattern } from './core/host-pattern.ts'
import { parseRdsHost, rdsInstanceHostPattern } from './core/rds-hosts.ts'
import { resolveSessionRouting, splitSessionParams } from './core/session-attrs.ts'
import { detectDialect, dialectByName } from './dialects/detect.ts'
import { createPostgresJsDriver, createSql, parseConnection } from './drivers/postgresjs/mod.ts'
import { createReaderSql } from './drivers/postgresjs/reader-sql.ts'
import { closeLeftHosts } from './drivers/postgresjs/retire.ts'
import { createHaApi, type HaApi } from './ha-api.ts'
import { type HaOptions, parseOptions, refuseHaOptionsInUrl } from './options.ts'
import { resolvePlugins } from './plugins/mod.ts'
import { readEnv } from './runtime/env.ts'

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
  const { driver: postgresJs, ha: parsedHa } = parseOptions(given)
  const plugins = resolvePlugins(parsedHa.plugins)
  if (typeof url === 'string') refuseHaOptionsInUrl(url)
  const split = splitSessionParams(typeof url === 'string' ? url : '')
  // postgres.js refuses `any` (also from PGTARGETSESSIONATTRS) and would send `load_balance_hosts`
  // to the server: both are resolved here instead, and postgres.js gets neither.
  const { target_session_attrs, load_balance_hosts, ...driverOptions } = postgresJs
  const forDriver = { ...driverOptions, target_session_attrs: 'primary' } as Parameters<
    typeof parseConnection
  >[1]
  const parsed = typeof url === 'string' ? parseConnection(split.url, forDriver) : parseConnection(forDriver)
  const first = parsed.hosts[0]
  const session = resolveSessionRouting({
    targetRole: given?.targetRole as TargetRole | undefined,
    readerFallback: parsedHa.readerFallback,
    option: target_session_attrs as string | undefined,
    urlParam: split.targetSessionAttrs,
    env: readEnv('PGTARGETSESSIONATTRS'),
    loadBalanceOption: load_balance_hosts as string | undefined,
    loadBalanceUrlParam: split.loadBalanceHosts,
    loadBalanceEnv: readEnv('PGLOADBALANCEHOSTS'),
    readerEndpoint: parseRdsHost(first.host).kind === 'cluster-reader',
  })
  ;(parsed.options as { target_session_attrs: unknown }).target_session_attrs =
    session.targetSessionAttrs ?? null
  const ha = { ...parsedHa, targetRole: session.targetRole }
  // libpq's load_balance_hosts=random: the listed hosts are tried in random order.
  const initialHosts = session.loadBalanceHosts === 'random' ? shuffled(parsed.hosts) : parsed.hosts
  const hostPattern =
    ha.clusterInstanceHostPattern ??
    (parseHostPattern(rdsInstanceHostPattern(first.host) ?? '?') as Exclude<
      ReturnType<typeof parseHostPattern>,
      string
    >)
  const clusterId = ha.clusterId ?? deriveClusterId(parsed.hosts)

  // Two steps, so nothing needs an object not yet built: the plugins' connect chain, the driver
  // on it (user connections log in through it), then the client on both.
  const connect = pluginConnect(plugins, ha.runtime)
  const driver = createPostgresJsDriver({
    parsed,
    connect,
    // The user's own `connect_timeout` (any form postgres.js takes) governs user connections
    // unless `connectTimeoutMs` says otherwise.
    connectTimeoutMs:
      given?.connectTimeoutMs !== undefined || postgresJs.connect_timeout === undefined
        ? ha.connectTimeoutMs
        : undefined,
  })
  const client = new HaClient({
    // Plugins such as `iam` check TLS; they see the resolved postgres.js setting.
    options: Object.freeze({ ...ha, ssl: parsed.options.ssl }),
    plugins,
    driver,
    connect,
    initialHosts,
    session,
    clusterId,
    hostPattern,
    dialect: ha.dialect === 'auto' ? undefined : dialectByName(ha.dialect),
    detectDialect,
    user: parsed.user,
  })
  const surface = {
    executor: client,
    pools: driver.pools,
    base: parsed.base,
    events: client.events,
    logger: client.logger,
  }
  // `sql.ha.reader` carries `sql.ha` too: the reader surface first, then the api over it.
  const reader = createReaderSql<HaApi>(surface)
  const api = createHaApi(client, clusterId, reader.sql as unknown as HaApi['reader'])
  Object.assign(reader.sql, { ha: api })
  // One client, two surfaces over the same pools: either end() stops both at once (a statement made
  // after it gets CONNECTION_ENDED on either) and closes the pools once both have drained.
  const sql = createSql({
    ...surface,
    ha: api,
    onEnding: () => client.ending(),
    onEnd: () => client.end(),
    alongside: (options) => reader.drain(options),
  })
  Object.assign(reader.sql, { end: sql.end })
  // A host that left the cluster keeps no pool (listed hosts and the writer stay).
  client.events.on('topology', ({ topology }) => {
    for (const host of closeLeftHosts(driver.pools, topology, initialHosts, client.writer()))
      client.logger.debug('pool closed: the host left the topology', { host: hostKey(host) })
  })
  return sql as unknown as PostgresHaSql<Record<string, unknown>>
}

/** A copy of `list` in random order (Fisher-Yates). */
function shuffled<T>(list: readonly T[]): T[] {
  const out = [...list]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const swapped = out[i] as T
    out[i] = out[j] as T
    out[j] = swapped
  }
  return out
}

/**
 * Clients share a topology monitor when they name the same cluster. An RDS cluster's writer and
 * reader endpoints are one cluster; other hosts are identified by the sorted host list.
 */
function deriveClusterId(hosts: readonly [HostAddress, ...HostAddress[]]): string {
  const first = hosts[0]
  const rds = parseRdsHost(first.host)
  if (rds.kind === 'cluster-writer' || rds.kind === 'cluster-reader' || rds.kind === 'cluster-custom')
    return `${rds.name}.${rds.domain}`.toLowerCase()
  return hosts.map(hostKey).sort().join(',').toLowerCase()
}
