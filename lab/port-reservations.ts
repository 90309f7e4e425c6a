/**
 * Machine-wide reservations of the ports lab servers use, held by a process for as long as it
 * lives (or until it releases them), not just while a server listens.
 *
 * Why: a lab kills and stops its servers on purpose and starts them again on the same port (the
 * standbys' `primary_conninfo` and the endpoints name it). While a server is down its port is
 * free to bind, so a bind test alone (`canListen`) let another lab or scratch server on the
 * machine, starting at that moment, take the port; the restart then failed with "could not bind
 * ... Address already in use" (three times in full suite runs, 4 test files at once and other
 * worktrees' labs beside them). `freePort` (ports.ts) reserves every port it hands out here and
 * skips ports another live process reserved. A lab's ports are reserved by its daemon, which
 * outlives a parked lab's handover to its next user and exits after `down`.
 *
 * One empty file `<port>.<pid>` per reservation in one folder for the whole machine (every
 * worktree, runtime and user; sticky like /tmp). A name of its own per process needs no lock:
 * each process creates its file, then lists the folder, and keeps the port only if no other live
 * process has a file for it; of two racing for one port, at least the later lister sees the
 * other. Files of dead processes count for nothing and are removed while listing, so the folder
 * holds about the live reservations.
 *
 * @module
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { alive } from './procs.ts'

let folder: string | undefined
const held = new Set<number>()

function dir(): string {
  if (folder) return folder
  const dir = join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'pgha-lab-ports')
  mkdirSync(dir, { recursive: true })
  try {
    chmodSync(dir, 0o1777)
  } catch {}
  // Released when the process exits normally; a killed one's files are ignored (see holders).
  process.on('exit', () => {
    for (const port of held) rmSync(join(dir, `${port}.${process.pid}`), { force: true })
  })
  folder = dir
  return dir
}

/** Live processes other than this one that reserved `port`; removes dead processes' files. */
export function portHolders(port: number): number[] {
  const d = dir()
  const out: number[] = []
  const liveness = new Map<number, boolean>()
  for (const name of readdirSync(d)) {
    const [p, owner] = name.split('.').map(Number)
    if (!owner || owner === process.pid) continue
    let live = liveness.get(owner)
    if (live === undefined) liveness.set(owner, (live = alive(owner)))
    if (!live) {
      try {
        rmSync(join(d, name), { force: true })
      } catch {} // another user's file in the sticky folder: it stays, and counts for nothing
    } else if (p === port) out.push(owner)
  }
  return out
}

/**
 * Reserves `port` for this process: false when this process already holds it (it was handed out
 * before) or another live process does.
 */
export function reservePort(port: number): boolean {
  const mine = join(dir(), `${port}.${process.pid}`)
  try {
    writeFileSync(mine, '', { flag: 'wx' })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw e
  }
  held.add(port)
  if (portHolders(port).length === 0) return true
  releasePort(port)
  return false
}

/** Gives up this process's reservation of `port` (nothing if it holds none). */
export function releasePort(port: number): void {
  if (!held.delete(port)) return
  rmSync(join(dir(), `${port}.${process.pid}`), { force: true })
}
