/**
 * The options of the `iam` plugin, named and defaulted as the AWS Advanced drivers name them,
 * as specs the client's option validator registers.
 *
 * @module
 */
import { InvalidOptionError } from '../../core/errors.ts'
import { boolean, describeValue, integer, nonEmptyString } from '../../core/option-checks.ts'
import { type AwsCredentialsOption, credentialsSpec, type DescribedOptionSpec } from './aws-common.ts'

/**
 * Options of the `iam` plugin.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app@db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   plugins: 'connectionTracker,failover,hostMonitoring,iam',
 *   ssl: 'require',
 *   iamTokenExpiration: 600,
 * })
 * ```
 */
export interface IamOptions {
  /** Host name to sign tokens for instead of the host being connected to (custom domains, IPs). */
  iamHost?: string
  /** Port to sign tokens for instead of the port being connected to. */
  iamDefaultPort?: number
  /** AWS region of the database; inferred from RDS host names, required otherwise. */
  iamRegion?: string
  /** Seconds a token is reused before a new one is signed (default 900, the tokens' own lifetime; at most 900). */
  iamTokenExpiration?: number
  /** Allow IAM without TLS (`ssl` off). RDS refuses such logins; only for a local lab. Default `false`. */
  iamAllowInsecure?: boolean
  /** AWS credentials to sign with; default: the AWS SDK's default credential provider chain. */
  credentials?: AwsCredentialsOption
}

/** Specs of the `iam` plugin's options (the catalog in src/plugins/mod.ts hands them to `parseOptions`). */
export const iamOptionSpecs: Readonly<Record<keyof IamOptions, DescribedOptionSpec>> = Object.freeze({
  iamHost: {
    check: nonEmptyString,
    type: 'string',
    description:
      'Host name tokens are signed for, instead of the host connected to (needed for IPs and custom DNS names).',
    example: "'db-1.abc123.us-east-1.rds.amazonaws.com'",
  },
  iamDefaultPort: {
    check: integer(1, 65535),
    type: 'number',
    description: 'Port tokens are signed for, instead of the port connected to.',
    example: '5432',
  },
  iamRegion: {
    check: nonEmptyString,
    type: 'string',
    description: 'AWS region of the database. Inferred from RDS host names; required for other host names.',
    example: "'us-east-1'",
  },
  iamTokenExpiration: {
    check: integer(1, 900),
    default: 900,
    type: 'number (seconds)',
    description:
      'How long a token is reused for one region+host+port+user; renewed a little before (the last tenth, at most 60 s).',
    example: '600',
  },
  iamAllowInsecure: {
    check: boolean,
    default: false,
    type: 'boolean',
    description: 'Allow IAM authentication without TLS. RDS refuses it; meant for a local lab only.',
    example: 'true',
  },
  credentials: credentialsSpec,
})

/** Resolved `iam` options. */
export interface ResolvedIamOptions {
  readonly iamHost: string | undefined
  readonly iamDefaultPort: number | undefined
  readonly iamRegion: string | undefined
  readonly iamTokenExpiration: number
  readonly iamAllowInsecure: boolean
  readonly credentials: AwsCredentialsOption | undefined
}

// `prefer` (and `allow`) fall back to plain text when a server (or anything in the path) declines
// TLS: the token would then travel in the clear, where it can be replayed for 15 minutes.
const SSL_OFF = new Set<unknown>([undefined, null, false, 'false', 'disable', 'allow', 'prefer'])

/**
 * Throws unless `ssl` (the postgres.js option) encrypts every connection, or IAM without TLS was
 * explicitly allowed. RDS refuses IAM logins without TLS, and a token sent in the clear can be
 * replayed by anyone on the path for up to 15 minutes.
 *
 * @example
 * ```ts
 * assertIamTls('require', false) // fine
 * assertIamTls(undefined, false) // throws InvalidOptionError naming ssl
 * ```
 */
export function assertIamTls(ssl: unknown, allowInsecure: boolean): void {
  if (allowInsecure || !SSL_OFF.has(ssl)) return
  throw new InvalidOptionError(
    'ssl',
    `Invalid option ssl: got ${describeValue(ssl)}; the iam plugin needs TLS, as RDS refuses IAM logins without it ` +
      "and a token sent in the clear can be replayed ('prefer' and 'allow' fall back to plain text when TLS is declined). " +
      "Set ssl: { ca: <RDS CA bundle>, rejectUnauthorized: true } (verify-full, recommended) or ssl: 'require', " +
      'or iamAllowInsecure: true to allow it anyway (only for a local lab).',
  )
}
