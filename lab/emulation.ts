/**
 * The managed-service SQL surface, installed on the writer at `up` and replicated to every reader.
 * Functions read the topology from `lab_internal.instances` (written by the control plane on the
 * writer, replicated in milliseconds) and the instance's own identity from the non-replicated
 * `pgha_lab.instance_id` setting of its `postgresql.conf`. They answer the AWS drivers' own
 * queries (aws-advanced-nodejs-wrapper and -jdbc-wrapper dialects), for the application user.
 *
 * @module
 */
import type { LabDialect } from './types.ts'

/**
 * `pg_settings` does not list custom settings, so `rds.extensions` (which the drivers read to
 * detect Aurora / RDS) is added to the view itself, in the lab database only.
 */
function settingsView(extensions: string): string {
  return `
DO $lab$
DECLARE
  cols text;
  def text := rtrim(pg_catalog.pg_get_viewdef('pg_catalog.pg_settings'::regclass), '; ' || chr(10));
BEGIN
  SELECT string_agg(CASE attname
      WHEN 'name' THEN '''rds.extensions''::text'
      WHEN 'setting' THEN '''${extensions}''::text'
      WHEN 'category' THEN '''Customized Options''::text'
      WHEN 'short_desc' THEN '''Installed RDS extensions (emulated by the postgres-ha lab)''::text'
      WHEN 'context' THEN '''sighup''::text'
      WHEN 'vartype' THEN '''string''::text'
      WHEN 'source' THEN '''configuration file''::text'
      WHEN 'boot_val' THEN '''${extensions}''::text'
      WHEN 'reset_val' THEN '''${extensions}''::text'
      WHEN 'pending_restart' THEN 'false'
      ELSE 'NULL::' || pg_catalog.format_type(atttypid, atttypmod) END
    || ' AS ' || quote_ident(attname), ', ' ORDER BY attnum)
  INTO cols
  FROM pg_catalog.pg_attribute
  WHERE attrelid = 'pg_catalog.pg_settings'::regclass AND attnum > 0 AND NOT attisdropped;
  EXECUTE 'CREATE OR REPLACE VIEW pg_catalog.pg_settings AS ' || def || ' UNION ALL SELECT ' || cols;
END
$lab$;`
}

const AURORA = `
CREATE FUNCTION pg_catalog.aurora_db_instance_identifier() RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT pg_catalog.current_setting('pgha_lab.instance_id') $$;

CREATE FUNCTION pg_catalog.aurora_replica_status()
  RETURNS TABLE (
    server_id text, session_id text, durable_lsn bigint, highest_lsn_rcvd bigint,
    current_read_lsn bigint, cur_replay_latency_in_usec bigint, active_txns integer,
    is_current boolean, last_transport_error integer, last_error_timestamp timestamptz,
    last_update_timestamp timestamptz, feedback_xmin bigint, feedback_epoch integer,
    replica_lag_in_msec real, log_stream_speed_in_kib_per_second real,
    log_buffer_sequence_number bigint, oldest_read_view_trx_id bigint, oldest_read_view_lsn bigint,
    pending_read_ios integer, read_ios bigint, iops real, cpu real)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
  AS $$
    SELECT i.server_id,
      CASE WHEN i.role = 'writer' THEN 'MASTER_SESSION_ID' ELSE i.session_id END,
      NULL::bigint, NULL::bigint, NULL::bigint,
      CASE WHEN i.role = 'writer' THEN NULL ELSE 0::bigint END,
      0, true, 0, NULL::timestamptz,
      -- Aurora 13.9+: NULL for the instance you are connected to.
      CASE WHEN i.server_id = current_setting('pgha_lab.instance_id') THEN NULL
           WHEN i.role = 'down' THEN i.down_since ELSE now() END,
      NULL::bigint, NULL::integer,
      -- Real replay lag, as the writer measures it for each standby (NULL once caught up and idle).
      CASE WHEN i.role = 'writer' THEN NULL ELSE COALESCE(
        (SELECT (EXTRACT(EPOCH FROM r.replay_lag) * 1000)::real FROM pg_stat_replication r
          WHERE r.application_name = 'n' || split_part(i.server_id, '.', 4) LIMIT 1),
        i.lag_ms) END,
      0::real, 0::bigint, NULL::bigint, NULL::bigint, 0, 0::bigint, 0::real, i.cpu
    FROM lab_internal.instances i
    ORDER BY i.role <> 'writer', i.ord
  $$;
`

const MULTI_AZ = `
CREATE SCHEMA rds_tools;
GRANT USAGE ON SCHEMA rds_tools TO PUBLIC;

CREATE FUNCTION rds_tools.dbi_resource_id() RETURNS text
  LANGUAGE sql STABLE AS $$ SELECT pg_catalog.current_setting('pgha_lab.instance_id') $$;

-- The writer's id, on every instance (the writer included).
CREATE FUNCTION rds_tools.multi_az_db_cluster_source_dbi_resource_id() RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
  AS $$ SELECT server_id FROM lab_internal.instances WHERE role = 'writer' LIMIT 1 $$;

-- endpoint's first DNS label is the last octet of the address: pattern 127.0.0.? maps it back.
CREATE FUNCTION rds_tools.show_topology(client text DEFAULT NULL)
  RETURNS TABLE (id text, endpoint text, port integer)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
  AS $$
    SELECT server_id, split_part(server_id, '.', 4) || '.instance.pgha-lab', port
    FROM lab_internal.instances ORDER BY ord
  $$;
`

/** The SQL that installs `dialect` in the lab database (run once on the writer, as superuser). */
export function emulationSql(dialect: LabDialect): string {
  if (dialect === 'aurora-pg') return AURORA + settingsView('aurora_stat_utils,pg_stat_statements')
  if (dialect === 'rds-multi-az-pg') return MULTI_AZ + settingsView('rds_tools,pg_stat_statements')
  return ''
}

/** The instance-id pattern a driver uses to turn a topology name into an endpoint. */
export function hostPattern(dialect: LabDialect): string {
  return dialect === 'rds-multi-az-pg' ? '127.0.0.?' : '?'
}
