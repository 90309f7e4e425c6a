/**
 * Patroni: the members, their roles, the synchronous standby and the lag come from Patroni's REST
 * API (`GET /cluster` on any member), which knows every member even when the client was given one
 * host. The leader Patroni names is only a claim — after a kill it names the dead leader until its
 * key expires (`ttl`) — so the writer is confirmed on the host itself (`pg_is_in_recovery()`).
 * Replication lag in milliseconds comes from the leader's `pg_stat_replication`, where Patroni
 * sets `application_name` to the member name.
 *
 * @module
 */
import type { DbConnection } from '../core/connection-factory.ts'
import { type Dialect, readRole, type TopologyContext } from '../core/dialect.ts'
import { type HostAddress, type HostInfo, type HostRole, sameHost } from '../core/host.ts'
import { httpGetJson } from '../runtime/http.ts'
import { type PatroniSettings, patroniSettingsOf } from './patroni-options.ts'

/** One member as `GET /cluster` reports it (Patroni 3). */
export interface PatroniMember {
  readonly name: string
  readonly host: string
  readonly port: number
  /** `leader`, `sync_standby`, `replica`, `standby_leader` (older: `master`). */
  readonly role: string
  /** `running`, `streaming`, `starting`, `stopped`, ... */
  readonly state: string
  /** WAL bytes behind the leader, or `unknown`. */
  readonly lag?: number | string
}

/** Lag per application name (Patroni's member name) as the leader sees it. */
export const PATRONI_LAG_QUERY =
  'SELECT application_name, COALESCE(EXTRACT(EPOCH FROM replay_lag) * 1000, 0)::float8 AS lag_ms ' +
  'FROM pg_catalog.pg_stat_replication'

const LEADER_ROLES = new Set(['leader', 'master', 'standby_leader', 'primary'])
const RUNNING = new Set(['running', 'streaming'])

function isMembers(body: unknown): body is { members: PatroniMember[] } {
  const members = (body as { members?: unknown } | null)?.members
  return (
    Array.isArray(members) &&
    members.every(
      (m) => m && typeof m.name === 'string' && typeof m.host === 'string' && typeof m.role === 'string',
    )
  )
}

/** The `/cluster` URLs to ask: the given ones, else each host's REST port, `first` first. */
export function clusterUrls(settings: PatroniSettings, hosts: readonly HostAddress[]): string[] {
  if (settings.urls) return settings.urls.map((u) => `${u}/cluster`)
  const seen = new Set<string>()
  const out: string[] = []
  for (const h of hosts) {
    const host = h.host.includes(':') ? `[${h.host}]` : h.host
    const url = `${settings.scheme}://${host}:${settings.restPort}/cluster`
    if (!seen.has(url)) {
      seen.add(url)
      out.push(url)
    }
  }
  return out
}

/**
 * Reads `/cluster` from the first URL that answers with a member list: the first URL alone, then
 * the others at once (a dead member's API must not hold up the others').
 */
export async function readPatroniCluster(
  urls: readonly string[],
  settings: PatroniSettings,
  timeoutMs: number,
): Promise<PatroniMember[]> {
  const one = async (url: string) => {
    const { status, body } = await httpGetJson(url, {
      timeoutMs,
      headers: settings.headers,
      tls: settings.tls,
    })
    if (status !== 200 || !isMembers(body)) throw new Error(`${url} answered ${status} without a member list`)
    return body.members
  }
  if (urls.length === 0) throw new Error('no Patroni REST API URL to ask')
  try {
    return await one(urls[0]!)
  } catch (error) {
    if (urls.length === 1) throw error
    return await Promise.any(urls.slice(1).map(one)).catch((e: AggregateError) => {
      throw new Error(`no Patroni REST API answered (${urls.join(', ')})`, { cause: e.errors ?? e })
    })
  }
}

/** A row of {@link PATRONI_LAG_QUERY}. */
interface LagRow {
  application_name: string
  lag_ms: number
}

/**
 * The Patroni dialect.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app@db1:5432/app', { dialect: 'patroni', patroniRestPort: 8008 })
 * ```
 */
export const patroniDialect: Dialect = Object.freeze({
  name: 'patroni' as const,
  async readTopology(conn: DbConnection, context: TopologyContext): Promise<HostInfo[]> {
    const settings = patroniSettingsOf(context.options)
    const urls = clusterUrls(settings, [conn.host, ...context.knownHosts, ...context.initialHosts])
    const members = await readPatroniCluster(urls, settings, context.probeTimeoutMs)
    const claimed = members.find((m) => LEADER_ROLES.has(m.role))
    // A claim is confirmed on the host itself; the connection we read through answers for its own.
    let leaderRole: HostRole = 'unknown'
    if (claimed) {
      const address = { host: claimed.host, port: Number(claimed.port) }
      leaderRole = sameHost(address, conn.host) ? await readRole(conn) : await context.probeRole(address)
    }
    const lagMs = new Map<string, number>()
    if (claimed && leaderRole === 'writer') {
      const address = { host: claimed.host, port: Number(claimed.port) }
      // The leader's pg_stat_replication, over the topology connection when it is the leader's,
      // else over the leader's probe connection: after a failover the topology connection is
      // often on the old leader, back as a replica, and the lag in ms would go unknown. Lag is an
      // extra there: a leader that does not answer leaves it to Patroni's lag in bytes.
      const rows = sameHost(address, conn.host)
        ? await conn.query<LagRow>(PATRONI_LAG_QUERY)
        : await context.probe<LagRow>(address, PATRONI_LAG_QUERY).catch((): LagRow[] => [])
      for (const r of rows) lagMs.set(r.application_name, Number(r.lag_ms))
    }
    return members.map((m) => {
      const leader = m === claimed
      const role: HostRole = leader ? leaderRole : RUNNING.has(m.state) ? 'reader' : 'unknown'
      const bytes = typeof m.lag === 'number' ? m.lag : undefined
      return {
        host: m.host,
        port: Number(m.port),
        id: m.name,
        role,
        ...(leader && role === 'writer'
          ? { lagMs: 0 }
          : lagMs.has(m.name)
            ? { lagMs: lagMs.get(m.name) }
            : {}),
        ...(bytes !== undefined ? { lagBytes: bytes } : {}),
        ...(m.role === 'sync_standby' ? { synchronous: true } : {}),
      }
    })
  },
})

/** Whether a Patroni REST API answers for `host` (auto-detection). */
export async function patroniAnswers(
  host: HostAddress,
  settings: PatroniSettings,
  timeoutMs: number,
): Promise<boolean> {
  try {
    await readPatroniCluster(clusterUrls(settings, [host]), settings, timeoutMs)
    return true
  } catch {
    return false
  }
}
