import postgres from 'postgres'
import { ADMIN_PASSWORD, ADMIN_USER } from '../../lab/instance.ts'
import type { Lab, LabStatus } from '../../lab/mod.ts'
import type { PostgresHaOptions } from '../../src/postgres-ha.ts'

/** A URL listing every instance endpoint of a lab (what a self-managed cluster's users write). */
export function allInstancesUrl(lab: Lab, status: LabStatus): string {
  const base = new URL(lab.url('cluster'))
  const hosts = status.nodes.map((n) => `${n.host}:${n.port}`).join(',')
  return `postgres://${base.username}:${base.password}@${hosts}${base.pathname}`
}

/** Options for a client on a lab: quick to give up, so that a failing test fails fast. */
export function labClientOptions(extra: PostgresHaOptions = {}): PostgresHaOptions {
  return { failoverTimeoutMs: 20_000, connectTimeoutMs: 5_000, max: 4, ...extra }
}

/** Waits until `check` returns true, polling every 20 ms, up to `timeoutMs`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

/** Settles a promise into `{ ok, value | error, ms }` without throwing. */
export async function settle<T>(
  p: Promise<T>,
): Promise<{ ok: true; value: T; ms: number } | { ok: false; error: any; ms: number }> {
  const t0 = performance.now()
  try {
    return { ok: true, value: await p, ms: performance.now() - t0 }
  } catch (error) {
    return { ok: false, error, ms: performance.now() - t0 }
  }
}

/** `p`, or an error naming `what` if it has not settled within `ms` (the timer cleared either way). */
export async function within<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, bound])
  } finally {
    clearTimeout(timer)
  }
}

/** Ends backend `pid` of the lab's server behind `url` (`pg_terminate_backend`, from a client of its own). */
export async function terminateBackend(url: string, pid: number): Promise<void> {
  const admin = postgres(url, { max: 1, onnotice: () => {} })
  try {
    await admin`select pg_terminate_backend(${pid})`
  } finally {
    await admin.end()
  }
}

/** `url` with the lab's superuser in place of the app's role (for faults the app may not cause). */
export function asLabAdmin(url: string): string {
  const admin = new URL(url)
  admin.username = ADMIN_USER
  admin.password = ADMIN_PASSWORD
  return admin.toString()
}

/** A logger that keeps each warn and error as `message {fields as JSON}`, and drops the rest. */
export function warnCapture(): { lines: string[]; logger: NonNullable<PostgresHaOptions['logger']> } {
  const lines: string[] = []
  const keep = (m: string, f?: Record<string, unknown>) => {
    lines.push(`${m} ${JSON.stringify(f)}`)
  }
  return { lines, logger: { debug() {}, info() {}, warn: keep, error: keep } }
}

/**
 * A lab whose silent writer is replaced quickly, and client options that notice it quickly
 * (200 ms grace + 2 probes of 500 ms): the set-up of the silent-writer tests.
 */
export const SILENT_WRITER_LAB = { nodes: 3, promoteAfterMs: 200, probeTimeoutMs: 500, endpointLagMs: 60_000 }
export const FAST_DETECTION = {
  failureDetectionTime: 200,
  failureDetectionInterval: 500,
  failureDetectionCount: 2,
} as const

/**
 * Brings a faulted node back after a test: heal kills a replaced writer (it must never act as a
 * second one); start brings it back as a reader. Then waits for a writer.
 */
export async function restoreNode(lab: Lab, id: string, timeoutMs = 20_000): Promise<void> {
  await lab.heal(id)
  const node = (await lab.status()).nodes.find((n) => n.id === id)!
  if (node.state !== 'running') await lab.start(id)
  await lab.waitForWriter({ timeoutMs })
}

/** Waits until backend `pid` runs `pg_sleep`, as `admin` sees it (the statements after it are then sent or queued). */
export function sleeping(admin: postgres.Sql, pid: number): Promise<void> {
  return eventually(
    async () =>
      (
        await admin`select 1 from pg_stat_activity
          where pid = ${pid} and state = 'active' and query like 'select pg_sleep%'`
      ).length === 1,
    10_000,
    `backend ${pid} to run pg_sleep`,
  )
}
