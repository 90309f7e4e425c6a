/**
 * A throwaway PostgreSQL 15 server for driver tests: a fresh data directory (copied from a cached
 * template that already holds the test user and database), a random free port on 127.0.0.1, SCRAM
 * password auth for a test user. Run as root it runs the server as the `postgres` user. `stop()`
 * shuts it down and removes the directory.
 */
import { type ChildProcess, execFile, execFileSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { copyAsServerUser, removeTree } from '../../lab/pg-bin.ts'
import { freePort } from '../../lab/ports.ts'
import { labRoot } from '../../lab/scratch.ts'
import { endWatch, stopWhenGone } from '../../lab/server-watch.ts'
import { removeOrphanDsmFiles, removeOrphanSegments } from '../../lab/shared-memory.ts'

const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin'
/**
 * Beside the lab's templates, in RAM (lab/scratch.ts), and with the `pgha` role and database
 * made once (v2): each server used to copy a template on disk with Node's `fs.cp` (0.26 s of CPU
 * on Node for ~970 files) and then run `psql` twice (create user, create database: 0.1 s).
 */
const TEMPLATE = join(labRoot(), 'templates', 'driver-pg15-v2')

export interface PgServer {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password: string
  readonly database: string
  /** `postgres://user:password@127.0.0.1:port/database` */
  readonly url: string
  /** The same server as the superuser `postgres` (same password). */
  readonly adminUrl: string
  /** The directory of its Unix-domain socket (`.s.PGSQL.<port>`). */
  readonly socketDir: string
  stop(): Promise<void>
}

/** Data directories of servers still running, stopped synchronously if the process exits first. */
const running = new Map<string, ChildProcess>()
let exitHook = false
function stopOnExit(data: string, dir: string): void {
  running.set(data, stopWhenGone({ bin: BIN, data, dir, ...(isRoot ? { asUser: 'postgres' } : {}) }))
  if (exitHook) return
  exitHook = true
  process.once('exit', () => {
    for (const [dir, watch] of running) {
      // Stopped here, at once: the watch would otherwise outlive this process by up to a second.
      endWatch(watch)
      const args = [join(BIN, 'pg_ctl'), '-D', dir, '-m', 'immediate', 'stop']
      try {
        if (isRoot) execFileSync('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'ignore' })
        else execFileSync(args[0]!, args.slice(1), { stdio: 'ignore' })
      } catch {
        // Already stopped.
      }
      rmSync(join(dir, '..'), { recursive: true, force: true })
    }
  })
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
  return new Promise((resolve, reject) => {
    const env = { ...process.env, PGPASSWORD: PASSWORD, PGCONNECT_TIMEOUT: '10' }
    execFile(file, argv, { timeout: timeoutMs, env }, (error, stdout, stderr) =>
      error ? reject(new Error(`${cmd} failed: ${error.message}\n${stderr}`)) : resolve(stdout),
    )
  })
}

async function owned(path: string): Promise<void> {
  if (!isRoot) return
  const { uid, gid } = await postgresIds()
  await chown(path, uid, gid)
}

let ids: Promise<{ uid: number; gid: number }> | undefined
function postgresIds(): Promise<{ uid: number; gid: number }> {
  ids ??= new Promise((resolve, reject) =>
    execFile('id', ['-u', 'postgres'], (e1, uid) =>
      e1
        ? reject(e1)
        : execFile('id', ['-g', 'postgres'], (e2, gid) =>
            e2 ? reject(e2) : resolve({ uid: +uid, gid: +gid }),
          ),
    ),
  )
  return ids
}

const PASSWORD = 'pgha-test-secret'

async function template(): Promise<string> {
  if (existsSync(join(TEMPLATE, 'PG_VERSION'))) return TEMPLATE
  const staging = await mkdtemp(join(labRoot(), 'driver-template-'))
  try {
    await chmod(staging, 0o700)
    await owned(staging)
    const pwfile = join(staging, 'pw')
    await writeFile(pwfile, PASSWORD)
    await owned(pwfile)
    const data = join(staging, 'data')
    await run(join(BIN, 'initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=scram-sha-256',
      `--pwfile=${pwfile}`,
      '-E',
      'UTF8',
      '--no-sync',
    ])
    // The test role and database, made once here rather than by every server.
    const port = await freePort()
    await run(join(BIN, 'pg_ctl'), [
      '-D',
      data,
      '-l',
      join(staging, 'log'),
      '-w',
      '-t',
      '60',
      '-o',
      ['-c', 'listen_addresses=', '-c', `port=${port}`, '-c', `unix_socket_directories=${staging}`]
        .map(quote)
        .join(' '),
      'start',
    ])
    try {
      const psql = (sql: string) =>
        run(
          join(BIN, 'psql'),
          ['-h', staging, '-p', String(port), '-U', 'postgres', '-d', 'postgres'].concat([
            '-w',
            '-v',
            'ON_ERROR_STOP=1',
            '-qAtc',
            sql,
          ]),
        )
      await psql(`create user pgha with password '${PASSWORD}' createdb`)
      await psql('create database pgha owner pgha')
    } finally {
      // A clean shutdown: the copies start without crash recovery.
      await run(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop'])
    }
    await mkdir(join(TEMPLATE, '..'), { recursive: true, mode: 0o755 })
    try {
      await rename(data, TEMPLATE)
    } catch {
      // Another process made it first.
    }
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
  if (!existsSync(join(TEMPLATE, 'PG_VERSION')))
    throw new Error(`the server template ${TEMPLATE} was not made`)
  return TEMPLATE
}

/**
 * Starts a server; resolves once it accepts connections.
 *
 * @example
 * ```ts
 * const pg = await startPgServer()
 * try { ... postgres(pg.url) ... } finally { await pg.stop() }
 * ```
 */
export async function startPgServer(
  options: {
    settings?: Record<string, string>
    /** Turns `ssl` on with this PEM certificate and key (the key is written mode 600, owned by the server). */
    tls?: { cert: string; key: string }
  } = {},
): Promise<PgServer> {
  // A server killed by an earlier run (a test process that timed out) may have left its System V
  // segment (with the kernel's 4096 used up no server starts) and /dev/shm files (lab/shared-memory.ts).
  removeOrphanSegments()
  removeOrphanDsmFiles()
  const source = await template()
  // In RAM when the machine has a tmpfs (lab/scratch.ts says why): copying and removing the data
  // directory on the shared CI disk took seconds.
  const dir = await mkdtemp(join(labRoot(), 'pg-'))
  await chmod(dir, 0o700)
  await owned(dir)
  const data = join(dir, 'data')
  // `cp -a` as the servers' user: files with the right owner at once, ~0.05 s of CPU.
  await copyAsServerUser(source, data)
  await mkdir(join(dir, 'sock'), { recursive: true }).then(() => owned(join(dir, 'sock')))
  const port = await freePort()
  const tls: Record<string, string> = {}
  if (options.tls) {
    for (const [name, pem] of [
      ['server.crt', options.tls.cert],
      ['server.key', options.tls.key],
    ] as const) {
      await writeFile(join(dir, name), pem, { mode: 0o600 })
      await chmod(join(dir, name), 0o600)
      await owned(join(dir, name))
    }
    Object.assign(tls, {
      ssl: 'on',
      ssl_cert_file: join(dir, 'server.crt'),
      ssl_key_file: join(dir, 'server.key'),
    })
  }
  const settings = {
    listen_addresses: '127.0.0.1',
    port: String(port),
    unix_socket_directories: join(dir, 'sock'),
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '200',
    shared_buffers: '16MB',
    // Segments in the data folder, not /dev/shm: a killed server leaks none (lab/shared-memory.ts).
    dynamic_shared_memory_type: 'mmap',
    ...tls,
    ...options.settings,
  }
  const args = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])
  try {
    await run(join(BIN, 'pg_ctl'), [
      '-D',
      data,
      '-l',
      join(dir, 'log'),
      '-w',
      '-t',
      '60',
      '-o',
      args.map(quote).join(' '),
      'start',
    ])
  } catch (error) {
    await run(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {})
    await rm(dir, { recursive: true, force: true })
    throw error
  }
  stopOnExit(data, dir)
  const server: PgServer = {
    host: '127.0.0.1',
    port,
    user: 'pgha',
    password: PASSWORD,
    database: 'pgha',
    url: `postgres://pgha:${PASSWORD}@127.0.0.1:${port}/pgha`,
    adminUrl: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`,
    socketDir: join(dir, 'sock'),
    async stop() {
      await run(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {})
      endWatch(running.get(data))
      running.delete(data)
      // `rm -rf`: about half the CPU of Node's recursive removal (lab/pg-bin.ts).
      removeTree(dir)
    },
  }
  return server
}

function quote(arg: string): string {
  return /^[\w=.\-/:]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`
}
