/**
 * A bench for calling a plugin's hooks directly, without a client: services with a controllable
 * clock and a recording logger, and a `next` that really opens a postgres.js connection with the
 * credentials the plugins put in the context.
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
import type { ErrorKind } from '../../src/core/connection-factory.ts'
import type { HostAddress } from '../../src/core/host.ts'
import type { Logger } from '../../src/core/logger.ts'
import { safeLogger } from '../../src/core/logger.ts'
import type { ConnectContext, ExecuteContext, PluginServices } from '../../src/core/plugin.ts'
import type { Clock } from '../../src/runtime/clock.ts'

/** A clock tests move by hand. */
export interface ManualClock extends Clock {
  advance(ms: number): void
}

/** Creates a {@link ManualClock} starting at 1 000 000 ms. */
export function manualClock(): ManualClock {
  let t = 1_000_000
  return { now: () => t, wallNow: () => Date.now() + t - 1_000_000, advance: (ms) => void (t += ms) }
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

/** Classifies postgres.js errors the way the driver does, for the few kinds these tests meet. */
export function classifyPostgresError(error: unknown): ErrorKind {
  const code = (error as { code?: unknown })?.code
  if (code === '28P01' || code === '28000') return 'auth-failed'
  if (code === 'ECONNREFUSED' || code === 'CONNECT_TIMEOUT' || code === 'ETIMEDOUT') return 'connect-failed'
  if (code === 'CONNECTION_CLOSED' || code === 'ECONNRESET') return 'connection-lost'
  return 'other'
}

/** Builds services around `options` (the client's validated options, plugin options included). */
export function pluginHarness(options: Record<string, unknown> = {}): PluginHarness {
  const clock = manualClock()
  const logLines: string[] = []
  const record =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      logLines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`)
    }
  const logger: Logger = safeLogger({
    debug: record('debug'),
    info: record('info'),
    warn: record('warn'),
    error: record('error'),
  })
  const unused = () => {
    throw new Error('not available in the plugin harness')
  }
  const services = {
    options: Object.freeze({ ...options }),
    clock,
    logger,
    events: { on: unused, off: unused, emit: () => {} },
    factory: { connect: unused, classify: classifyPostgresError },
    classify: classifyPostgresError,
    topology: () => undefined,
    refreshTopology: async () => undefined,
    requestFastPolling: () => {},
    currentWriter: () => undefined,
    setWriter: () => {},
    abortHost: () => {},
    connectedHosts: () => [],
    markHostDown: () => {},
    markHostUp: () => {},
    isHostDown: () => false,
    hasConnected: () => true,
    endSignal: new AbortController().signal,
  } as unknown as PluginServices
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
