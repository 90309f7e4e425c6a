/**
 * The topology dialects: Aurora PostgreSQL, RDS Multi-AZ DB cluster, plain streaming replication.
 *
 * @module
 */
export { AURORA_TOPOLOGY_QUERY, auroraPgDialect } from './aurora-pg.ts'
export { DETECT_QUERY, detectDialect, dialectByName } from './detect.ts'
export { PATRONI_LAG_QUERY, patroniDialect } from './patroni.ts'
export { pgDialect } from './pg.ts'
export { MULTI_AZ_TOPOLOGY_QUERY, rdsMultiAzPgDialect } from './rds-multi-az-pg.ts'
export { REPLICATION_LAG_QUERY, STANDBY_IDENTITY_QUERY } from './standby-lag.ts'
