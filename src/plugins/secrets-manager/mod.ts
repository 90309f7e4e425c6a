/**
 * AWS Secrets Manager credentials for postgres-ha: connections log in with the user name and
 * password of a secret, re-read once when the database refuses them (rotation). Enable it with
 * `plugins: '...,secretsManager'` and `secretsManagerSecretId`; it needs the optional package
 * `@aws-sdk/client-secrets-manager`.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   plugins: 'connectionTracker,failover,hostMonitoring,secretsManager',
 *   secretsManagerSecretId: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf',
 * })
 * ```
 *
 * @module
 */
export { CredentialsUnavailableError } from '../iam/aws-common.ts'
export {
  type ResolvedSecretsManagerOptions,
  type SecretsManagerOptions,
  secretRegionFromArn,
  secretsManagerOptionSpecs,
} from './options.ts'
export type { SecretStage } from './secret-source.ts'
export {
  type SecretsManagerPlugin,
  type SecretsManagerPluginInput,
  type SecretsManagerPluginStats,
  type SecretsManagerSdk,
  secretsManagerPlugin,
} from './secrets-manager-plugin.ts'
