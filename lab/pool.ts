/**
 * What makes a lab fit to be handed to its next user (a test file run after the one that started
 * it, `tests/helpers/shared-lab.ts`): a lab start costs ~0.65 s of CPU (three template copies,
 * three servers, a daemon), and the suite started ~55 per runtime. A lab is reused only as a
 * working cluster of the same shape: every instance running, one writer and every other a standby
 * streaming from it, unfaulted, no session but the lab's own, and the catalogs of every database
 * exactly as they were at bring-up (tables, functions, roles, databases, grants, settings, slots,
 * prepared transactions). Objects a test made in schema `public` are dropped first; anything else
 * left over keeps the lab from being reused. The writer may be another instance than at bring-up,
 * on a later timeline (the last user failed over and brought the old writer back as a reader):
 * test files take the writer from `lab.status()`, and requiring the first instance on timeline 1
 * kept about half the labs of a run (those of every failover test) from being handed on. A Patroni
 * cluster (lab/patroni/control.ts `park`) is reused on the same terms.
 *
 * @module
 */
import type { Sql } from './instance.ts'
import { sleep, within } from './instance.ts'

/**
 * A digest of everything a test could leave behind in the catalogs that a fresh lab does not have.
 * Objects with an OID below 16384 are the built-in ones: only their grants are compared.
 */
const FINGERPRINT = `
SELECT md5(string_agg(x, E'\\n' ORDER BY x)) AS digest FROM (
  SELECT 'class ' || c.oid || ' ' || c.relname || ' ' || c.relnamespace || ' ' || c.relkind::text || ' ' || c.relowner
      || ' ' || coalesce(c.relacl::text, '') || ' ' || c.relnatts || ' ' || c.relhastriggers || ' ' || c.relrowsecurity
    FROM pg_catalog.pg_class c WHERE c.oid >= 16384 OR c.relacl IS NOT NULL
  UNION ALL SELECT 'attr ' || a.attrelid || ' ' || a.attname || ' ' || a.atttypid || ' ' || a.attnotnull || ' ' || a.attisdropped
    FROM pg_catalog.pg_attribute a WHERE a.attrelid >= 16384
  UNION ALL SELECT 'proc ' || p.oid || ' ' || p.proname || ' ' || p.pronamespace || ' ' || md5(coalesce(p.prosrc, ''))
      || ' ' || p.proowner || ' ' || coalesce(p.proacl::text, '') || ' ' || coalesce(p.proconfig::text, '') || ' ' || p.prosecdef
    FROM pg_catalog.pg_proc p WHERE p.oid >= 16384 OR p.proacl IS NOT NULL
  UNION ALL SELECT 'nsp ' || n.oid || ' ' || n.nspname || ' ' || n.nspowner || ' ' || coalesce(n.nspacl::text, '')
    FROM pg_catalog.pg_namespace n WHERE n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
  UNION ALL SELECT 'type ' || t.oid || ' ' || t.typname FROM pg_catalog.pg_type t WHERE t.oid >= 16384
  UNION ALL SELECT 'constraint ' || oid || ' ' || conname FROM pg_catalog.pg_constraint WHERE oid >= 16384
  UNION ALL SELECT 'trigger ' || oid || ' ' || tgname || ' ' || tgenabled::text FROM pg_catalog.pg_trigger WHERE oid >= 16384
  UNION ALL SELECT 'rule ' || oid || ' ' || rulename FROM pg_catalog.pg_rewrite WHERE oid >= 16384
  UNION ALL SELECT 'policy ' || oid FROM pg_catalog.pg_policy
  UNION ALL SELECT 'default acl ' || oid FROM pg_catalog.pg_default_acl
  UNION ALL SELECT 'extension ' || extname || ' ' || extversion FROM pg_catalog.pg_extension
  UNION ALL SELECT 'event trigger ' || oid FROM pg_catalog.pg_event_trigger
  UNION ALL SELECT 'publication ' || oid FROM pg_catalog.pg_publication
  UNION ALL SELECT 'large object ' || oid FROM pg_catalog.pg_largeobject_metadata
  UNION ALL SELECT 'cast ' || oid FROM pg_catalog.pg_cast WHERE oid >= 16384
  UNION ALL SELECT 'operator ' || oid FROM pg_catalog.pg_operator WHERE oid >= 16384
  UNION ALL SELECT 'role ' || r.oid || ' ' || r.rolname || ' ' || r.rolsuper || r.rolinherit || r.rolcreaterole || r.rolcreatedb
      || r.rolcanlogin || r.rolreplication || r.rolbypassrls || ' ' || r.rolconnlimit || ' ' || md5(coalesce(r.rolpassword, ''))
      || ' ' || coalesce(r.rolvaliduntil::text, '')
    FROM pg_catalog.pg_authid r
  UNION ALL SELECT 'member ' || roleid || ' ' || member || ' ' || admin_option FROM pg_catalog.pg_auth_members
  UNION ALL SELECT 'database ' || d.oid || ' ' || d.datname || ' ' || d.datdba || ' ' || d.datallowconn || ' ' || d.datconnlimit
      || ' ' || coalesce(d.datacl::text, '')
    FROM pg_catalog.pg_database d
  UNION ALL SELECT 'role setting ' || setdatabase || ' ' || setrole || ' ' || setconfig::text FROM pg_catalog.pg_db_role_setting
  UNION ALL SELECT 'subscription ' || oid FROM pg_catalog.pg_subscription
  UNION ALL SELECT 'tablespace ' || oid || ' ' || spcname FROM pg_catalog.pg_tablespace
  UNION ALL SELECT 'slot ' || slot_name FROM pg_catalog.pg_replication_slots
  UNION ALL SELECT 'prepared ' || gid FROM pg_catalog.pg_prepared_xacts
  UNION ALL SELECT 'setting ' || name || ' ' || coalesce(setting, '') FROM pg_catalog.pg_file_settings
    WHERE sourcefile LIKE '%postgresql.auto.conf'
) AS t(x)`

/** Drops what tests made in schema `public` (empty in a fresh lab); anything else is left as it is. */
const DROP_PUBLIC = `
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname, c.relkind FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      -- Sequences last: an identity column's cannot be dropped before its table (which takes it along).
      ORDER BY c.relkind = 'S' LOOP
    BEGIN
      EXECUTE format(CASE r.relkind WHEN 'v' THEN 'DROP VIEW IF EXISTS public.%I CASCADE'
        WHEN 'm' THEN 'DROP MATERIALIZED VIEW IF EXISTS public.%I CASCADE'
        WHEN 'S' THEN 'DROP SEQUENCE IF EXISTS public.%I CASCADE'
        WHEN 'f' THEN 'DROP FOREIGN TABLE IF EXISTS public.%I CASCADE'
        ELSE 'DROP TABLE IF EXISTS public.%I CASCADE' END, r.relname);
    EXCEPTION WHEN undefined_table OR wrong_object_type THEN NULL;
    END;
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS f, p.prokind FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' LOOP
    EXECUTE format(CASE r.prokind WHEN 'p' THEN 'DROP PROCEDURE %s CASCADE' WHEN 'a' THEN 'DROP AGGREGATE %s CASCADE'
      ELSE 'DROP FUNCTION %s CASCADE' END, r.f);
  END LOOP;
  FOR r IN SELECT t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = 'public' AND t.typtype IN ('e', 'c', 'd', 'r') AND t.typrelid = 0 LOOP
    EXECUTE format('DROP TYPE IF EXISTS public.%I CASCADE', r.typname);
  END LOOP;
END $$`

const SLOTS_LINE = "\n  UNION ALL SELECT 'slot ' || slot_name FROM pg_catalog.pg_replication_slots"
if (!FINGERPRINT.includes(SLOTS_LINE)) throw new Error('lab/pool.ts: the fingerprint lists no slots')
/** The same without replication slots: Patroni keeps one per other member on its leader. */
const FINGERPRINT_NO_SLOTS = FINGERPRINT.replace(SLOTS_LINE, '')

/**
 * The catalog digest of the database `sql` is connected to; `slots: false` leaves replication slots
 * out (a Patroni cluster's follow its leader: the leader's holds one per other member).
 */
export async function fingerprint(sql: Sql, { slots = true }: { slots?: boolean } = {}): Promise<string> {
  const [row] = await within(
    10_000,
    sql.unsafe(slots ? FINGERPRINT : FINGERPRINT_NO_SLOTS),
    'catalog fingerprint',
  )
  return String(row!.digest)
}

/** Drops the tables, views, sequences, functions and types tests made in schema `public`. */
export async function dropPublic(sql: Sql): Promise<void> {
  await within(10_000, sql.unsafe(DROP_PUBLIC), 'dropping what tests made in public')
}

/**
 * Ends every client session but the lab's own (application_name `pgha-lab-control`, and those of
 * `keep`: a cluster manager's) and waits until they are gone: a session left by the last user could
 * hold locks, LISTEN, or run a statement.
 */
export async function endSessions(sql: Sql, timeoutMs = 5_000, keep: string[] = []): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  const kept = ['pgha-lab-control', ...keep]
  while (Date.now() < deadline) {
    const [row] = await within(
      2_000,
      sql`SELECT count(pg_catalog.pg_terminate_backend(pid))::int AS n FROM pg_catalog.pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid()
          AND NOT (coalesce(application_name, '') = ANY(${kept}::text[]))`,
      'ending sessions',
    )
    if (row!.n === 0) return true
    await sleep(20)
  }
  return false
}

/**
 * Waits until every reader has replayed the writer's WAL up to now (what the last user wrote and
 * what parking dropped), each for at most `timeoutMs`. Returns the id of the first reader that did
 * not, with the position it fell short of, or undefined when all did.
 */
export async function replayedUpToNow(
  writer: Sql,
  readers: readonly { id: string; admin: Sql }[],
  timeoutMs = 5_000,
): Promise<string | undefined> {
  const [lsn] = await within(2_000, writer`SELECT pg_current_wal_lsn()::text AS lsn`)
  for (const { id, admin } of readers) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const [r] = await within(
        2_000,
        admin`SELECT coalesce(pg_last_wal_replay_lsn() >= ${lsn!.lsn}::pg_lsn, false) AS caught_up`,
      )
      if (r!.caught_up) break
      if (Date.now() > deadline) return `${id} did not replay up to ${lsn!.lsn} in ${timeoutMs} ms`
      await sleep(20)
    }
  }
  return undefined
}
