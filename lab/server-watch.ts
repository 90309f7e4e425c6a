/**
 * A throwaway PostgreSQL server (a test's single server, an authentication test's scratch server)
 * outlives no process that started it: a test process the runner kills (a file timeout, a
 * silence) runs no exit hook, and its servers used to run on for good, each holding memory, a
 * port and — their folders being in RAM (lab/scratch.ts) — tens of MB until a reboot.
 *
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'

/** What to stop and remove once the owner is gone. */
export interface WatchedServer {
  /** The server binaries' folder (holds `pg_ctl`). */
  bin: string
  /** The server's data directory. */
  data: string
  /** The folder removed after the stop (it holds `data`). */
  dir: string
  /** The OS user the server runs as, when this process is root. */
  asUser?: string
}

/**
 * Stops the server and removes its folder once this process is gone, however it ended. `tail
 * --pid` waits for the process without a fork per check; the stop runs as the servers' user.
 * End it with `endWatch` when the server is stopped normally.
 */
export function stopWhenGone(server: WatchedServer): ChildProcess {
  const stop = `${server.asUser ? `runuser -u ${server.asUser} -- ` : ''}"$4/pg_ctl" -D "$2" -m immediate stop`
  const script = `tail --pid="$1" -f /dev/null 2>/dev/null; [ -d "$2" ] || exit 0; ${stop} >/dev/null 2>&1; rm -rf "$3"`
  const watch = spawn('sh', ['-c', script, 'sh', String(process.pid), server.data, server.dir, server.bin], {
    detached: true,
    stdio: 'ignore',
  })
  watch.on('error', () => {})
  watch.unref()
  return watch
}

/** Ends a watch and its `tail` (its process group: killing the shell alone leaves the tail). */
export function endWatch(watch: ChildProcess | undefined): void {
  if (!watch?.pid) return
  try {
    process.kill(-watch.pid, 'SIGKILL')
  } catch {
    watch.kill('SIGKILL')
  }
}
