/**
 * Signals for a PostgreSQL instance as a whole. PostgreSQL puts every backend in its own session
 * (`setsid` in `InitPostmasterChild`), so a process-group kill reaches only the postmaster;
 * these helpers stop the postmaster first (it can no longer fork), then act on all its children.
 *
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'

/** Direct children of `pid`, read from `/proc`. */
export function childrenOf(pid: number): number[] {
  const out: number[] = []
  let entries: string[] = []
  try {
    entries = readdirSync('/proc')
  } catch {
    return out
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      // The command may contain spaces and parentheses: the fields start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[1]) === pid) out.push(Number(name))
    } catch {}
  }
  return out
}

/** Whether `pid` exists and is not a zombie. */
export function alive(pid: number | undefined): boolean {
  if (!pid) return false
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** The command line of `pid`, or '' when it is gone. */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
  } catch {
    return ''
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {}
}

/** SIGSTOP the postmaster, then every child: the whole instance hangs with its sockets open. */
export function freezeTree(postmaster: number): number[] {
  signal(postmaster, 'SIGSTOP')
  const kids = childrenOf(postmaster)
  for (const kid of kids) signal(kid, 'SIGSTOP')
  return kids
}

/** SIGCONT every child, then the postmaster. */
export function thawTree(postmaster: number): void {
  for (const kid of childrenOf(postmaster)) signal(kid, 'SIGCONT')
  signal(postmaster, 'SIGCONT')
}

/**
 * Instance loss: freeze everything first so no backend can acknowledge a commit after the
 * "instant" of the kill, then SIGKILL all of it.
 */
export function killTree(postmaster: number): void {
  const kids = freezeTree(postmaster)
  for (const kid of kids) signal(kid, 'SIGKILL')
  signal(postmaster, 'SIGKILL')
}

/** Processes whose command line contains `text` (a Patroni lab's Patroni and etcd name its folders). */
export function processesMentioning(text: string): number[] {
  let entries: string[] = []
  try {
    entries = readdirSync('/proc')
  } catch {
    return []
  }
  return entries
    .filter(
      (name) => /^\d+$/.test(name) && Number(name) !== process.pid && cmdline(Number(name)).includes(text),
    )
    .map(Number)
}

/** The postmaster pid recorded in a data directory, if that process still runs postgres there. */
export function postmasterOf(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0])
    if (pid > 0 && alive(pid) && cmdline(pid).includes(dataDir)) return pid
  } catch {}
  return undefined
}
