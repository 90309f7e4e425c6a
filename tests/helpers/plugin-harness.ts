/**
 * A bench for calling a credential plugin's hooks directly, without a client: the fake services
 * (fake time, a recording logger, the driver's own classifier) and a `next` that really opens a
 * postgres.js connection with the credentials the plugins put in the context.
 *
 * @example
 * ```ts
 * const h = pluginHarness({ ssl: 'require' })
 * await plugin.init!(h.services)
 * const ctx = h.connectContext({ host: '127.0.0.2', port }, 'iam_user')
 * await plugin.connect!(ctx, () => h.login(ctx, { ssl: { rejectUnauthorized: false } }))
 * ```
 *
 * @module
 */
import postgres from 'postgres'
import type { HostAddress } from '../../src/core/host.ts'
import type { ConnectContext, ExecuteContext, PluginServices } from '../../src/core/plugin.ts'
import type { Clock } from '../../src/runtime/clock.ts'
import { fakeServices } from './fake-services.ts'

/** A clock tests move by hand. */
export interface ManualClock extends Clock {
  /** Moves time forward at once (no timer fires). */
  advance(ms: number): void
}

/** What {@link pluginHarness} gives a test. */
export interface PluginHarness {
  readonly services: PluginServices
  readonly clock: ManualClock
  /** Every line logged, as `level message JSON(fields)`, after masking. */
  readonly logLines: string[]
  connectContext(host: HostAddress, user: string): ConnectContext
  executeContext(host: HostAddress): ExecuteContext
  /** Opens a real connection with `ctx`'s credentials, runs `select current_user`, closes it. */
  login(ctx: ConnectContext, extra?: Record<string, unknown>): Promise<string>
}

/** Builds services around `options` (the client's validated options, plugin options included). */
export function pluginHarness(options: Record<string, unknown> = {}): PluginHarness {
  const { services, runtime, logLines } = fakeServices({ options })
  const clock: ManualClock = { now: runtime.now, wallNow: runtime.wallNow, advance: runtime.jump }
  return {
    services,
    clock,
    logLines,
    connectContext: (host, user) => ({
      host,
      purpose: 'user',
      user,
      password: undefined,
      deadline: clock.now() + 10_000,
    }),
    executeContext: (host) => ({
      kind: 'statement',
      targetRole: 'writer',
      host,
      inTransaction: false,
      sent: false,
      delivered: false,
      attempt: 0,
      description: 'select current_user',
    }),
    async login(ctx, extra = {}) {
      const sql = postgres({
        host: ctx.host.host,
        port: ctx.host.port,
        user: ctx.user,
        password: ctx.password,
        database: 'postgres',
        max: 1,
        connect_timeout: 5,
        onnotice: () => {},
        ...extra,
      })
      try {
        const [row] = await sql<{ who: string }[]>`select current_user as who`
        return row!.who
      } finally {
        await sql.end({ timeout: 1 })
      }
    },
  }
}
