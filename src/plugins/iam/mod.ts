/**
 * IAM database authentication for postgres-ha: each new connection logs in with an RDS IAM token
 * for the host it goes to. Enable it with `plugins: '...,iam'` and `ssl: 'require'`; it needs the
 * optional package `@aws-sdk/rds-signer`.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app_iam@db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   plugins: 'connectionTracker,failover,hostMonitoring,iam',
 *   ssl: 'require',
 * })
 * ```
 *
 * @module
 */
export {
  type AwsCredentialsOption,
  CredentialsUnavailableError,
  type DescribedOptionSpec,
  loadOptional,
} from './aws-common.ts'
export {
  type IamPlugin,
  type IamPluginInput,
  type IamPluginStats,
  iamPlugin,
  type RdsSignerModule,
} from './iam-plugin.ts'
export { assertIamTls, type IamOptions, iamOptionSpecs, type ResolvedIamOptions } from './options.ts'
