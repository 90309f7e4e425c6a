/**
 * What the two AWS plugins (`iam`, `secretsManager`) share: the `credentials` option, option specs
 * with descriptions, and loading an optional AWS SDK package on demand.
 *
 * @module
 */
import { MissingDependencyError } from '../../core/errors.ts'
import type { Check } from '../../core/option-checks.ts'
import type { OptionSpec } from '../../core/option-spec.ts'
import { sleep } from '../../runtime/timers.ts'

/** AWS credentials as the AWS SDK takes them: static values or a provider function. */
export type AwsCredentialsOption =
  | { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string }
  | (() => Promise<{
      accessKeyId: string
      secretAccessKey: string
      sessionToken?: string
      expiration?: Date
    }>)

export { CredentialsUnavailableError } from '../../core/errors.ts'

/**
 * Whether the database refused the credentials of a connection (so that fresh ones may work), as
 * opposed to the AWS side failing to produce any ({@link CredentialsUnavailableError}).
 */
export function refusedByServer(classify: (error: unknown) => string, error: unknown): boolean {
  return (
    classify(error) === 'auth-failed' &&
    (error as { credentialsUnavailable?: unknown })?.credentialsUnavailable !== true
  )
}

/**
 * Real milliseconds an AWS call may take for a connect with `deadline` (client clock time): a
 * little less than what is left, so that the plugin's own `CredentialsUnavailableError` (naming
 * the AWS call) settles the connect before the connect's deadline does. A connect that joins an
 * AWS call another connect started waits for it only this long (`settleWithin`): a connect with a
 * short deadline (a probe) never waits on a read started for a longer one.
 */
export function awsBudgetMs(deadline: number, now: number): number {
  const left = Math.max(0, deadline - now)
  return Math.max(0, left - Math.min(250, left / 10))
}

/** Back-off between retried AWS calls: doubling from this, with jitter, capped. */
const FIRST_BACKOFF_MS = 100
const MAX_BACKOFF_MS = 2_000
const THROTTLING = /Throttl|TooManyRequests|RequestLimitExceeded|SlowDown/

/**
 * Whether `error` is AWS throttling (`ThrottlingException` and its kin from a service or a
 * credential provider such as STS): the call may work after a pause, and nothing is wrong with
 * the database.
 */
export function isThrottling(error: unknown): boolean {
  const e = error as { name?: unknown; code?: unknown; $retryable?: { throttling?: unknown } } | undefined
  return (
    e?.$retryable?.throttling === true ||
    THROTTLING.test(String(e?.name ?? '')) ||
    THROTTLING.test(String(e?.code ?? ''))
  )
}

/**
 * `attempt()`, retried after a growing, jittered pause while it fails with an error `retryable`
 * accepts and the pause would end before `endsAt` (`performance.now()` time: real waits even when a
 * test freezes the client's clock); otherwise its last error. Callers sharing one AWS call share
 * its retries too, so a throttled service sees a handful of requests per deadline, not one per
 * connect.
 *
 * @example
 * ```ts
 * const token = await retryWithBackoff(() => signer.getAuthToken(), isThrottling, performance.now() + 2_000)
 * ```
 */
export async function retryWithBackoff<T>(
  attempt: () => Promise<T>,
  retryable: (error: unknown) => boolean,
  endsAt: number,
): Promise<T> {
  let backoff = FIRST_BACKOFF_MS
  for (;;) {
    try {
      return await attempt()
    } catch (e) {
      const wait = backoff * (0.5 + Math.random() / 2)
      if (!retryable(e) || performance.now() + wait >= endsAt) throw e
      // Kept alive: a caller's statement waits on this pause.
      await sleep(wait, { keepAlive: true })
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)
    }
  }
}

/** An option spec with the type and description shown in the README option table. */
export type DescribedOptionSpec = OptionSpec & { readonly description: string; readonly type: string }

const credentialsCheck: Check = (v) =>
  typeof v === 'function' ||
  (v !== null &&
    typeof v === 'object' &&
    typeof (v as { accessKeyId?: unknown }).accessKeyId === 'string' &&
    typeof (v as { secretAccessKey?: unknown }).secretAccessKey === 'string')
    ? undefined
    : 'an object { accessKeyId, secretAccessKey, sessionToken? } or a credential provider function'

/** The `credentials` option, shared by the AWS plugins. */
export const credentialsSpec: DescribedOptionSpec = Object.freeze({
  check: credentialsCheck,
  secret: true,
  type: 'object | function',
  description:
    "AWS credentials for the AWS plugins; default: the AWS SDK's default credential provider chain.",
  example: "fromIni({ profile: 'db' })",
})

/**
 * Imports an optional AWS SDK package, turning "not installed" into a {@link MissingDependencyError}
 * that names the package to install.
 *
 * @example
 * ```ts
 * const { Signer } = await loadOptional('@aws-sdk/rds-signer', 'iam', () => import('@aws-sdk/rds-signer'))
 * ```
 */
export async function loadOptional<T>(
  packageName: string,
  plugin: string,
  importer: () => Promise<T>,
): Promise<T> {
  try {
    return await importer()
  } catch (e) {
    const code = (e as { code?: unknown })?.code
    const message = String((e as Error)?.message ?? e)
    if (
      code === 'ERR_MODULE_NOT_FOUND' ||
      code === 'MODULE_NOT_FOUND' ||
      /cannot find|could not find|not found|failed to resolve|unable to resolve/i.test(message)
    )
      throw new MissingDependencyError(packageName, plugin, { cause: e })
    throw e
  }
}

/**
 * The `credentials` value to hand an AWS SDK client: static credentials are copied, because the
 * SDK writes bookkeeping into the object (a frozen object, or one shared by two clients, breaks).
 */
export function sdkCredentials(credentials: AwsCredentialsOption | undefined): { credentials?: unknown } {
  if (!credentials) return {}
  if (typeof credentials === 'function') return { credentials }
  const { accessKeyId, secretAccessKey, sessionToken } = credentials
  return {
    credentials: sessionToken
      ? { accessKeyId, secretAccessKey, sessionToken }
      : { accessKeyId, secretAccessKey },
  }
}
