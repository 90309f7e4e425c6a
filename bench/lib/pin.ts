/**
 * CPU pinning for a measurement on a small machine: the benchmark process on one CPU, the lab (its
 * daemon with the endpoint proxies, and every PostgreSQL process) on the others, with `taskset`.
 * Without it the client shares both CPUs with the servers, whose work moves its caches and takes
 * its CPU in the middle of a piece; pinned, the client's CPU time per statement moves less. Both
 * clients of a comparison run in the one pinned process against the one pinned lab, so the pinning
 * is the same for all of them.
 *
 * A child inherits its parent's affinity, so a server process the lab starts later (a backend for
 * a new connection, forked by its postmaster) lands on the lab's CPUs too.
 *
 * @module
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readLabFile } from '../../lab/client.ts'
import { childrenOf } from '../../lab/procs.ts'

const TASKSET = '/usr/bin/taskset'

/** Where the processes run (it goes into the JSON): the CPU lists, or why nothing was pinned. */
export type Pinning =
  | { pinned: true; bench: string; lab: string; labProcesses: number }
  | { pinned: false; reason: string }

/** The CPUs `pid` may run on, from `taskset -c -p` (`0-1,3` → [0, 1, 3]); `[]` when unknown. */
export function allowedCpus(pid: number = process.pid): number[] {
  if (!existsSync(TASKSET)) return []
  const out = spawnSync(TASKSET, ['-c', '-p', String(pid)], { encoding: 'utf8', timeout: 10_000 })
  const list = /:\s*([\d,-]+)\s*$/.exec(out.stdout ?? '')?.[1]
  if (out.status !== 0 || !list) return []
  return list.split(',').flatMap((part) => {
    const [a, b] = part.split('-').map(Number)
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_, i) => a! + i)
  })
}

/** `pid` and all its threads onto `cpus` (a `taskset -c` list); false when taskset refused. */
function pin(pid: number, cpus: string): boolean {
  return (
    spawnSync(TASKSET, ['-a', '-c', '-p', cpus, String(pid)], { stdio: 'ignore', timeout: 10_000 }).status ===
    0
  )
}

/** `root` and every process below it. */
function tree(root: number): number[] {
  const out = [root]
  for (let i = 0; i < out.length && out.length < 10_000; i++) out.push(...childrenOf(out[i]!))
  return out
}

/**
 * Pins this process to the first CPU it may run on and the lab in `labDir` to the others, when
 * `/usr/bin/taskset` exists and at least 2 CPUs are allowed; otherwise leaves everything where it
 * is and says why.
 *
 * @example
 * ```ts
 * await using lab = await openBenchLab({ endpointLagMs: 0 })
 * const pinning = pinBenchAndLab(lab.dir) // { pinned: true, bench: '0', lab: '1', labProcesses: 14 }
 * ```
 */
export function pinBenchAndLab(labDir: string): Pinning {
  if (!existsSync(TASKSET)) return { pinned: false, reason: `${TASKSET} not found` }
  const cpus = allowedCpus()
  if (cpus.length < 2) return { pinned: false, reason: `${cpus.length || 'unknown'} CPU(s) allowed` }
  const daemon = readLabFile(labDir)?.pid
  if (!daemon) return { pinned: false, reason: `no lab daemon found in ${labDir}` }
  const bench = String(cpus[0])
  const lab = cpus.slice(1).join(',')
  const labProcesses = tree(daemon)
  // The lab first: were this process pinned and the lab not, both would share the bench's CPU.
  const refused = labProcesses.filter((pid) => !pin(pid, lab))
  if (refused.length === labProcesses.length || !pin(process.pid, bench)) {
    unpin(labDir, cpus)
    return { pinned: false, reason: 'taskset refused' }
  }
  return { pinned: true, bench, lab, labProcesses: labProcesses.length - refused.length }
}

/** Lets this process and the lab in `labDir` run on `cpus` again (every CPU allowed at the start). */
export function unpin(labDir: string, cpus: readonly number[]): void {
  const list = cpus.join(',')
  const daemon = readLabFile(labDir)?.pid
  if (daemon) for (const pid of tree(daemon)) pin(pid, list)
  pin(process.pid, list)
}
