/**
 * A throwaway single PostgreSQL server on 127.0.0.1 for the authentication tests: its own data
 * directory in a folder of its own, a random free port, password authentication on TCP, removed on
 * `stop()` or, at the latest, when the process that started it is gone (lab/server-watch.ts). As
 * root it runs as the `postgres` user (PostgreSQL refuses to run as root).
 *
 * The folder is beside the lab's (in RAM where there is a tmpfs, lab/scratch.ts), not in the
 * system's temp folder: on this CI machine's disk the copy of the template cost 0.57 s of CPU
 * (3.3 s of wall) against 0.04 s (0.3 s) in RAM, and the suite starts ~27 of these servers.
 *
 * @example
 * ```ts
 * const pg = await startScratchPostgres()
 * try { ... connect to pg.port as pg.superuser / pg.superuserPassword ... } finally { await pg.stop() }
 * ```
 *
 * @module
 */

import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import postgres from 'postgres'
import { copyAsServerUser, removeTree } from '../pg-bin.ts'
import { freePort } from '../ports.ts'
import { labRoot } from '../scratch.ts'
import { endWatch, stopWhenGone } from '../server-watch.ts'
import { moveIntoPlace, removeAbandonedBuilds } from '../template.ts'

/** A running scratch server. */
export interface ScratchPostgres {
  readonly host: '127.0.0.1'
  readonly port: number
  readonly superuser: 'postgres'
  /** Random per run; test-only. */
  readonly superuserPassword: string
  /** Stops the server at once and deletes its directory; harmless twice. */
  stop(): Promise<void>
}

/** What only the process that started a scratch server knows of it. */
export interface StartedScratchPostgres {
  /** The folder of its Unix-domain socket (`.s.PGSQL.<port>`), which also holds its data; gone after `stop()`. */
  readonly socketDir: string
}

/** Options of {@link startScratchPostgres}. */
export interface ScratchPostgresOptions {
  /** Extra pg_hba.conf lines placed before the default `host all all 127.0.0.1/32 scram-sha-256`. */
  readonly hba?: readonly string[]
}

function run(command: string, args: string[], asUser: string | undefined): Promise<string> {
  const [cmd, argv] = asUser ? ['runuser', ['-u', asUser, '--', command, ...args]] : [command, args]
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} failed: ${stderr || error.message}`))
      else resolve(String(stdout))
    })
  })
}

/** The directory of PostgreSQL's server binaries: `PG_BIN`, the newest /usr/lib/postgresql/N/bin, or PATH. */
export function postgresBinDir(): string {
  const fromEnv = process.env.PG_BIN
  if (fromEnv && existsSync(join(fromEnv, 'initdb'))) return fromEnv
  const root = '/usr/lib/postgresql'
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a))
    if (versions[0]) return join(root, versions[0], 'bin')
  }
  for (const dir of (process.env.PATH ?? '').split(':'))
    if (dir && existsSync(join(dir, 'initdb'))) return dir
  throw new Error('No PostgreSQL server binaries found (initdb); install PostgreSQL or set PG_BIN.')
}

/** The template's superuser password: each server replaces it with its own random one at start. */
const TEMPLATE_PASSWORD = 'scratch-template-secret'
/** Bump when what the template holds changes. */
const TEMPLATE_VERSION = 1

/**
 * The cached `initdb` output every scratch server is copied from (beside the lab's templates, in
 * RAM where there is a tmpfs), made once per PostgreSQL binaries: an `initdb` per server cost
 * ~1.4 s of CPU, and the suite started 27 of these servers (9 test files × 3 runtimes). A copy
 * is the same cluster a fresh `initdb` makes (only the `postgres` superuser), at ~0.05 s.
 */
async function template(bin: string, asUser: string | undefined, owner?: [number, number]): Promise<string> {
  const root = join(labRoot(), 'templates')
  const tag = createHash('sha256').update(bin).digest('hex').slice(0, 12)
  const path = join(root, `scratch-${tag}-v${TEMPLATE_VERSION}`)
  if (existsSync(join(path, 'PG_VERSION'))) return path
  mkdirSync(root, { recursive: true, mode: 0o755 })
  removeAbandonedBuilds(root)
  const staging = join(root, `.tmp-${process.pid}-${Date.now()}-scratch`)
  mkdirSync(staging, { mode: 0o700 })
  try {
    if (owner) chownSync(staging, ...owner)
    const pwfile = join(staging, 'pwfile')
    writeFileSync(pwfile, `${TEMPLATE_PASSWORD}\n`, { mode: 0o600 })
    if (owner) chownSync(pwfile, ...owner)
    const data = join(staging, 'data')
    await run(
      join(bin, 'initdb'),
      ['-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--no-sync'],
      asUser,
    )
    moveIntoPlace(data, path)
    return path
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

/** Starts a scratch server; see the module doc. */
export async function startScratchPostgres(
  options: ScratchPostgresOptions = {},
): Promise<ScratchPostgres & StartedScratchPostgres> {
  const bin = postgresBinDir()
  const asRoot = process.getuid?.() === 0
  const asUser = asRoot ? 'postgres' : undefined
  const owner = asRoot ? await postgresOwner() : undefined
  const source = await template(bin, asUser, owner)
  const dir = mkdtempSync(join(labRoot(), 'scratch-'))
  const data = join(dir, 'data')
  const superuserPassword = randomBytes(12).toString('hex')
  if (owner) chownSync(dir, ...owner)
  const watch = stopWhenGone({ bin, data, dir, ...(asUser ? { asUser } : {}) })
  let port = 0
  let started = false
  const stop = async () => {
    if (started) {
      started = false
      await run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], asUser).catch(() => {})
    }
    endWatch(watch)
    removeTree(dir)
  }
  try {
    await copyAsServerUser(source, data)
    const hba = [
      'local all all scram-sha-256',
      ...(options.hba ?? []),
      'host all all 127.0.0.1/32 scram-sha-256',
      '',
    ].join('\n')
    writeFileSync(join(data, 'pg_hba.conf'), hba)
    if (owner) chownSync(join(data, 'pg_hba.conf'), ...owner)
    for (let attempt = 0; attempt < 3 && !started; attempt++) {
      port = await freePort()
      const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c max_connections=50`
      try {
        await run(
          join(bin, 'pg_ctl'),
          ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '30', '-o', opts, 'start'],
          asUser,
        )
        started = true
      } catch (e) {
        if (attempt === 2) throw e
      }
    }
    // This server's own random password, over the Unix socket (the first pg_hba line, whatever
    // lines the caller added for TCP).
    const admin = postgres({
      host: dir,
      port,
      user: 'postgres',
      password: TEMPLATE_PASSWORD,
      database: 'postgres',
      max: 1,
      onnotice: () => {},
    })
    try {
      await admin.unsafe(`ALTER ROLE postgres PASSWORD '${superuserPassword}'`)
    } finally {
      await admin.end({ timeout: 0 })
    }
  } catch (e) {
    await stop()
    throw e
  }
  return { host: '127.0.0.1', port, superuser: 'postgres', superuserPassword, socketDir: dir, stop }
}

async function postgresOwner(): Promise<[number, number]> {
  const [uid, gid] = await Promise.all([
    run('id', ['-u', 'postgres'], undefined),
    run('id', ['-g', 'postgres'], undefined),
  ])
  return [Number(uid.trim()), Number(gid.trim())]
}

/** A one-connection superuser client of a scratch server, for test set-up (create roles, ...). */
export function scratchAdmin(pg: ScratchPostgres): postgres.Sql {
  return postgres({
    host: pg.host,
    port: pg.port,
    user: pg.superuser,
    password: pg.superuserPassword,
    database: 'postgres',
    max: 1,
    onnotice: () => {},
  }) as unknown as postgres.Sql
}
