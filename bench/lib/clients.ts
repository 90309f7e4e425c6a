/**
 * The clients the benchmarks compare, each made fresh for a trial: postgres-ha with its default
 * options on the cluster endpoint, and plain postgres.js two ways — on the cluster endpoint (as
 * most applications connect today) and with every instance listed and
 * `target_session_attrs: 'read-write'` (postgres.js's own multi-host failover).
 *
 * @module
 */
import postgres from 'postgres'
import type { Lab } from '../../lab/mod.ts'
import { postgresHa } from './entry.ts'
import { nowMs } from './report.ts'
import type { ClientUnderTest } from './trial.ts'
import type { AnySql } from './write-loop.ts'

/** Which client a trial uses. */
export type ClientKind = 'postgres-ha' | 'postgres.js cluster' | 'postgres.js multi-host'

export const CLIENT_KINDS: readonly ClientKind[] = [
  'postgres-ha',
  'postgres.js cluster',
  'postgres.js multi-host',
]

/** `postgres://user:password@h1:p,h2:p,h3:p/db`: every instance endpoint of the lab. */
export async function allInstancesUrl(lab: Lab): Promise<string> {
  const status = await lab.status()
  const base = new URL(lab.url('cluster'))
  const hosts = status.nodes.map((n) => `${n.host}:${n.port}`).join(',')
  return `postgres://${base.username}:${base.password}@${hosts}${base.pathname}`
}

/**
 * A connected client of `kind` (one statement already answered).
 *
 * @example
 * ```ts
 * const client = await makeClient(lab, 'postgres-ha')
 * await client.sql`select 1`
 * await client.end()
 * ```
 */
export async function makeClient(lab: Lab, kind: ClientKind): Promise<ClientUnderTest> {
  if (kind === 'postgres-ha') {
    const sql = postgresHa(lab.url('cluster'))
    // The first sign of the fault the client acted on: a host declared down or a failover started.
    const seen: number[] = []
    const failovers: number[] = []
    sql.ha.on('hostDown', () => seen.push(nowMs()))
    sql.ha.on('failoverStart', () => seen.push(nowMs()))
    sql.ha.on('failover', (e) => {
      if (e.ok) failovers.push(nowMs())
    })
    await sql`select 1`
    return {
      sql: sql as unknown as AnySql,
      detectedAfter: (faultMs) => seen.find((t) => t >= faultMs),
      failedOverAfter: (faultMs) => failovers.find((t) => t >= faultMs),
      end: () => sql.end({ timeout: 1 }),
    }
  }
  const url = kind === 'postgres.js cluster' ? lab.url('cluster') : await allInstancesUrl(lab)
  const sql = postgres(url, {
    onnotice: () => {},
    ...(kind === 'postgres.js multi-host' ? { target_session_attrs: 'read-write' as const } : {}),
  })
  await sql`select 1`
  return { sql, end: () => sql.end({ timeout: 0 }) }
}
