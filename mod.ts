/**
 * postgres-ha: high availability for postgres.js users on Node, Deno and Bun.
 *
 * `postgresHa(url, options)` returns an `sql` with the postgres.js API that reads the cluster
 * topology from the database, watches its hosts and, when the writer dies, finds the new writer
 * itself.
 *
 * @example
 * ```ts
 * import { postgresHa } from '@postgres-ha/postgres-ha'
 * const sql = postgresHa('postgres://app@my-cluster.cluster-abc.us-east-1.rds.amazonaws.com/app')
 * const [{ now }] = await sql`select now()`
 * ```
 *
 * @module
 */

export type { Options as PostgresOptions, PostgresType, Sql } from 'postgres'
export type {
  ConnectionFactory,
  ConnectPurpose,
  ConnectRequest,
  DbConnection,
  ErrorKind,
  StatementOptions,
} from './src/core/connection-factory.ts'
export {
  ConnectionDroppedError,
  ConnectTimeoutError,
  CredentialsUnavailableError,
  FailoverFailedError,
  FailoverSuccessError,
  HaError,
  type HaErrorCode,
  haErrorOf,
  InvalidOptionError,
  MissingDependencyError,
  NoReaderAvailableError,
  NoWriterAvailableError,
  QueryTimeoutError,
  TransactionResolutionUnknownError,
} from './src/core/errors.ts'
export type { HaEventMap, HaEventName, HaEvents } from './src/core/events.ts'
export type { HostAddress, HostInfo, HostRole, TargetRole } from './src/core/host.ts'
export type { Logger, LogLevel } from './src/core/logger.ts'
export type { CoreOptions, DialectName, ReaderFallback, ReaderStrategy } from './src/core/options.ts'
export type {
  ConnectContext,
  ExecuteContext,
  ExecuteKind,
  HaPlugin,
  PluginOptions,
  PluginServices,
  Precheck,
} from './src/core/plugin.ts'
export type { LoadBalanceHosts, TargetSessionAttrs } from './src/core/session-attrs.ts'
export type { Topology } from './src/core/topology.ts'
export type { PatroniAuthOptions, PatroniOptions, PatroniTlsOptions } from './src/dialects/patroni-options.ts'
export type { HaApi } from './src/ha-api.ts'
export type { HaOptions } from './src/options.ts'
export { connectionTrackerPlugin } from './src/plugins/connection-tracker.ts'
export { failoverPlugin } from './src/plugins/failover/failover-plugin.ts'
export type { FailoverOptions } from './src/plugins/failover/options.ts'
export { hostMonitoringPlugin } from './src/plugins/host-monitoring/host-monitoring-plugin.ts'
export type { HostMonitoringOptions } from './src/plugins/host-monitoring/options.ts'
export {
  type AwsCredentialsOption,
  type IamOptions,
  type IamPlugin,
  type IamPluginInput,
  type IamPluginStats,
  iamPlugin,
  type RdsSignerModule,
} from './src/plugins/iam/mod.ts'
export {
  type SecretStage,
  type SecretsManagerOptions,
  type SecretsManagerPlugin,
  type SecretsManagerPluginInput,
  type SecretsManagerPluginStats,
  type SecretsManagerSdk,
  secretsManagerPlugin,
} from './src/plugins/secrets-manager/mod.ts'
export { type PostgresHaOptions, type PostgresHaSql, postgresHa, type TypesOf } from './src/postgres-ha.ts'
export type { Clock } from './src/runtime/clock.ts'
export type { Runtime } from './src/runtime/runtime.ts'
export type { SleepOptions, TimerHandle, TimerOptions } from './src/runtime/timers.ts'
