/**
 * The `secretsManager` plugin: new connections log in with the user name and password stored in
 * an AWS Secrets Manager secret, read with `@aws-sdk/client-secrets-manager` and cached. When the
 * database refuses them (the password was rotated), the secret is read again once and the
 * connect retried, so a rotation does not take the application down.
 *
 * @module
 */
import { HaError, InvalidOptionError } from '../../core/errors.ts'
import { type HostAddress, hostKey } from '../../core/host.ts'
import type { HaPlugin, PluginServices } from '../../core/plugin.ts'
import {
  CredentialsUnavailableError,
  loadOptional,
  refusedByServer,
  resolveSpecs,
  sdkCredentials,
} from '../iam/aws-common.ts'
import {
  type ResolvedSecretsManagerOptions,
  type SecretsManagerOptions,
  secretRegionFromArn,
  secretsManagerOptionSpecs,
} from './options.ts'

/** What the plugin needs of `@aws-sdk/client-secrets-manager`. */
export interface SecretsManagerSdk {
  /** The SDK's client class. */
  SecretsManagerClient: new (config: {
    region?: string
    endpoint?: string
    credentials?: unknown
  }) => { send(command: unknown): Promise<{ SecretString?: string; VersionId?: string }>; destroy(): void }
  /** The SDK's `GetSecretValue` command class. */
  GetSecretValueCommand: new (input: {
    SecretId: string
  }) => unknown
}

/** Counters for tests, benchmarks and dashboards. */
export interface SecretsManagerPluginStats {
  /** `GetSecretValue` calls made (successful or not). */
  readonly fetches: number
  /** Connects or statements retried after the database refused cached credentials. */
  readonly authRetries: number
}

/** The `secretsManager` plugin, with its counters. */
export interface SecretsManagerPlugin extends HaPlugin {
  /** How many times the secret was read, and how many refused logins were retried with a fresh read. */
  stats(): SecretsManagerPluginStats
}

/** Extra inputs of {@link secretsManagerPlugin}; the options themselves usually come from `postgresHa()`. */
export interface SecretsManagerPluginInput extends SecretsManagerOptions {
  /** Loads the SDK package (tests replace it to simulate a missing package). */
  importSdk?: () => Promise<SecretsManagerSdk>
}

interface Credentials {
  readonly user: string
  readonly password: string
  /** Increases with every read of the secret; tells a stale failure from a fresh one. */
  readonly generation: number
  /** Monotonic time after which the secret is read again. */
  readonly expiresAt: number
}

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
  let secretId = ''
  let region: string | undefined
  let sdk: SecretsManagerSdk | undefined
  let client: InstanceType<SecretsManagerSdk['SecretsManagerClient']> | undefined
  let current: Credentials | undefined
  let inFlight: Promise<Credentials> | undefined
  let generation = 0
  let fetches = 0
  let authRetries = 0

  async function read(host: HostAddress | undefined): Promise<Credentials> {
    const opts = options!
    const where = host ? hostKey(host) : 'the database'
    fetches++
    let out: { SecretString?: string; VersionId?: string }
    try {
      client ??= new sdk!.SecretsManagerClient({
        ...(region ? { region } : {}),
        ...(opts.secretsManagerEndpoint ? { endpoint: opts.secretsManagerEndpoint } : {}),
        ...sdkCredentials(opts.credentials),
      })
      out = await client.send(new sdk!.GetSecretValueCommand({ SecretId: secretId }))
    } catch (e) {
      const message = String((e as Error)?.message ?? e)
      if (!region && /region is missing/i.test(message))
        throw new InvalidOptionError(
          'secretsManagerRegion',
          `Invalid option secretsManagerRegion: got undefined; the region of secret "${secretId}" is not in its id ` +
            "and the AWS SDK found no default region. Example: secretsManagerRegion: 'us-east-1'.",
          { cause: e },
        )
      throw new CredentialsUnavailableError(
        where,
        `could not read the credentials from AWS Secrets Manager secret "${secretId}": ${(e as Error)?.name ?? 'Error'}: ${message}`,
        { cause: e },
      )
    }
    const userKey = opts.secretsManagerSecretUsernameProperty
    const passwordKey = opts.secretsManagerSecretPasswordProperty
    let parsed: unknown
    try {
      parsed = JSON.parse(out.SecretString ?? '')
    } catch {
      // No cause: the JSON parser's message quotes the secret's text.
      parsed = undefined
    }
    const record = parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {}
    const user = record[userKey]
    const password = record[passwordKey]
    if (typeof user !== 'string' || !user || typeof password !== 'string' || !password)
      throw new CredentialsUnavailableError(
        where,
        `AWS Secrets Manager secret "${secretId}" is not a JSON object with non-empty string keys "${userKey}" and ` +
          `"${passwordKey}" (set secretsManagerSecretUsernameProperty / secretsManagerSecretPasswordProperty if it uses other keys)`,
      )
    const clock = services!.clock
    const fresh = {
      user,
      password,
      generation: ++generation,
      expiresAt: clock.now() + opts.secretsManagerExpirationSec * 1000,
    }
    current = fresh
    services!.logger.debug('secretsManager: read the database credentials', {
      source: secretId,
      versionId: out.VersionId,
      user,
    })
    return fresh
  }

  /** One read at a time: concurrent callers share it. */
  function readShared(host: HostAddress | undefined): Promise<Credentials> {
    inFlight ??= read(host).finally(() => {
      inFlight = undefined
    })
    return inFlight
  }

  function cached(host: HostAddress | undefined): Promise<Credentials> {
    if (current && services!.clock.now() < current.expiresAt) return Promise.resolve(current)
    return readShared(host)
  }

  /** After a refusal of credentials of `generation`: read again, unless someone already did. */
  function refreshed(generation: number | undefined, host: HostAddress | undefined): Promise<Credentials> {
    if (inFlight) return inFlight
    if (current && current.generation !== generation) return Promise.resolve(current)
    return readShared(host)
  }

  function ready(): PluginServices {
    if (!services || !options || !sdk)
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
      options = resolveSpecs<ResolvedSecretsManagerOptions>(secretsManagerOptionSpecs, [s.options, overrides])
      if (!options.secretsManagerSecretId)
        throw new InvalidOptionError(
          'secretsManagerSecretId',
          'Invalid option secretsManagerSecretId: got undefined; the secretsManager plugin needs the name or ARN of ' +
            "the secret. Example: secretsManagerSecretId: 'app/db'.",
        )
      secretId = options.secretsManagerSecretId
      region = options.secretsManagerRegion ?? secretRegionFromArn(secretId)
      sdk = await loadOptional(
        '@aws-sdk/client-secrets-manager',
        'secretsManager',
        importSdk ??
          (() => import('@aws-sdk/client-secrets-manager') as unknown as Promise<SecretsManagerSdk>),
      )
    },
    async connect(ctx, next) {
      const s = ready()
      const used = await cached(ctx.host)
      ctx.user = used.user
      ctx.password = used.password
      try {
        await next()
      } catch (e) {
        if (!refusedByServer(s.classify, e)) throw e
        const fresh = await refreshed(used.generation, ctx.host)
        authRetries++
        ctx.user = fresh.user
        ctx.password = fresh.password
        await next()
      }
    },
    end() {
      client?.destroy()
      client = undefined
      current = undefined
    },
    stats: () => ({ fetches, authRetries }),
  }
}
