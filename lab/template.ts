/**
 * The cached, cleanly shut down data directory every lab instance starts from. `initdb` and the
 * role/database setup run once per PostgreSQL version; a lab then copies the template for the
 * writer and for every reader (a cold copy of a cleanly stopped cluster is a valid base backup,
 * so readers stream from the writer without `pg_basebackup`).
 *
 * The template lives beside the labs (`labRoot()`: in RAM when there is a tmpfs), not in the
 * repository: every lab instance starts with a copy of its ~1,300 files, and that copy cost 0.09 s
 * of CPU from the disk's page cache against 0.06 s from RAM — a third of a 3-node lab's start.
 * After a reboot it is built again (initdb, a second or two).
 *
 * @module
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import postgres from 'postgres'
import { ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER, DATABASE, Instance } from './instance.ts'
import { chownR, type PgBin, runAs } from './pg-bin.ts'
import { releasePort } from './port-reservations.ts'
import { freePort } from './ports.ts'
import { alive } from './procs.ts'
import { removeOrphanSegments } from './shared-memory.ts'

/** Bump when the template's contents change. */
const TEMPLATE_VERSION = 2

const HBA = `# written by the postgres-ha lab
local all all trust
host replication ${ADMIN_USER} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
`

const SETUP_DATABASE = `
CREATE SCHEMA lab_internal;
REVOKE ALL ON SCHEMA lab_internal FROM PUBLIC;
CREATE TABLE lab_internal.instances (
  server_id text PRIMARY KEY,
  session_id text NOT NULL,
  role text NOT NULL,
  down_since timestamptz,
  lag_ms real NOT NULL DEFAULT 0,
  cpu real NOT NULL DEFAULT 0,
  port integer NOT NULL,
  ord integer NOT NULL
);
`

/**
 * Removes the half-built templates in `templates` of processes killed while building one (in RAM,
 * they would stay). A build's folder is named `.tmp-<pid>-…` after the process that makes it.
 */
export function removeAbandonedBuilds(templates: string): void {
  try {
    for (const entry of readdirSync(templates)) {
      const pid = /^\.tmp-(\d+)-/.exec(entry)?.[1]
      if (pid && !alive(Number(pid))) rmSync(join(templates, entry), { recursive: true, force: true })
    }
  } catch {}
}

/** Moves a finished template's data directory to `path`; one another process made meanwhile is used. */
export function moveIntoPlace(built: string, path: string): void {
  try {
    renameSync(built, path)
  } catch (e) {
    if (!existsSync(join(path, 'PG_VERSION'))) throw e
  }
}

/** Returns the template path for `bin`, creating it when missing. */
export async function ensureTemplate(bin: PgBin, root: string, log: (m: string) => void): Promise<string> {
  const name = `pg${bin.version}-${bin.embedded ? 'embedded' : 'system'}-v${TEMPLATE_VERSION}`
  const path = join(root, 'templates', name)
  if (existsSync(join(path, 'PG_VERSION'))) return path
  log(`creating the template ${path} (once per PostgreSQL version)`)
  removeAbandonedBuilds(join(root, 'templates'))
  // initdb needs a free System V segment: reclaim any that killed servers left (shared-memory.ts).
  removeOrphanSegments()
  const tmp = join(root, 'templates', `.tmp-${process.pid}-${Date.now()}`)
  mkdirSync(tmp, { recursive: true, mode: 0o755 })
  chownR(join(root, 'templates'))
  const instance = new Instance(bin, 'template', await freePort(), tmp)
  try {
    mkdirSync(join(tmp, 'data'), { recursive: true })
    writeFileSync(join(tmp, 'pw'), ADMIN_PASSWORD)
    chownR(tmp)
    await runAs(bin, 'initdb', [
      '-D',
      instance.dataDir,
      '-U',
      ADMIN_USER,
      `--pwfile=${join(tmp, 'pw')}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C',
      // 1 MB WAL segments, not 16: each failover starts a timeline, and with it a new segment that
      // the new writer and each reader zero-fill and pg_rewind copies whole to the old writer;
      // 16 MB each time cost ~0.3 s of CPU per failover and rejoin (failover-kill: 5.7 → 4.2 s).
      '--wal-segsize=1',
      '--no-sync',
    ])
    writeFileSync(join(instance.dataDir, 'pg_hba.conf'), HBA)
    instance.writeConfig({ syncNames: [], dialect: 'pg' })
    await instance.start()
    const connect = (database: string) =>
      postgres({
        host: '127.0.0.1',
        port: instance.pgPort,
        user: ADMIN_USER,
        password: ADMIN_PASSWORD,
        database,
        max: 1,
        onnotice: () => {},
      })
    const postgresDb = connect('postgres')
    await postgresDb.unsafe(
      `CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASSWORD}'; GRANT pg_monitor TO ${APP_USER};`,
    )
    await postgresDb.unsafe(`CREATE DATABASE ${DATABASE} OWNER ${APP_USER}`)
    await postgresDb.end()
    const labDb = connect(DATABASE)
    await labDb.unsafe(SETUP_DATABASE)
    await labDb.end()
    await instance.stop()
    moveIntoPlace(instance.dataDir, path)
    return path
  } finally {
    await instance.kill().catch(() => {})
    releasePort(instance.pgPort)
    rmSync(tmp, { recursive: true, force: true })
  }
}
