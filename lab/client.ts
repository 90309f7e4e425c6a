/**
 * Talking to a lab's daemon from any runtime (Node, Deno, Bun): spawning it, calling its
 * HTTP/JSON API with `fetch`, and the crash-safe `down` that works from pid files alone.
 *
 * @module
 */
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { DaemonConfig, LabFile } from './daemon.ts'
import { daemonLaunch } from './daemon-bundle.ts'
import { removeTree, repoRoot } from './pg-bin.ts'
import { alive, killTree, postmasterOf, processesMentioning } from './procs.ts'
import { releaseSegmentsOf, removeOrphanDsmFiles } from './shared-memory.ts'

export function readLabFile(dir: string): LabFile | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'lab.json'), 'utf8'))
  } catch {
    return undefined
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

function nodeBinary(): string {
  if (process.env.PGHA_LAB_NODE) return process.env.PGHA_LAB_NODE
  const g = globalThis as any
  return g.Deno || g.Bun ? 'node' : process.execPath
}

/** Starts a daemon for `config` and waits until its cluster is up. */
export async function spawnDaemon(config: DaemonConfig, timeoutMs = 180_000): Promise<LabFile> {
  const existing = readLabFile(config.dir)
  if (existing && alive(existing.pid)) {
    throw new Error(`a lab already runs in ${config.dir} (daemon pid ${existing.pid}); run down first`)
  }
  rmSync(join(config.dir, 'lab.json'), { force: true })
  rmSync(join(config.dir, 'lab.error'), { force: true })
  const launch = daemonLaunch(config)
  const child = spawn(nodeBinary(), [...launch.args, JSON.stringify({ ...config, ...launch })], {
    cwd: repoRoot,
    detached: true,
    stdio: 'ignore',
  })
  let exit: string | undefined
  child.on('exit', (code, signal) => (exit = `exited with ${code ?? signal}`))
  child.on('error', (e) => (exit = `failed to start: ${e.message}`))
  child.unref()
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const errorFile = join(config.dir, 'lab.error')
    if (existsSync(errorFile)) {
      const message = readFileSync(errorFile, 'utf8')
      await forceDown(config.dir)
      throw new Error(`the lab failed to start: ${message}`)
    }
    const file = readLabFile(config.dir)
    if (file?.ready) return file
    if (exit) {
      const log = tail(join(config.dir, 'logs', 'daemon.log'))
      await forceDown(config.dir)
      throw new Error(`the lab daemon ${exit} before it was up${log ? `:\n${log}` : ''}`)
    }
    await sleep(25)
  }
  await forceDown(config.dir)
  throw new Error(`the lab was not up within ${timeoutMs} ms`)
}

function tail(path: string, lines = 20): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

/** Calls one operation of the daemon's API. */
export async function call(
  file: LabFile,
  op: string,
  args: unknown[] = [],
  timeoutMs = 120_000,
): Promise<any> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), timeoutMs)
  try {
    const res = await fetch(`http://127.0.0.1:${file.controlPort}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', connection: 'close' },
      body: JSON.stringify({ op, args }),
      signal: controller.signal,
    })
    const payload = (await res.json()) as { ok: boolean; result?: unknown; error?: string }
    if (!payload.ok) throw new Error(payload.error)
    return payload.result
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Stops the lab in `dir` from a process that is exiting and can no longer await (deno bench's
 * `unload`): SIGTERM to its daemon, which takes the lab down as `down` does (servers, System V
 * segments, folder), and a blocking wait, bounded, until the daemon is gone.
 */
export function downBeforeExit(dir: string, timeoutMs = 10_000): void {
  const file = readLabFile(dir)
  if (!file || !alive(file.pid)) return
  try {
    process.kill(file.pid, 'SIGTERM')
  } catch {
    return
  }
  const pause = new Int32Array(new SharedArrayBuffer(4))
  const deadline = Date.now() + timeoutMs
  while (alive(file.pid) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 20)
}

/**
 * Stops the lab in `dir` whatever state it is in: asks the daemon, and if it is dead or does not
 * answer, kills it and every postgres whose pid file is in the lab's data folder.
 */
export async function forceDown(dir: string): Promise<void> {
  const file = readLabFile(dir)
  const data = join(dir, 'data')
  let names: string[] = []
  try {
    names = readdirSync(data)
  } catch {}
  // Whoever stops them (the daemon, or the kills below), their segments are released at the end.
  const postmasters = names.map((name) => postmasterOf(join(data, name))).filter((pid) => pid !== undefined)
  if (file && alive(file.pid)) {
    try {
      if (file.controlPort) await call(file, 'down', [], 20_000)
    } catch {}
    for (let i = 0; i < 100 && alive(file.pid); i++) await sleep(20)
    if (alive(file.pid)) {
      try {
        process.kill(file.pid, 'SIGKILL')
      } catch {}
    }
  }
  // A Patroni lab: its Patroni and etcd processes first, or Patroni would restart PostgreSQL.
  for (const folder of ['patroni', 'etcd']) {
    // Reading every process's command line costs: only where there is such a folder.
    if (!existsSync(join(dir, folder))) continue
    for (const pid of processesMentioning(`${join(dir, folder)}/`)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
  }
  for (const name of names) {
    const pid = postmasterOf(join(data, name))
    if (pid) {
      killTree(pid)
      postmasters.push(pid)
    }
  }
  for (const name of names) {
    for (let i = 0; i < 100 && postmasterOf(join(data, name)); i++) await sleep(20)
  }
  const removeDir = file?.removeDir ?? false
  removeTree(removeDir ? dir : data)
  rmSync(join(dir, 'lab.json'), { force: true })
  await releaseSegmentsOf(postmasters)
  removeOrphanDsmFiles()
}
