/**
 * Where a lab's folder goes when the caller names none: in RAM (a tmpfs, `/dev/shm`) when the
 * machine has one with room, else `.lab/` in the repository.
 *
 * Why RAM: a lab copies the template data directory (~1,300 files, 35 MB) once per instance at
 * start and deletes them at down. On the shared 2-core CI machine, with several labs starting at
 * once, that file churn on the disk took 8 s per copy and 6 s per removal (the journal, not the
 * bytes), more than everything else a lab start does; on tmpfs it takes well under a second. The
 * servers run with `fsync = off` and the lab loses processes, never the OS, so RAM holds the data
 * exactly as well as the disk did. `PGHA_LAB_ROOT=<folder>` chooses the folder instead.
 *
 * A folder whose owner process and daemon are both gone (a test process killed before `down`
 * could run) would hold its RAM until a reboot: `sweepStaleLabs` removes such folders.
 *
 * @module
 */
import { mkdirSync, readdirSync, readFileSync, statfsSync } from 'node:fs'
import { join } from 'node:path'
import { repoRoot } from './pg-bin.ts'
import { alive } from './procs.ts'

/** `statfs` f_type of a tmpfs. */
const TMPFS_MAGIC = 0x01021994
/** A lab uses ~120 MB (three 35 MB copies plus WAL); leave the machine plenty. */
const MIN_FREE_BYTES = 2 * 1024 ** 3

let cached: string | undefined

/** The folder new labs are created in (created if missing). */
export function labRoot(): string {
  if (cached) return cached
  const given = process.env.PGHA_LAB_ROOT
  if (given) {
    mkdirSync(given, { recursive: true })
    cached = given
    return given
  }
  const uid = process.getuid?.() ?? 0
  try {
    const fs = statfsSync('/dev/shm')
    if (fs.type === TMPFS_MAGIC && fs.bavail * fs.bsize >= MIN_FREE_BYTES) {
      // One folder per user: the servers' user must traverse it (0755), and no other user may
      // plant files in it.
      const dir = join('/dev/shm', `pgha-lab-${uid}`)
      mkdirSync(dir, { recursive: true, mode: 0o755 })
      cached = dir
      return dir
    }
  } catch {}
  cached = join(repoRoot, '.lab')
  return cached
}

/**
 * Lab folders under `root` (named `run-<owner pid>-…` by `daemonConfig`) whose owner process is
 * gone and whose daemon (if it ever wrote `lab.json`) is gone too: nobody will ever `down` them.
 */
export function staleLabs(root: string): string[] {
  let names: string[] = []
  try {
    names = readdirSync(root)
  } catch {
    return []
  }
  const stale: string[] = []
  for (const name of names) {
    const owner = /^run-(\d+)-/.exec(name)?.[1]
    if (!owner || alive(Number(owner))) continue
    let daemon: number | undefined
    try {
      daemon = JSON.parse(readFileSync(join(root, name, 'lab.json'), 'utf8')).pid
    } catch {}
    // A daemon still alive cleans up after its owner itself (its owner watch, every 500 ms).
    if (daemon && alive(daemon)) continue
    stale.push(join(root, name))
  }
  return stale
}
