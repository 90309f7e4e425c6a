import { spawn } from 'node:child_process'
import { join } from 'node:path'
import postgres from 'postgres'
import { labBundle } from '../../lab/daemon-bundle.ts'
import { repoRoot } from '../../lab/pg-bin.ts'

/** The AWS Node wrapper's Aurora PostgreSQL dialect queries, verbatim. */
export const AURORA = {
  topology:
    "SELECT server_id, CASE WHEN SESSION_ID OPERATOR(pg_catalog.=) 'MASTER_SESSION_ID' THEN TRUE ELSE FALSE END AS is_writer, " +
    'CPU, COALESCE(REPLICA_LAG_IN_MSEC, 0) AS lag, LAST_UPDATE_TIMESTAMP ' +
    'FROM pg_catalog.aurora_replica_status() ' +
    'WHERE EXTRACT(EPOCH FROM(pg_catalog.NOW() OPERATOR(pg_catalog.-) LAST_UPDATE_TIMESTAMP)) OPERATOR(pg_catalog.<=) 300 ' +
    "OR SESSION_ID OPERATOR(pg_catalog.=) 'MASTER_SESSION_ID' OR LAST_UPDATE_TIMESTAMP IS NULL",
  extensions:
    "SELECT (setting LIKE '%aurora_stat_utils%') AS aurora_stat_utils FROM pg_catalog.pg_settings WHERE name OPERATOR(pg_catalog.=) 'rds.extensions'",
  hostId: 'SELECT pg_catalog.aurora_db_instance_identifier() as host',
  isReader: 'SELECT pg_catalog.pg_is_in_recovery() as is_reader',
  isWriter:
    'SELECT server_id FROM pg_catalog.aurora_replica_status() ' +
    "WHERE SESSION_ID OPERATOR(pg_catalog.=) 'MASTER_SESSION_ID' AND SERVER_ID OPERATOR(pg_catalog.=) pg_catalog.aurora_db_instance_identifier()",
}

/** The AWS Node wrapper's RDS Multi-AZ DB cluster PostgreSQL dialect queries, verbatim. */
export const MULTI_AZ = {
  topology: `SELECT id, endpoint, port FROM rds_tools.show_topology('aws_advanced_nodejs_wrapper-"2.1.1"')`,
  funcExists:
    "SELECT 1 AS tmp FROM information_schema.routines WHERE routine_schema OPERATOR(pg_catalog.=) 'rds_tools' AND routine_name OPERATOR(pg_catalog.=) 'multi_az_db_cluster_source_dbi_resource_id'",
  writerId:
    'SELECT multi_az_db_cluster_source_dbi_resource_id FROM rds_tools.multi_az_db_cluster_source_dbi_resource_id()',
  hostId: 'SELECT dbi_resource_id FROM rds_tools.dbi_resource_id()',
  isReader: 'SELECT pg_catalog.pg_is_in_recovery() AS is_reader',
}

/** A one-connection postgres.js client that fails fast. */
export function client(url: string, options: Record<string, unknown> = {}) {
  return postgres(url, {
    max: 1,
    connect_timeout: 3,
    idle_timeout: 0,
    max_lifetime: null,
    onnotice: () => {},
    ...options,
  })
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** 'hung' when `p` neither resolves nor rejects within `ms`. */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<'answered' | 'failed' | 'hung'> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const hung = new Promise<'hung'>((r) => {
    timer = setTimeout(() => r('hung'), ms)
  })
  return Promise.race([
    p.then(
      () => 'answered' as const,
      () => 'failed' as const,
    ),
    hung,
  ]).finally(() => clearTimeout(timer))
}

/**
 * Runs `npm run lab -- ...` (as Node running the CLI's bundle, lab/daemon-bundle.ts; through tsx
 * where it cannot be built) and collects its output.
 */
export function runCli(
  args: string[],
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const g = globalThis as any
    const node = g.Deno || g.Bun ? 'node' : process.execPath
    const bundle = labBundle('cli')
    const cli = bundle ? [bundle] : ['--import', 'tsx', join(repoRoot, 'lab', 'cli.ts')]
    const child = spawn(node, [...cli, ...args], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d) => (stdout += d))
    child.stderr!.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** Processes whose command line mentions `dir` (postgres servers and the lab daemon). */
export async function processesIn(dir: string): Promise<string[]> {
  const { readdirSync, readFileSync } = await import('node:fs')
  const out: string[] = []
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
      if (cmd.includes(dir)) out.push(`${pid} ${cmd}`)
    } catch {}
  }
  return out
}

/**
 * What every instance says of itself, asked directly at its instance endpoint (not the control
 * plane's view): which are writable, and which standbys do not stream from the writable one.
 */
export async function roles(lab: {
  status(): Promise<{ nodes: { id: string }[] }>
  url(target: string): string
}): Promise<{ writable: string[]; notStreaming: string[]; unreachable: string[] }> {
  const ids = (await lab.status()).nodes.map((n) => n.id)
  const answers = await Promise.all(
    ids.map(async (id) => {
      const sql = client(lab.url(id))
      try {
        const [row] = await sql`SELECT pg_is_in_recovery() AS standby,
          (SELECT status FROM pg_stat_wal_receiver) AS receiver,
          array(SELECT application_name::text FROM pg_stat_replication WHERE state = 'streaming') AS senders`
        return {
          id,
          standby: row!.standby as boolean,
          receiver: row!.receiver as string | null,
          senders: row!.senders as string[],
        }
      } catch {
        return { id, unreachable: true as const }
      } finally {
        await sql.end({ timeout: 0 })
      }
    }),
  )
  const up = answers.filter((a) => !('unreachable' in a)) as {
    id: string
    standby: boolean
    receiver: string | null
    senders: string[]
  }[]
  const writable = up.filter((a) => !a.standby).map((a) => a.id)
  const senders = up.find((a) => !a.standby)?.senders ?? []
  const notStreaming = up
    .filter(
      (a) => a.standby && (a.receiver !== 'streaming' || !senders.includes(`n${a.id.split('.').pop()}`)),
    )
    .map((a) => a.id)
  return { writable, notStreaming, unreachable: answers.filter((a) => 'unreachable' in a).map((a) => a.id) }
}
