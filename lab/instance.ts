/**
 * One PostgreSQL server of the lab: its data directory, configuration, process and signals, and
 * the ways a replica is (re)built: a copy of the cached template, `pg_rewind`, or a fresh copy
 * taken between `pg_backup_start` and `pg_backup_stop` (the only way with embedded binaries).
 *
 * @module
 */
import type { ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { copyFile, mkdir, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import postgres from 'postgres'
import { chownR, copyAsServerUser, type PgBin, runAs, spawnAs } from './pg-bin.ts'
import { alive, freezeTree, killTree, postmasterOf, thawTree } from './procs.ts'
import { removeOrphanSegments } from './shared-memory.ts'

export const ADMIN_USER = 'lab_admin'
export const ADMIN_PASSWORD = 'lab-admin-secret'
export const APP_USER = 'lab_app'
export const APP_PASSWORD = 'lab-app-secret'
export const DATABASE = 'lab'

/** What the control plane decides about a server's configuration. */
export interface InstanceConfig {
  /** Internal port of the server to stream from (standbys), or undefined (writer). */
  upstreamPort?: number
  /**
   * Runs as a standby (standby.signal), even with no upstream to stream from yet; default: whether
   * there is an upstream. Only the writer may ever start without it.
   */
  standby?: boolean
  /** application_names the writer waits for (`ANY 1 (...)`); empty: asynchronous. */
  syncNames: string[]
  dialect: string
}

export type Sql = ReturnType<typeof postgres>

export function adminSql(port: number, max = 2): Sql {
  return postgres({
    host: '127.0.0.1',
    port,
    user: ADMIN_USER,
    password: ADMIN_PASSWORD,
    database: DATABASE,
    max,
    idle_timeout: 0,
    connect_timeout: 3,
    max_lifetime: null,
    onnotice: () => {},
    connection: { application_name: 'pgha-lab-control' },
  })
}

/** Races a promise against a timeout. */
export function within<T>(ms: number, p: Promise<T>, what = 'operation'): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** A server process and its data directory. */
export class Instance {
  readonly dataDir: string
  readonly logFile: string
  child?: ChildProcess
  pid?: number
  frozen = false
  private sql?: Sql
  onExit?: (code: number | null, signal: string | null) => void

  constructor(
    readonly bin: PgBin,
    readonly id: string,
    readonly pgPort: number,
    dir: string,
  ) {
    this.dataDir = join(dir, 'data', id)
    this.logFile = join(dir, 'logs', `${id}.log`)
  }

  /** `n11` for `127.0.0.11`: a name usable unquoted in `synchronous_standby_names`. */
  get appName(): string {
    return `n${this.id.split('.').pop()}`
  }

  get running(): boolean {
    return alive(this.pid)
  }

  /** The admin connection pool (direct, not through the fault proxy). */
  get admin(): Sql {
    this.sql ??= adminSql(this.pgPort)
    return this.sql
  }

  async closeAdmin(): Promise<void> {
    const sql = this.sql
    this.sql = undefined
    await sql?.end({ timeout: 0 }).catch(() => {})
  }

  /**
   * Writes the whole configuration; standby.signal follows `config.standby` unless `keepSignal`
   * (a standby about to be promoted: the startup process removes the file itself).
   */
  writeConfig(config: InstanceConfig, keepSignal = false): void {
    const lines = [
      `# written by the postgres-ha lab before every start and on every topology change`,
      `listen_addresses = '127.0.0.1'`,
      `port = ${this.pgPort}`,
      `unix_socket_directories = ''`,
      `max_connections = 200`,
      `shared_buffers = 32MB`,
      // posix segments live in /dev/shm, and a SIGKILLed server's stay there for the machine's
      // life (one CI day left 8,500 files, 4.4 GB of RAM); mmap ones live in pg_dynshmem of the
      // data directory and go with it.
      `dynamic_shared_memory_type = mmap`,
      // The lab loses processes, never the OS: data written to the kernel survives a SIGKILL, so
      // fsync adds nothing to the durability the tests check (synchronous replication does).
      `fsync = off`,
      // A plan's cost estimate is not what it costs here: pg_rewind's listing of the source's files
      // (a recursive query estimated at 50 million rows, ~1,300 real ones) was JIT-compiled on each
      // rewind, 0.35 s of CPU for a 10 ms query. Nothing the lab runs gains from JIT.
      `jit = off`,
      `synchronous_commit = on`,
      `full_page_writes = on`,
      `wal_log_hints = on`,
      `wal_level = replica`,
      `max_wal_senders = 16`,
      `wal_keep_size = 512MB`,
      `hot_standby = on`,
      `hot_standby_feedback = on`,
      `wal_receiver_status_interval = 1s`,
      `wal_retrieve_retry_interval = 50ms`,
      `wal_receiver_timeout = 10s`,
      `wal_sender_timeout = 10s`,
      `recovery_target_timeline = 'latest'`,
      `synchronous_standby_names = '${config.syncNames.length ? `ANY 1 (${config.syncNames.join(', ')})` : ''}'`,
      `primary_conninfo = '${
        config.upstreamPort
          ? `host=127.0.0.1 port=${config.upstreamPort} user=${ADMIN_USER} password=${ADMIN_PASSWORD} application_name=${this.appName} connect_timeout=2`
          : ''
      }'`,
      `datestyle = 'iso, mdy'`,
      `timezone = 'UTC'`,
      `lc_messages = 'C'`,
      `default_text_search_config = 'pg_catalog.english'`,
      `log_line_prefix = '%m [%p] %q%a '`,
      `log_min_messages = warning`,
      // Per-instance identity: not replicated, read by the emulated topology functions.
      `pgha_lab.instance_id = '${this.id}'`,
      `pgha_lab.dialect = '${config.dialect}'`,
      '',
    ]
    writeFileSync(join(this.dataDir, 'postgresql.conf'), lines.join('\n'))
    writeFileSync(join(this.dataDir, 'postgresql.auto.conf'), '')
    chownR(join(this.dataDir, 'postgresql.conf'))
    chownR(join(this.dataDir, 'postgresql.auto.conf'))
    if (keepSignal) return
    const signalFile = join(this.dataDir, 'standby.signal')
    if (config.standby ?? config.upstreamPort !== undefined) {
      writeFileSync(signalFile, '')
      chownR(signalFile)
    } else rmSync(signalFile, { force: true })
  }

  /** Re-reads the configuration without a restart (re-pointing a standby, sync names). */
  reload(): void {
    if (this.pid && this.running) process.kill(this.pid, 'SIGHUP')
  }

  /** Starts the server and waits until it accepts connections. */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.running) return
    // A killed predecessor's segment would leak once its postmaster.pid is gone (shared-memory.ts).
    removeOrphanSegments()
    rmSync(join(this.dataDir, 'postmaster.pid'), { force: true })
    mkdirSync(join(this.logFile, '..'), { recursive: true })
    const fd = openSync(this.logFile, 'a')
    // detached: its own session, so a signal to the control plane's group never reaches it.
    const child = spawnAs(this.bin, 'postgres', ['-D', this.dataDir], {
      detached: true,
      stdio: ['ignore', fd, fd],
    })
    closeSync(fd)
    this.child = child
    this.pid = child.pid
    this.frozen = false
    let exited = false
    child.on('exit', (code, signal) => {
      exited = true
      if (this.child === child) {
        this.pid = undefined
        this.child = undefined
        this.frozen = false
        void this.closeAdmin()
        this.onExit?.(code, signal)
      }
    })
    child.on('error', () => {})
    child.unref()
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (exited)
        throw new Error(`postgres ${this.id} exited during start; see ${this.logFile}:\n${this.logTail()}`)
      try {
        const lines = readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')
        if (lines[7]?.trim() === 'ready' || lines[7]?.trim() === 'standby') return
      } catch {}
      await sleep(15)
    }
    throw new Error(`postgres ${this.id} did not become ready in ${timeoutMs} ms; see ${this.logFile}`)
  }

  logTail(lines = 15): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n')
    } catch {
      return ''
    }
  }

  /** Waits for the process to be gone. */
  async waitExit(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (this.running && Date.now() < deadline) await sleep(10)
    return !this.running
  }

  /** SIGKILL of the postmaster and every backend at once. */
  async kill(): Promise<void> {
    const pid = this.pid ?? postmasterOf(this.dataDir)
    if (pid) killTree(pid)
    await this.waitExit(5000)
  }

  /** SIGSTOP of every process: a hung host whose sockets stay open. */
  freeze(): void {
    if (!this.pid || !this.running) throw new Error(`${this.id} is not running`)
    freezeTree(this.pid)
    this.frozen = true
  }

  thaw(): void {
    if (this.pid) thawTree(this.pid)
    this.frozen = false
  }

  /** Fast shutdown (SIGINT); a frozen server is thawed first; SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<void> {
    const pid = this.pid
    if (!pid || !this.running) return
    if (this.frozen) this.thaw()
    process.kill(pid, 'SIGINT')
    if (!(await this.waitExit(timeoutMs))) await this.kill()
  }

  /** A fresh data directory copied from the cached template (its parent owned by the servers' user). */
  async createFromTemplate(template: string): Promise<void> {
    rmSync(this.dataDir, { recursive: true, force: true })
    await copyAsServerUser(template, this.dataDir)
  }

  /** Rewinds this (stopped) ex-writer onto the timeline of the server at `sourcePort`. */
  async rewind(sourcePort: number): Promise<string> {
    rmSync(join(this.dataDir, 'standby.signal'), { force: true })
    return await runAs(this.bin, 'pg_rewind', [
      '-D',
      this.dataDir,
      `--source-server=host=127.0.0.1 port=${sourcePort} user=${ADMIN_USER} password=${ADMIN_PASSWORD} dbname=${DATABASE}`,
    ])
  }

  /** Replaces the data directory by a copy of the running `source`, taken as a base backup. */
  async copyFrom(source: Instance): Promise<void> {
    const reserved = await source.admin.reserve()
    try {
      const fn = this.bin.major >= 15 ? 'pg_backup_start' : 'pg_start_backup'
      await reserved.unsafe(`SELECT pg_catalog.${fn}('pgha-lab rejoin', true)`)
      rmSync(this.dataDir, { recursive: true, force: true })
      const skipDirs = new Set([
        'pg_wal',
        'pg_replslot',
        'pg_dynshmem',
        'pg_notify',
        'pg_serial',
        'pg_snapshots',
        'pg_stat_tmp',
        'pg_subtrans',
      ])
      const skipFiles = new Set([
        'postmaster.pid',
        'postmaster.opts',
        'standby.signal',
        'backup_label',
        'tablespace_map',
      ])
      await copyTree(source.dataDir, this.dataDir, (rel) => {
        const [top, ...rest] = rel.split('/')
        if (rest.length > 0 && skipDirs.has(top!)) return false
        return !(rest.length === 0 && skipFiles.has(top!))
      })
      mkdirSync(join(this.dataDir, 'pg_wal', 'archive_status'), { recursive: true })
      const stop = this.bin.major >= 15 ? 'pg_backup_stop(false)' : 'pg_stop_backup(false, false)'
      const [row] = await reserved.unsafe(`SELECT labelfile, spcmapfile FROM pg_catalog.${stop}`)
      writeFileSync(join(this.dataDir, 'backup_label'), row!.labelfile)
      if (row!.spcmapfile) writeFileSync(join(this.dataDir, 'tablespace_map'), row!.spcmapfile)
      chownR(this.dataDir)
    } finally {
      reserved.release()
    }
  }

  exists(): boolean {
    return existsSync(join(this.dataDir, 'PG_VERSION'))
  }
}

/**
 * Copies a live directory tree; files that vanish while it runs are skipped (a base backup).
 * Asynchronous: the control plane's probes and proxies keep running during the copy.
 */
async function copyTree(src: string, dst: string, keep: (rel: string) => boolean, rel = ''): Promise<void> {
  await mkdir(dst, { recursive: true, mode: 0o700 })
  let entries: string[]
  try {
    entries = await readdir(src)
  } catch {
    return
  }
  for (const name of entries) {
    const r = rel ? `${rel}/${name}` : name
    if (!keep(r)) continue
    try {
      if ((await stat(join(src, name))).isDirectory())
        await copyTree(join(src, name), join(dst, name), keep, r)
      else await copyFile(join(src, name), join(dst, name))
    } catch (e: any) {
      if (e?.code !== 'ENOENT') throw e
    }
  }
}
