/**
 * What the two AWS plugins (`iam`, `secretsManager`) share: the `credentials` option, option specs
 * with descriptions, and loading an optional AWS SDK package on demand.
 *
 * @module
 */
import { MissingDependencyError } from '../../core/errors.ts'
import type { Check } from '../../core/option-checks.ts'
import type { OptionSpec } from '../../core/option-spec.ts'
import { settleWithin } from '../../runtime/timers.ts'

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
 * the AWS call) settles the connect before the connect's deadline does.
 */
export function awsBudgetMs(deadline: number, now: number): number {
  const left = Math.max(0, deadline - now)
  return Math.max(0, left - Math.min(250, left / 10))
}

/**
 * `work` (an AWS call this connect may share with others), or `onTimeout()` once this connect's
 * own AWS budget (see {@link awsBudgetMs}) is spent: a connect with a short deadline (a probe)
 * never waits on a read started for a longer one.
 */
export function withinBudget<T>(work: Promise<T>, budgetMs: number, onTimeout: () => Error): Promise<T> {
  return settleWithin(work, budgetMs, onTimeout)
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
