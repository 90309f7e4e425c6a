/**
 * The `iam` plugin: every new connection logs in with an RDS IAM authentication token for the
 * host it actually goes to (cluster, instance or failover target), signed with
 * `@aws-sdk/rds-signer` and reused per region+host+port+user until shortly before it expires.
 *
 * @module
 */

import { HaError, InvalidOptionError } from '../../core/errors.ts'
import { hostKey } from '../../core/host.ts'
import { readOptions } from '../../core/option-spec.ts'
import type { ConnectContext, HaPlugin, PluginServices } from '../../core/plugin.ts'
import { rdsRegion } from '../../core/rds-hosts.ts'
import { settleWithin } from '../../runtime/timers.ts'
import {
  awsBudgetMs,
  CredentialsUnavailableError,
  isThrottling,
  loadOptional,
  refusedByServer,
  retryWithBackoff,
  sdkCredentials,
} from './aws-common.ts'
import { assertIamTls, type IamOptions, iamOptionSpecs, type ResolvedIamOptions } from './options.ts'

/** What the plugin needs of `@aws-sdk/rds-signer`. */
export interface RdsSignerModule {
  /** The SDK's `Signer` class. */
  Signer: new (config: {
    hostname: string
    port: number
    region: string
    username: string
    credentials?: unknown
  }) => { getAuthToken(): Promise<string> }
}

/** Counters for tests, benchmarks and dashboards. */
export interface IamPluginStats {
  /** Tokens signed (each one a `Signer.getAuthToken()` call). */
  readonly tokensSigned: number
  /** Connects that reused a cached token. */
  readonly tokensReused: number
}

/** The `iam` plugin, with its counters. */
export interface IamPlugin extends HaPlugin {
  /** How many tokens were signed and how many connects reused a cached one. */
  stats(): IamPluginStats
}

/** Extra inputs of {@link iamPlugin}; the options themselves usually come from `postgresHa()`. */
export interface IamPluginInput extends IamOptions {
  /** Loads the signer package (tests replace it to simulate a missing package). */
  importSigner?: () => Promise<RdsSignerModule>
}

interface CachedToken {
  readonly token: string
  /** Monotonic time after which a new token is signed. */
  readonly renewAt: number
}

const MAX_RENEW_AHEAD_MS = 60_000

/**
 * Creates the `iam` plugin. Options given here override the client's; it validates them either way.
 * Requires TLS (`ssl`) unless `iamAllowInsecure: true`.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app@db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   plugins: ['connectionTracker', 'failover', 'hostMonitoring', iamPlugin({ iamTokenExpiration: 600 })],
 *   ssl: 'require',
 * })
 * ```
 */
export function iamPlugin(input: IamPluginInput = {}): IamPlugin {
  const { importSigner, ...overrides } = input
  let services: PluginServices | undefined
  let options: ResolvedIamOptions | undefined
  let signerModule: RdsSignerModule | undefined
  const cache = new Map<string, CachedToken>()
  const inFlight = new Map<string, Promise<string>>()
  let tokensSigned = 0
  let tokensReused = 0

  async function sign(
    key: string,
    target: { host: string; port: number; region: string; user: string },
    deadline: number,
  ) {
    const pending = inFlight.get(key)
    if (pending)
      return settleWithin(
        pending,
        awsBudgetMs(deadline, services!.clock.now()),
        () =>
          new CredentialsUnavailableError(
            `${target.host}:${target.port}`,
            'could not sign an IAM authentication token in time (a signing already under way did not finish)',
          ),
      )
    const opts = options!
    const clock = services!.clock
    const budgetMs = awsBudgetMs(deadline, clock.now())
    const promise = (async () => {
      const newSigner = () =>
        new signerModule!.Signer({
          hostname: target.host,
          port: target.port,
          region: target.region,
          username: target.user,
          ...sdkCredentials(opts.credentials),
        })
      let token: string
      let last: unknown
      const attempt = () => {
        tokensSigned++
        return newSigner()
          .getAuthToken()
          .catch((e: unknown) => {
            last = e
            throw e
          })
      }
      try {
        // The credential provider may call the network (IMDS, STS): bounded by the connect's
        // deadline, and retried with back-off while it is throttled (one retry loop per key,
        // shared by concurrent connects).
        token = await settleWithin(
          retryWithBackoff(attempt, isThrottling, performance.now() + budgetMs),
          budgetMs,
          () =>
            isThrottling(last)
              ? (last as Error)
              : Object.assign(new Error(`no token within ${budgetMs} ms`), { name: 'TimeoutError' }),
        )
      } catch (e) {
        // The SDK's message names the failing credential source, never a secret.
        throw new CredentialsUnavailableError(
          `${target.host}:${target.port}`,
          `could not sign an IAM authentication token: ${(e as Error)?.name ?? 'Error'}: ${(e as Error)?.message ?? e}`,
          { cause: e },
        )
      }
      const lifetimeMs = opts.iamTokenExpiration * 1000
      cache.set(key, {
        token,
        renewAt: clock.now() + lifetimeMs - Math.min(MAX_RENEW_AHEAD_MS, lifetimeMs / 10),
      })
      services!.logger.debug('iam: signed a new authentication token', {
        host: target.host,
        port: target.port,
        region: target.region,
        user: target.user,
      })
      return token
    })()
    inFlight.set(key, promise)
    try {
      return await promise
    } finally {
      inFlight.delete(key)
    }
  }

  function target(ctx: ConnectContext) {
    const opts = options!
    const host = opts.iamHost ?? ctx.host.host
    const port = opts.iamDefaultPort ?? ctx.host.port
    const region = opts.iamRegion ?? rdsRegion(host)
    if (!region)
      throw new InvalidOptionError(
        'iamRegion',
        `Invalid option iamRegion: got undefined; the AWS region of host "${host}" cannot be told from its name, ` +
          "so set iamRegion to the database's region. Example: iamRegion: 'us-east-1'.",
      )
    if (!ctx.user)
      throw new InvalidOptionError(
        'user',
        'Invalid option user: got undefined; IAM authentication needs the database user.',
      )
    return { host, port, region, user: ctx.user }
  }

  return {
    name: 'iam',
    async init(s) {
      services = s
      options = readOptions<ResolvedIamOptions>(iamOptionSpecs, [s.options, overrides])
      assertIamTls(s.options['ssl'], options.iamAllowInsecure)
      signerModule = await loadOptional(
        '@aws-sdk/rds-signer',
        'iam',
        importSigner ?? (() => import('@aws-sdk/rds-signer') as Promise<RdsSignerModule>),
      )
    },
    async connect(ctx, next) {
      if (!services || !options || !signerModule)
        throw new HaError(
          'INVALID_OPTION',
          'The iam plugin was used before init(); add it through the plugins option.',
        )
      const t = target(ctx)
      const key = `${t.region}:${hostKey(t)}:${t.user}`
      const cached = cache.get(key)
      const fromCache = cached !== undefined && services.clock.now() < cached.renewAt
      if (fromCache) tokensReused++
      ctx.password = fromCache ? cached.token : await sign(key, t, ctx.deadline)
      try {
        await next()
      } catch (e) {
        // A cached token can be refused while still young (credentials revoked and replaced): sign once more.
        if (!fromCache || !refusedByServer(services.classify, e)) throw e
        // Concurrent connects refused the same token: the first re-signs, the others use its token.
        const now = cache.get(key)
        const renewed = now && now.token !== cached.token && services.clock.now() < now.renewAt
        if (!renewed) cache.delete(key)
        ctx.password = renewed ? now.token : await sign(key, t, ctx.deadline)
        await next()
      }
    },
    end() {
      cache.clear()
    },
    stats: () => ({ tokensSigned, tokensReused }),
  }
}
