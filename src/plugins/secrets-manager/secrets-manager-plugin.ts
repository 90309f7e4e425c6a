/**
 * The `secretsManager` plugin: new connections log in with the user name and password stored in
 * an AWS Secrets Manager secret, read with `@aws-sdk/client-secrets-manager` and cached.
 *
 * Rotation: AWS changes the database password (setSecret) before it moves `AWSCURRENT` to the
 * new version (finishSecret), so for a while `AWSCURRENT` holds a password the database already
 * refuses. When the database refuses the cached password, the plugin reads `AWSCURRENT` again
 * and, if it is the version just refused, `AWSPENDING`, and logs in with the new one; until one
 * is accepted it re-reads with back-off, for `secretsManagerConnectRetryTimeoutMs` and within the
 * connect's deadline. Concurrent connects share every read; the stage that worked is remembered.
 *
 * @module
 */

import { HaError, InvalidOptionError } from '../../core/errors.ts'
import { hostKey } from '../../core/host.ts'
import { readOptions } from '../../core/option-spec.ts'
import type { ConnectContext, HaPlugin, PluginServices } from '../../core/plugin.ts'
import { settleWithin, sleep, startTimer, stopTimer, type TimerHandle } from '../../runtime/timers.ts'
import { awsBudgetMs, CredentialsUnavailableError, loadOptional, refusedByServer } from '../iam/aws-common.ts'
import {
  type ResolvedSecretsManagerOptions,
  type SecretsManagerOptions,
  secretRegionFromArn,
  secretsManagerOptionSpecs,
} from './options.ts'
import {
  type SecretSource,
  type SecretStage,
  type SecretsManagerSdk,
  type SecretValue,
  secretSource,
} from './secret-source.ts'

export type { SecretsManagerSdk } from './secret-source.ts'

/** Counters for tests, benchmarks and dashboards. */
export interface SecretsManagerPluginStats {
  /** `GetSecretValue` calls made (successful or not). */
  readonly fetches: number
  /** Logins retried after the database refused the credentials. */
  readonly authRetries: number
  /** `GetSecretValue` calls by stage. */
  readonly calls: { readonly AWSCURRENT: number; readonly AWSPENDING: number }
  /** The stage whose value logged in last (`AWSPENDING` during a rotation window). */
  readonly stage: SecretStage | undefined
}

/** The `secretsManager` plugin, with its counters. */
export interface SecretsManagerPlugin extends HaPlugin {
  /** How many times the secret was read, how many refused logins were retried, and which stage works. */
  stats(): SecretsManagerPluginStats
}

/** Extra inputs of {@link secretsManagerPlugin}; the options themselves usually come from `postgresHa()`. */
export interface SecretsManagerPluginInput extends SecretsManagerOptions {
  /** Loads the SDK package (tests replace it to simulate a missing package). */
  importSdk?: () => Promise<SecretsManagerSdk>
}

interface Credentials extends SecretValue {
  /** Increases with every read of the secret; tells a stale refusal from a fresh one. */
  readonly generation: number
  /** Monotonic time after which the secret is read again. */
  readonly expiresAt: number
}

/** Back-off between re-reads while neither stage holds an accepted password: doubling, jittered, capped. */
const FIRST_RETRY_MS = 200
const MAX_RETRY_MS = 2_000
/** The background refresh runs this long before expiry (at most a tenth of the period). */
const REFRESH_AHEAD_MS = 30_000

/**
 * Creates the `secretsManager` plugin. Options given here override the client's; it validates
 * them either way.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   plugins: ['connectionTracker', 'failover', 'hostMonitoring', secretsManagerPlugin({ secretsManagerSecretId: 'app/db' })],
 *   secretsManagerRegion: 'us-east-1',
 * })
 * ```
 */
export function secretsManagerPlugin(input: SecretsManagerPluginInput = {}): SecretsManagerPlugin {
  const { importSdk, ...overrides } = input
  let services: PluginServices | undefined
  let options: ResolvedSecretsManagerOptions | undefined
  let source: SecretSource | undefined
  let current: Credentials | undefined
  let inFlight: Promise<Credentials> | undefined
  /** The stage that logged in last: what an expired cache re-reads first. */
  let stage: SecretStage = 'AWSCURRENT'
  let generation = 0
  let authRetries = 0
  let refreshTimer: TimerHandle | undefined
  let ended = false

  const fetches = () => (source ? source.calls.AWSCURRENT + source.calls.AWSPENDING : 0)

  function remember(value: SecretValue): Credentials {
    const s = services!
    const fresh: Credentials = {
      ...value,
      generation: ++generation,
      expiresAt: s.clock.now() + options!.secretsManagerExpirationSec * 1000,
    }
    current = fresh
    s.logger.debug('secretsManager: read the database credentials', {
      source: options!.secretsManagerSecretId,
      stage: value.stage,
      versionId: value.versionId,
      user: value.user,
    })
    scheduleRefresh(fresh)
    return fresh
  }

  /** One read at a time: concurrent callers share it (and its deadline: the first caller's). */
  function shared(read: () => Promise<SecretValue>): Promise<Credentials> {
    inFlight ??= read()
      .then(remember)
      .finally(() => {
        inFlight = undefined
      })
    return inFlight
  }

  /** The stage that worked last; AWSCURRENT once AWSPENDING is gone (the rotation finished). */
  async function readPreferred(deadline: number, where: string): Promise<SecretValue> {
    if (stage === 'AWSPENDING') {
      const pending = await source!.read('AWSPENDING', deadline, where)
      if (pending) return pending
      stage = 'AWSCURRENT'
    }
    return (await source!.read('AWSCURRENT', deadline, where))!
  }

  /**
   * After the database refused `refused`: AWSCURRENT, and if that is the version refused,
   * AWSPENDING (the rotation window). Resolves with what to try next (possibly `refused` again).
   */
  async function readAfterRefusal(
    refused: Credentials,
    deadline: number,
    where: string,
  ): Promise<SecretValue> {
    const latest = await source!.read('AWSCURRENT', deadline, where)
    if (!latest || !sameVersion(latest, refused)) return latest!
    const pending = await source!.read('AWSPENDING', deadline, where)
    return pending && !sameVersion(pending, refused) ? pending : latest
  }

  function cached(ctx: ConnectContext): Promise<Credentials> {
    if (current && services!.clock.now() < current.expiresAt) return Promise.resolve(current)
    return inFlight ? joined(inFlight, ctx) : shared(() => readPreferred(ctx.deadline, hostKey(ctx.host)))
  }

  /** What to try after `refused` was refused: a newer reading if someone made one, else one shared read. */
  function after(refused: Credentials, ctx: ConnectContext): Promise<Credentials> {
    if (inFlight) return joined(inFlight, ctx)
    if (current && current.generation > refused.generation) return Promise.resolve(current)
    return shared(() => readAfterRefusal(refused, ctx.deadline, hostKey(ctx.host)))
  }

  /**
   * A read another connect started (bounded by that connect's deadline), as long as this
   * connect may wait for it.
   */
  function joined(read: Promise<Credentials>, ctx: ConnectContext): Promise<Credentials> {
    const budgetMs = awsBudgetMs(ctx.deadline, services!.clock.now())
    return settleWithin(
      read,
      budgetMs,
      () =>
        new CredentialsUnavailableError(
          hostKey(ctx.host),
          `AWS Secrets Manager secret "${options!.secretsManagerSecretId}" was not read within ${Math.round(budgetMs)} ms`,
        ),
    )
  }

  function scheduleRefresh(fresh: Credentials): void {
    const opts = options!
    if (!opts.secretsManagerBackgroundRefresh || ended) return
    stopTimer(refreshTimer)
    const periodMs = opts.secretsManagerExpirationSec * 1000
    const inMs = Math.max(0, periodMs - Math.min(REFRESH_AHEAD_MS, periodMs / 10))
    refreshTimer = startTimer(() => {
      refreshTimer = undefined
      if (ended || current !== fresh) return
      const s = services!
      const deadline = s.clock.now() + s.options.connectTimeoutMs
      shared(() => readPreferred(deadline, 'background refresh')).catch((error) =>
        s.logger.warn('secretsManager: the background refresh failed; connects will read the secret', {
          error: String((error as Error)?.message ?? error),
        }),
      )
    }, inMs)
  }

  function ready(): PluginServices {
    if (!services || !options || !source)
      throw new HaError(
        'INVALID_OPTION',
        'The secretsManager plugin was used before init(); add it through the plugins option.',
      )
    return services
  }

  return {
    name: 'secretsManager',
    async init(s) {
      services = s
      options = readOptions<ResolvedSecretsManagerOptions>(secretsManagerOptionSpecs, [s.options, overrides])
      if (!options.secretsManagerSecretId)
        throw new InvalidOptionError(
          'secretsManagerSecretId',
          'Invalid option secretsManagerSecretId: got undefined; the secretsManager plugin needs the name or ARN of ' +
            "the secret. Example: secretsManagerSecretId: 'app/db'.",
        )
      const secretId = options.secretsManagerSecretId
      const region = options.secretsManagerRegion ?? secretRegionFromArn(secretId)
      const sdk = await loadOptional(
        '@aws-sdk/client-secrets-manager',
        'secretsManager',
        importSdk ??
          (() => import('@aws-sdk/client-secrets-manager') as unknown as Promise<SecretsManagerSdk>),
      )
      source = secretSource(sdk, options, secretId, region, s.clock)
    },
    async connect(ctx, next) {
      const s = ready()
      let used = await cached(ctx)
      // Real time: the client clock may be a test's frozen one, and these waits are real.
      const retryUntil =
        performance.now() +
        Math.min(options!.secretsManagerConnectRetryTimeoutMs, Math.max(0, ctx.deadline - s.clock.now()))
      let wait = FIRST_RETRY_MS
      // Versions refused since the last pause: trying one again must wait (no ping-pong between stages).
      const refused = new Set<string>()
      let justRead = false
      for (;;) {
        ctx.user = used.user
        ctx.password = used.password
        try {
          await next()
          stage = used.stage
          return
        } catch (e) {
          if (!refusedByServer(s.classify, e)) throw e
          authRetries++
          refused.add(versionKey(used))
          // A reading made after the last pause already looked at both stages: nothing newer to read.
          const fresh = justRead ? used : await after(used, ctx)
          justRead = false
          if (!refused.has(versionKey(fresh))) {
            used = fresh
            continue
          }
          // Neither stage holds a password the database accepts yet: wait, then look again.
          // The last pause is cut to the budget: one more look at its end, never past it.
          const left = retryUntil - performance.now()
          if (left < 50) throw e
          const pause = Math.min(left, wait * (0.5 + Math.random() / 2))
          await sleep(pause)
          wait = Math.min(MAX_RETRY_MS, wait * 2)
          refused.clear()
          used = await after(fresh, ctx)
          justRead = true
        }
      }
    },
    end() {
      ended = true
      stopTimer(refreshTimer)
      source?.close()
      current = undefined
    },
    stats: () => ({
      fetches: fetches(),
      authRetries,
      calls: { ...(source?.calls ?? { AWSCURRENT: 0, AWSPENDING: 0 }) },
      stage: current ? stage : undefined,
    }),
  }
}

/** Identifies a version (by its value when the service gave no version id; never logged). */
function versionKey(v: SecretValue): string {
  return v.versionId ?? `${v.user}\u0000${v.password}`
}

/** Whether two readings are the same version (same value when the service gave no version id). */
function sameVersion(a: SecretValue, b: SecretValue): boolean {
  return a.versionId !== undefined && b.versionId !== undefined
    ? a.versionId === b.versionId
    : a.user === b.user && a.password === b.password
}
