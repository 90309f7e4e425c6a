/**
 * The topology dialects: Aurora PostgreSQL, RDS Multi-AZ DB cluster, plain streaming replication.
 *
 * @module
 */
export { AURORA_TOPOLOGY_QUERY, auroraPgDialect } from './aurora-pg.ts'
export { DETECT_QUERY, detectDialect, dialectByName } from './detect.ts'
export { PG_REPLICATION_QUERY, pgDialect } from './pg.ts'
export { MULTI_AZ_TOPOLOGY_QUERY, rdsMultiAzPgDialect } from './rds-multi-az-pg.ts'
