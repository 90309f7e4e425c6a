/**
 * Reading one stage of the secret (`AWSCURRENT` or `AWSPENDING`) with the AWS SDK, bounded: each
 * request is aborted after `requestTimeoutMs` and at the caller's deadline, and throttling or a
 * request that timed out is retried with back-off until that deadline, then reported as
 * {@link CredentialsUnavailableError} (never as a database failure). Values are parsed here and
 * never appear in an error.
 *
 * @module
 */
import { InvalidOptionError } from '../../core/errors.ts'
import type { Clock } from '../../runtime/clock.ts'
import { startTimer, stopTimer, type TimerHandle } from '../../runtime/timers.ts'
import {
  awsBudgetMs,
  CredentialsUnavailableError,
  isThrottling,
  retryWithBackoff,
  sdkCredentials,
} from '../iam/aws-common.ts'
import type { ResolvedSecretsManagerOptions } from './options.ts'

/** The staging labels the plugin reads. */
export type SecretStage = 'AWSCURRENT' | 'AWSPENDING'

/** What the plugin needs of `@aws-sdk/client-secrets-manager`. */
export interface SecretsManagerSdk {
  /** The SDK's client class. */
  SecretsManagerClient: new (config: {
    region?: string
    endpoint?: string
    credentials?: unknown
    maxAttempts?: number
    requestHandler?: unknown
  }) => {
    send(
      command: unknown,
      options?: { abortSignal?: AbortSignal },
    ): Promise<{ SecretString?: string; VersionId?: string }>
    destroy(): void
  }
  /** The SDK's `GetSecretValue` command class. */
  GetSecretValueCommand: new (input: {
    SecretId: string
    VersionStage?: string
  }) => unknown
}

/** One version of the secret, parsed. */
export interface SecretValue {
  readonly user: string
  readonly password: string
  readonly versionId: string | undefined
  readonly stage: SecretStage
}

/** Worth another request after a pause: throttling, a request that timed out, a service hiccup. */
function transient(e: unknown): boolean {
  return (
    (e as { timedOut?: unknown })?.timedOut === true ||
    isThrottling(e) ||
    /InternalServiceError|ServiceUnavailable/.test(String((e as { name?: unknown })?.name ?? ''))
  )
}

/** Reads stages of one secret; see the module doc. */
export interface SecretSource {
  /**
   * Reads `stage`; `undefined` when the secret has no version with that label (AWSPENDING
   * outside a rotation). Settles by `deadline` (client clock time).
   */
  read(stage: SecretStage, deadline: number, where: string): Promise<SecretValue | undefined>
  /** Releases the SDK client. */
  close(): void
  /** `GetSecretValue` requests sent, by stage. */
  readonly calls: Record<SecretStage, number>
}

/** Creates the reader of the secret `secretId` (region already resolved). */
export function secretSource(
  sdk: SecretsManagerSdk,
  options: ResolvedSecretsManagerOptions,
  secretId: string,
  region: string | undefined,
  clock: Clock,
): SecretSource {
  let client: InstanceType<SecretsManagerSdk['SecretsManagerClient']> | undefined
  const calls: Record<SecretStage, number> = { AWSCURRENT: 0, AWSPENDING: 0 }
  const requestTimeoutMs = options.secretsManagerRequestTimeoutMs

  const fail = (where: string, what: string, e: unknown) =>
    new CredentialsUnavailableError(
      where,
      `could not read the credentials from AWS Secrets Manager secret "${secretId}": ${what}`,
      { cause: e },
    )

  async function once(stage: SecretStage, endsAt: number) {
    client ??= new sdk.SecretsManagerClient({
      ...(region ? { region } : {}),
      ...(options.secretsManagerEndpoint ? { endpoint: options.secretsManagerEndpoint } : {}),
      ...sdkCredentials(options.credentials),
      // Our own loop retries, bounded by the connect's deadline; the SDK's would not be.
      maxAttempts: 1,
      requestHandler: { requestTimeout: requestTimeoutMs, connectionTimeout: requestTimeoutMs },
    })
    const abort = new AbortController()
    const ms = Math.round(Math.max(1, Math.min(requestTimeoutMs, endsAt - performance.now())))
    let timer: TimerHandle | undefined
    // The SDK only looks at the signal once the request is on its way; its own set-up (lazy
    // loading, credential resolution) can take long too, so the wait itself is raced as well.
    const timedOut = new Promise<never>((_, reject) => {
      timer = startTimer(() => {
        const error = Object.assign(new Error(`no answer within ${ms} ms`), {
          name: 'TimeoutError',
          timedOut: true,
        })
        abort.abort(error)
        reject(error)
      }, ms)
    })
    try {
      calls[stage]++
      const input =
        stage === 'AWSCURRENT' ? { SecretId: secretId } : { SecretId: secretId, VersionStage: stage }
      const sent = client.send(new sdk.GetSecretValueCommand(input), { abortSignal: abort.signal })
      sent.catch(() => {})
      return await Promise.race([sent, timedOut])
    } catch (e) {
      throw abort.signal.aborted ? abort.signal.reason : e
    } finally {
      stopTimer(timer)
    }
  }

  function parse(
    out: { SecretString?: string; VersionId?: string },
    stage: SecretStage,
    where: string,
  ): SecretValue {
    const userKey = options.secretsManagerSecretUsernameProperty
    const passwordKey = options.secretsManagerSecretPasswordProperty
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
        `AWS Secrets Manager secret "${secretId}" (${stage}) is not a JSON object with non-empty string keys "${userKey}" and ` +
          `"${passwordKey}" (set secretsManagerSecretUsernameProperty / secretsManagerSecretPasswordProperty if it uses other keys)`,
      )
    return { user, password, versionId: out.VersionId, stage }
  }

  return {
    calls,
    async read(stage, deadline, where) {
      // The deadline is in the client clock's time (a test may freeze it); the waits are real.
      const endsAt = performance.now() + awsBudgetMs(deadline, clock.now())
      let out: { SecretString?: string; VersionId?: string }
      try {
        out = await retryWithBackoff(() => once(stage, endsAt), transient, endsAt)
      } catch (e) {
        const name = String((e as { name?: unknown })?.name ?? 'Error')
        const message = String((e as Error)?.message ?? e)
        if (stage === 'AWSPENDING' && name === 'ResourceNotFoundException') return undefined
        if (!region && /region is missing/i.test(message))
          throw new InvalidOptionError(
            'secretsManagerRegion',
            `Invalid option secretsManagerRegion: got undefined; the region of secret "${secretId}" is not in its id ` +
              "and the AWS SDK found no default region. Example: secretsManagerRegion: 'us-east-1'.",
            { cause: e },
          )
        throw fail(where, `${name}: ${message}`, e)
      }
      return parse(out, stage, where)
    },
    close() {
      client?.destroy()
      client = undefined
    },
  }
}
