/**
 * The postgres.js driver of postgres-ha: per-host pools, the connection factory, error
 * classification and the postgres.js-shaped `sql`. The only part of the library that imports
 * `postgres` or `node:*`.
 *
 * @module
 */
export { classify } from './classify.ts'
export { createPostgresJsDriver, type PostgresJsDriver, type PostgresJsDriverOptions } from './driver.ts'
export { type ConnectionFactoryOptions, createConnectionFactory } from './factory.ts'
export { type ParsedConnection, type PasswordSource, parseConnection } from './parse.ts'
export { type ConnectHook, createHostPools, type HostPools, type HostPoolsOptions } from './pools.ts'
export { type CreateSqlOptions, createSql, type HaSql } from './sql.ts'
