/**
 * System V shared memory left behind by killed servers.
 *
 * Every PostgreSQL postmaster creates a small System V segment (56 bytes) as an interlock, even
 * with `shared_memory_type = mmap`. A clean shutdown removes it; a SIGKILL does not, and
 * PostgreSQL only reclaims it when it restarts on the same data directory with the old
 * `postmaster.pid` in place. The lab kills servers on purpose, restarts them after removing that
 * file, and deletes data directories, so each kill used to leak one segment. The kernel allows
 * 4096 (`kernel.shmmni`); once a long test session had used them up, every later `initdb` failed
 * with "could not create shared memory segment: No space left on device" — for the rest of the
 * machine's life, CI runs included.
 *
 * An orphan is a segment that no process has attached (`nattch` 0) and whose creator is gone:
 * nobody can ever use it again, and PostgreSQL itself removes such a segment when it finds one.
 * A running server always has its segment attached; a server being started has a live creator.
 * So removing orphans is safe while other labs run side by side.
 *
 * Dynamic shared memory (`dynamic_shared_memory_type = posix`, PostgreSQL's default) leaks too: a
 * killed server leaves its `/dev/shm/PostgreSQL.<n>` files, RAM that only a reboot frees (8,500
 * files, 4.4 GB, were found here). The lab's servers use `mmap` (files in the data folder);
 * `removeOrphanDsmFiles` frees what older runs, or servers started elsewhere, left.
 *
 * @module
 */
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { serverUser } from './pg-bin.ts'
import { alive } from './procs.ts'

/** One row of `/proc/sysvipc/shm`. */
export interface Segment {
  shmid: number
  /** The process that created it (a postmaster). */
  creatorPid: number
  attached: number
  uid: number
}

/** The System V segments on this machine (empty where `/proc/sysvipc/shm` cannot be read). */
export function segments(): Segment[] {
  let text: string
  try {
    text = readFileSync('/proc/sysvipc/shm', 'utf8')
  } catch {
    return []
  }
  const lines = text.trim().split('\n')
  const header = lines[0]?.trim().split(/\s+/) ?? []
  const col = (name: string) => header.indexOf(name)
  const [shmid, cpid, nattch, uid] = [col('shmid'), col('cpid'), col('nattch'), col('uid')]
  if (shmid < 0 || cpid < 0 || nattch < 0 || uid < 0) return []
  return lines.slice(1).map((line) => {
    const f = line.trim().split(/\s+/).map(Number)
    return { shmid: f[shmid]!, creatorPid: f[cpid]!, attached: f[nattch]!, uid: f[uid]! }
  })
}

/** The uid the lab's servers run as. */
function serverUid(): number | undefined {
  return serverUser()?.uid ?? process.getuid?.()
}

/** Whether `s` can never be used again: nobody attached, creator gone. */
function isOrphan(s: Segment, uid: number | undefined): boolean {
  return s.uid === uid && s.attached === 0 && !alive(s.creatorPid)
}

/**
 * Removes the orphaned segments of the servers' user; returns how many. Best effort: a machine
 * without `ipcrm` (util-linux) keeps its orphans, and the next `initdb` says why it failed.
 */
export function removeOrphanSegments(): number {
  const uid = serverUid()
  const orphans = segments().filter((s) => isOrphan(s, uid))
  // Bounded: one ipcrm per 500 segments, at most the kernel's 4096 in all.
  for (let i = 0; i < orphans.length; i += 500) {
    const args = orphans.slice(i, i + 500).flatMap((s) => ['-m', String(s.shmid)])
    spawnSync('ipcrm', args, { stdio: 'ignore', timeout: 10_000 })
  }
  return orphans.length
}

/**
 * After killing postmasters: waits (bounded) until their children have let go of the segments,
 * then removes the orphans, so a lab that is down leaves none behind.
 */
export async function releaseSegmentsOf(postmasters: number[], timeoutMs = 2000): Promise<void> {
  const killed = new Set(postmasters)
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const held = segments().some((s) => killed.has(s.creatorPid) && s.attached > 0)
    if (!held) break
    await new Promise((r) => setTimeout(r, 20))
  }
  removeOrphanSegments()
}

/**
 * Removes `/dev/shm/PostgreSQL.*` files of the servers' user that no process maps and that are
 * older than a minute (a segment being created is young; a live one is mapped by its server).
 * Reads every process's memory map (~0.1 s): for lab start-up and teardown, not per server.
 */
export function removeOrphanDsmFiles(): number {
  const uid = serverUid()
  let names: string[]
  try {
    names = readdirSync('/dev/shm').filter((n) => /^PostgreSQL\.\d+$/.test(n))
  } catch {
    return 0
  }
  if (names.length === 0) return 0
  const mapped = new Set<string>()
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      for (const hit of readFileSync(`/proc/${pid}/maps`, 'utf8').matchAll(/\/dev\/shm\/(PostgreSQL\.\d+)/g))
        mapped.add(hit[1]!)
    } catch {}
  }
  const oldest = Date.now() - 60_000
  let removed = 0
  for (const name of names) {
    if (mapped.has(name)) continue
    try {
      const st = statSync(`/dev/shm/${name}`)
      if (st.uid !== uid || st.mtimeMs > oldest) continue
      rmSync(`/dev/shm/${name}`, { force: true })
      removed++
    } catch {}
  }
  return removed
}
