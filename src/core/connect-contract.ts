/**
 * The one connect contract of every connection, whatever opens it (the user pools, the driver's
 * own topology, monitoring and probe connections): the connect plugins supply the credentials,
 * `open` logs in with them, and a refusal goes back, as the rejection of `next()`, to the plugin
 * that supplied them (so it may replace them and call `next()` again). The whole connect,
 * credentials included, settles within one deadline.
 *
 * @module
 */

import type { Runtime } from '../runtime/runtime.ts'
import type { ConnectPurpose } from './connection-factory.ts'
import { ConnectTimeoutError } from './errors.ts'
import type { HostAddress } from './host.ts'
import { type ConnectChain, connectChain } from './pipeline.ts'
import type { ConnectContext, HaPlugin } from './plugin.ts'

/** The credentials one login attempt uses. */
export interface Login {
  readonly user: string
  readonly password: string | undefined
}

/**
 * Opens and authenticates one connection with `login`, within `timeoutMs`; rejects with the
 * server's refusal (28P01, 28000) if it refuses them. Called once per attempt. May resolve with a
 * function that drops the connection: it is called if the connect was given up meanwhile.
 */
export type OpenWith = (login: Login, timeoutMs: number) => Promise<void | (() => void)>

/** What a connect starts from, before the plugins change the credentials. */
export interface ConnectStart {
  readonly host: HostAddress
  readonly purpose: ConnectPurpose
  readonly user: string
  readonly password: string | undefined
}

/**
 * Runs one connect through `chain` within `timeoutMs`. Resolves with the context the plugins
 * left (its `user` is the one that logged in). At the deadline it rejects: with the last failed
 * attempt's error if there was one (the server's refusal stays a refusal, never a host failure),
 * else with {@link ConnectTimeoutError} (a plugin that never answered). The AWS plugins bound their
 * own calls a little earlier and fail with `CredentialsUnavailableError` themselves. No attempt
 * starts after the deadline; a connection that arrives after it is dropped.
 *
 * @example
 * ```ts
 * const ctx = await connectWithin(chain, { host, purpose: 'user', user: 'app', password: undefined },
 *   (login, ms) => driver.open(host, login, ms), 10_000, runtime)
 * ```
 */
export function connectWithin(
  chain: ConnectChain,
  start: ConnectStart,
  open: OpenWith,
  timeoutMs: number,
  runtime: Runtime,
): Promise<ConnectContext> {
  const deadline = runtime.now() + timeoutMs
  const ctx: ConnectContext = { ...start, deadline }
  return new Promise<ConnectContext>((resolve, reject) => {
    let settled = false
    let lastError: unknown
    const settle = (error: unknown, ok?: ConnectContext) => {
      if (settled) return
      settled = true
      runtime.stopTimer(timer)
      if (ok) resolve(ok)
      else reject(error)
    }
    const timer = runtime.startTimer(() => {
      settle(
        // What the driver would raise for a connect timeout of its own (the plugins included).
        lastError ?? new ConnectTimeoutError(start.host.host, start.host.port),
      )
    }, timeoutMs)
    const guarded = async () => {
      if (settled) throw new ConnectTimeoutError(start.host.host, start.host.port)
      try {
        const drop = await open(
          { user: ctx.user, password: ctx.password },
          Math.max(1, deadline - runtime.now()),
        )
        if (settled && drop) drop()
      } catch (error) {
        lastError = error
        throw error
      }
    }
    chain(ctx, guarded).then(
      () => settle(undefined, ctx),
      (error) => settle(error),
    )
  })
}

/** One connect through the connect plugins within a deadline (see {@link connectWithin}). */
export type PluginConnect = (
  start: ConnectStart,
  open: OpenWith,
  timeoutMs: number,
) => Promise<ConnectContext>

/**
 * The plugins' connect chain, bound to `runtime`'s timers: built before the driver and the client,
 * which both run every connection through it (the driver its user connections, the client its own).
 *
 * @example
 * ```ts
 * const connect = pluginConnect(plugins, systemRuntime)
 * const ctx = await connect(start, (login, ms) => driver.open(host, login, ms), 10_000)
 * ```
 */
export function pluginConnect(plugins: readonly HaPlugin[], runtime: Runtime): PluginConnect {
  const chain = connectChain(plugins)
  return (start, open, timeoutMs) => connectWithin(chain, start, open, timeoutMs, runtime)
}
