/**
 * The lab's background process (always Node): runs the control plane and the fault proxies and
 * serves a small HTTP/JSON API on 127.0.0.1 for `startLab()` and the CLI, whatever runtime they
 * use. Started as `node --import tsx lab/daemon.ts '<json config>'`; writes `lab.json` (pid,
 * control port, processes) in the lab folder when ready, or `lab.error` when it fails.
 *
 * @module
 */
import { appendFileSync, mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Control, type ControlOptions } from './control.ts'
import type { ControlPlane } from './control-plane.ts'
import { PatroniControl } from './patroni/control.ts'
import type { StartupHandler } from './proxy.ts'

/** What `startLab` / the CLI pass to the daemon. */
export interface DaemonConfig extends Omit<ControlOptions, 'startup'> {
  ownerPid?: number
  removeDir: boolean
  proxyStartupModule?: string
}

/** The content of `<dir>/lab.json`. */
export interface LabFile {
  pid: number
  ready: boolean
  controlPort: number
  port?: number
  ownerPid?: number
  removeDir: boolean
  processes: { id: string; pgPort: number; dataDir: string }[]
}

const config = JSON.parse(process.argv[2] ?? '{}') as DaemonConfig
mkdirSync(join(config.dir, 'logs'), { recursive: true })
const logFile = join(config.dir, 'logs', 'daemon.log')
const log = (m: string) => {
  try {
    appendFileSync(logFile, `${new Date().toISOString()} ${m}\n`)
  } catch {}
}
process.on('uncaughtException', (e) => log(`uncaught: ${e?.stack ?? e}`))
process.on('unhandledRejection', (e: any) => log(`unhandled rejection: ${e?.stack ?? e}`))

function writeLabFile(file: LabFile): void {
  const path = join(config.dir, 'lab.json')
  writeFileSync(`${path}.tmp`, JSON.stringify(file, null, 2))
  renameSync(`${path}.tmp`, path)
}

let startup: StartupHandler | undefined
if (config.proxyStartupModule) {
  const mod = await import(pathToFileURL(config.proxyStartupModule).href)
  startup = mod.startupHandler ?? mod.default
  if (typeof startup !== 'function') {
    throw new Error(`${config.proxyStartupModule} exports no startupHandler function`)
  }
}
const control: ControlPlane =
  config.manager === 'patroni' ? new PatroniControl(config, log) : new Control({ ...config, startup }, log)
let shuttingDown: Promise<void> | undefined
/** The process the lab belongs to: startLab's, then that of whoever adopted it (lab/pool.ts). */
let owner = config.ownerPid
/** How long a parked lab waits for its next user before it goes down by itself. */
const PARKED_MS = 60_000
/** Set while parked: the timer that takes the lab down if nobody adopts it. */
let idle: ReturnType<typeof setTimeout> | undefined

function shutdown(reason: string): Promise<void> {
  shuttingDown ??= (async () => {
    log(`down (${reason})`)
    try {
      await control.down(config.removeDir)
    } catch (e) {
      log(`down failed: ${(e as Error).stack}`)
    }
  })()
  return shuttingDown
}

async function dispatch(op: string, args: any[]): Promise<unknown> {
  const x = <T>(fn: () => Promise<T>) => control.exclusive(fn)
  switch (op) {
    case 'ping':
      return 'pong'
    case 'status':
      return control.status()
    case 'events':
      return control.events.events
    case 'waitForEvent':
      return control.events.wait({ type: String(args[0]), ...(args[1] ?? {}) })
    case 'waitForWriter':
      return control.waitForWriter(args[0]?.timeoutMs ?? 30_000)
    case 'kill':
      return x(() => control.kill(String(args[0])))
    case 'freeze':
      return x(() => control.freeze(String(args[0])))
    case 'stop':
      return x(() => control.stop(String(args[0])))
    case 'start':
      return x(() => control.start(String(args[0])))
    case 'switchover':
      return x(() => control.switchover(args[0] ? String(args[0]) : undefined))
    case 'blackhole':
      return x(() => control.blackhole(String(args[0])))
    case 'latency':
      return x(() => control.latency(String(args[0]), Number(args[1])))
    case 'heal':
      return x(() => control.heal(args[0] ? String(args[0]) : undefined))
    case 'addReader':
      return x(() => control.addReader())
    case 'remove':
      return x(() => control.remove(String(args[0])))
    case 'down':
      return shutdown('requested')
    case 'park':
      return x(async () => {
        if (!control.park || !(await control.park())) return false
        // Nobody owns it now: it goes down by itself unless adopted soon.
        owner = undefined
        clearTimeout(idle)
        idle = setTimeout(
          () => void shutdown('parked and not adopted').then(() => process.exit(0)),
          PARKED_MS,
        )
        return true
      })
    case 'adopt':
      return x(async () => {
        if (!control.adopt || !control.park || !idle || shuttingDown)
          throw new Error('this lab is not parked')
        clearTimeout(idle)
        idle = undefined
        // The checks again: its last user's process may have touched it after parking it.
        if (!(await control.park())) {
          void shutdown('no longer as a fresh lab when adopted').then(() => process.exit(0))
          throw new Error('the parked lab is no longer as a fresh one')
        }
        owner = Number(args[0])
        await control.adopt(args[1] ?? {})
        return control.status()
      })
    default:
      throw new Error(`unknown operation "${op}"`)
  }
}

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = ''
    req.on('data', (d) => (data += d))
    req.on('end', () => resolve(data))
    req.on('error', reject)
  })
}

const http = createServer(async (req: IncomingMessage, res: ServerResponse) => {
  let status = 200
  let payload: unknown
  let op = '?'
  try {
    const request = JSON.parse((await body(req)) || '{}')
    op = String(request.op)
    payload = { ok: true, result: (await dispatch(op, request.args ?? [])) ?? null }
  } catch (e) {
    status = 400
    payload = { ok: false, error: (e as Error).message }
    log(`${op} failed: ${(e as Error).stack}`)
  }
  res.writeHead(status, { 'content-type': 'application/json', connection: 'close' })
  res.end(JSON.stringify(payload))
  if (op === 'down' && shuttingDown) res.on('finish', () => setTimeout(() => process.exit(0), 10))
})
http.keepAliveTimeout = 0
await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
const controlPort = (http.address() as { port: number }).port
const labFile = (ready: boolean): LabFile => ({
  pid: process.pid,
  ready,
  controlPort,
  port: control.status().port || undefined,
  ownerPid: config.ownerPid,
  removeDir: config.removeDir,
  processes: control.processes(),
})

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.on(sig, () => void shutdown(sig).then(() => process.exit(0)))
}
if (config.ownerPid) {
  // startLab's process died without down(): clean up after it.
  setInterval(() => {
    if (owner === undefined) return
    try {
      process.kill(owner, 0)
    } catch {
      void shutdown(`owner ${owner} gone`).then(() => process.exit(0))
    }
  }, 500)
}

writeLabFile(labFile(false))
try {
  await control.up()
  writeLabFile(labFile(true))
  log(`up in ${Math.round(control.upMs)} ms on port ${control.status().port}`)
} catch (e) {
  log(`up failed: ${(e as Error).stack}`)
  shuttingDown = control.down(false).catch(() => {})
  await shuttingDown
  writeFileSync(join(config.dir, 'lab.error'), (e as Error).message)
  process.exit(1)
}
