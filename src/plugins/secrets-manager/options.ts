/**
 * The options of the `secretsManager` plugin, named and defaulted as the AWS Advanced drivers
 * name them (the Node wrapper's shorter `secret*` spellings are accepted as aliases).
 *
 * @module
 */
import { boolean, integer, nonEmptyString } from '../../core/option-checks.ts'
import { type AwsCredentialsOption, credentialsSpec, type DescribedOptionSpec } from '../iam/aws-common.ts'

/**
 * Options of the `secretsManager` plugin.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   plugins: 'connectionTracker,failover,hostMonitoring,secretsManager',
 *   secretsManagerSecretId: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf',
 * })
 * ```
 */
export interface SecretsManagerOptions {
  /** Name or ARN of the secret holding `{ "username": ..., "password": ... }`. Required. */
  secretsManagerSecretId?: string
  /** Region of the secret; inferred from an ARN, else the AWS SDK's default region (AWS_REGION, config). */
  secretsManagerRegion?: string
  /** Endpoint URL to reach Secrets Manager at (VPC endpoints, local stand-ins). */
  secretsManagerEndpoint?: string
  /** Seconds the secret is reused before it is read again (default 870, as the AWS drivers). */
  secretsManagerExpirationSec?: number
  /**
   * How long a connect keeps trying after the database refused the secret's password and neither
   * `AWSCURRENT` nor `AWSPENDING` holds one it accepts (a rotation under way), re-reading the secret
   * with back-off; each connect is also bounded by `connectTimeoutMs`. Default 30 000; 0: one re-read only.
   */
  secretsManagerConnectRetryTimeoutMs?: number
  /** Timeout of one `GetSecretValue` request, in milliseconds (default 5 000). */
  secretsManagerRequestTimeoutMs?: number
  /**
   * Read the secret again in the background shortly before `secretsManagerExpirationSec` ends, so
   * that no connect waits for Secrets Manager in steady state (one call per expiration period
   * while the client lives, even when idle). Default `false`.
   */
  secretsManagerBackgroundRefresh?: boolean
  /** Key of the user name in the secret's JSON (default `username`). */
  secretsManagerSecretUsernameProperty?: string
  /** Key of the password in the secret's JSON (default `password`). */
  secretsManagerSecretPasswordProperty?: string
  /** AWS credentials to call Secrets Manager with; default: the AWS SDK's default credential provider chain. */
  credentials?: AwsCredentialsOption
}

/** Plain http carries AWS signatures and the secret in clear: only to this machine (a stand-in). */
const url = (v: unknown) => {
  if (typeof v !== 'string' || !/^https?:\/\/[^\s/]+/.test(v)) return 'an https:// URL'
  if (v.startsWith('https://')) return undefined
  const host = new URL(v).hostname
  const loopback = host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
  return loopback ? undefined : 'an https:// URL (http:// only to localhost, for a local stand-in)'
}

/** Specs of the `secretsManager` plugin's options (the catalog in src/plugins/mod.ts hands them to `parseOptions`). */
export const secretsManagerOptionSpecs: Readonly<Record<keyof SecretsManagerOptions, DescribedOptionSpec>> =
  Object.freeze({
    secretsManagerSecretId: {
      check: nonEmptyString,
      aliases: ['secretId'],
      type: 'string',
      description:
        'Name or ARN of the secret with the database credentials (JSON with username and password). Required.',
      example: "'arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf'",
    },
    secretsManagerRegion: {
      check: nonEmptyString,
      aliases: ['secretRegion'],
      type: 'string',
      description: "Region of the secret. Inferred from an ARN; otherwise the AWS SDK's default region.",
      example: "'us-east-1'",
    },
    secretsManagerEndpoint: {
      check: url,
      aliases: ['secretEndpoint'],
      type: 'string (URL)',
      description:
        'Secrets Manager endpoint to use instead of the regional default (VPC endpoint, local stand-in).',
      example: "'https://vpce-0abc.secretsmanager.us-east-1.vpce.amazonaws.com'",
    },
    secretsManagerExpirationSec: {
      check: integer(1, 7 * 24 * 3600),
      default: 870,
      aliases: ['secretExpirationSec'],
      type: 'number (seconds)',
      description:
        'How long the secret is reused before it is read again. An authentication failure re-reads it at once.',
      example: '3600',
    },
    secretsManagerConnectRetryTimeoutMs: {
      check: integer(0, 120_000),
      default: 30_000,
      type: 'number (ms)',
      description:
        'How long a connect keeps re-reading the secret (AWSCURRENT, then AWSPENDING) with back-off while the database refuses its password during a rotation; also bounded by connectTimeoutMs. 0: one re-read only.',
      example: '10000',
    },
    secretsManagerRequestTimeoutMs: {
      check: integer(100, 60_000),
      default: 5_000,
      type: 'number (ms)',
      description:
        'Timeout of one GetSecretValue request (throttled or timed-out requests are retried within the connect deadline).',
      example: '2000',
    },
    secretsManagerBackgroundRefresh: {
      check: boolean,
      default: false,
      type: 'boolean',
      description:
        'Re-read the secret in the background shortly before secretsManagerExpirationSec ends, so no connect waits for Secrets Manager in steady state.',
      example: 'true',
    },
    secretsManagerSecretUsernameProperty: {
      check: nonEmptyString,
      default: 'username',
      aliases: ['secretUsernameProperty'],
      type: 'string',
      description: "Key of the user name in the secret's JSON.",
      example: "'db_user'",
    },
    secretsManagerSecretPasswordProperty: {
      check: nonEmptyString,
      default: 'password',
      aliases: ['secretPasswordProperty'],
      type: 'string',
      description: "Key of the password in the secret's JSON.",
      example: "'db_pass'",
    },
    credentials: credentialsSpec,
  })

/** Resolved `secretsManager` options. */
export interface ResolvedSecretsManagerOptions {
  readonly secretsManagerSecretId: string | undefined
  readonly secretsManagerRegion: string | undefined
  readonly secretsManagerEndpoint: string | undefined
  readonly secretsManagerExpirationSec: number
  readonly secretsManagerConnectRetryTimeoutMs: number
  readonly secretsManagerRequestTimeoutMs: number
  readonly secretsManagerBackgroundRefresh: boolean
  readonly secretsManagerSecretUsernameProperty: string
  readonly secretsManagerSecretPasswordProperty: string
  readonly credentials: AwsCredentialsOption | undefined
}

const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):[^:]*:secret:.+$/

/**
 * The region in a secret ARN, or `undefined` for a secret name.
 *
 * @example
 * ```ts
 * secretRegionFromArn('arn:aws:secretsmanager:eu-west-1:123456789012:secret:app-AbCdEf') // 'eu-west-1'
 * ```
 */
export function secretRegionFromArn(secretId: string): string | undefined {
  return SECRET_ARN.exec(secretId)?.[1]
}
