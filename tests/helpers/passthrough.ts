import type { Attempt, ExecuteRequest, Executor, Lane } from '../../src/core/executor.ts'
import type { HostAddress } from '../../src/core/host.ts'
import type { ExecuteContext } from '../../src/core/plugin.ts'

/** What a pass-through executor saw: every request and the context of every attempt. */
export interface Recorded {
  request: ExecuteRequest
  ctx: ExecuteContext
  error?: unknown
}

/**
 * A stand-in for the core: runs every attempt once on `host()` (the pinned host when there is one),
 * with a fresh context, and records what it saw. Like the core once it is ready, it offers a lane
 * (the fast path) for work that is not pinned, so that the driver's tests run what users run in
 * the steady state; `lanes = false` sends everything through `execute`.
 */
export function passthroughExecutor(
  host: () => HostAddress,
): Executor & { log: Recorded[]; ignorePinned: boolean; lanes: boolean } {
  const log: Recorded[] = []
  /** A fresh context for one attempt on `target`, kept in the log (its last 500 to 1000 entries). */
  const record = (request: ExecuteRequest, target: HostAddress) => {
    const ctx: ExecuteContext = {
      kind: request.kind,
      targetRole: request.targetRole ?? 'writer',
      host: target,
      inTransaction: request.inTransaction ?? false,
      sent: false,
      delivered: false,
      attempt: 0,
      description: request.description ?? '',
    }
    const entry: Recorded = { request, ctx }
    if (log.length > 1000) log.splice(0, 500)
    log.push(entry)
    return { ctx, entry }
  }
  return {
    log,
    /** Set to act like a core that moved a reserved connection to another host (failover). */
    ignorePinned: false,
    lanes: true,
    lane(request: ExecuteRequest): Lane | undefined {
      if (!this.lanes || request.pinnedHost) return undefined
      const target = host()
      const { ctx, entry } = record(request, target)
      return {
        host: target,
        ctx,
        settled() {},
        failed(error) {
          entry.error = error
          return Promise.reject(error)
        },
      }
    },
    async execute<T>(request: ExecuteRequest, attempt: Attempt<T>): Promise<T> {
      const target = (!this.ignorePinned && request.pinnedHost) || host()
      const { ctx, entry } = record(request, target)
      try {
        return await attempt(target, ctx)
      } catch (error) {
        entry.error = error
        throw error
      }
    },
  }
}

import type postgres from 'postgres'
import { createEvents, type HaEvents } from '../../src/core/events.ts'
import { createHostPools, createSql, type HaSql, parseConnection } from '../../src/drivers/postgresjs/mod.ts'
import type { HostPools } from '../../src/drivers/postgresjs/pools.ts'

/** A driver-only client: the postgres.js-shaped `sql` on a pass-through executor to the first host. */
export function driverClient(
  url: string,
  options: postgres.Options<Record<string, postgres.PostgresType>> = {},
  ha: unknown = {},
): {
  sql: HaSql
  pools: HostPools
  executor: ReturnType<typeof passthroughExecutor>
  target: { host: HostAddress }
  /** The events the sql surface listens to: emit `writerChanged` as the core would. */
  events: HaEvents
} {
  const parsed = parseConnection(url, { onnotice: () => {}, ...options })
  const pools = createHostPools({ parsed })
  const target = { host: parsed.hosts[0] }
  const executor = passthroughExecutor(() => target.host)
  const events = createEvents()
  const sql = createSql({ executor, pools, base: parsed.base, ha, events })
  return { sql, pools, executor, target, events }
}
