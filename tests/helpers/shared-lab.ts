/**
 * `startLab` for test files that can take a lab another test file has finished with. Under the
 * suite's runner (which sets PGHA_TEST_LAB_POOL to a folder of its own run), a lab whose user is
 * done is parked there instead of taken down, if it is a working cluster as at bring-up
 * (lab/pool.ts: same shape — nodes, dialect, async — the timings being set anew for each user,
 * everything running, streaming and unfaulted, one writer, not necessarily the first instance, no
 * session left, the catalogs as at bring-up once what tests made in `public` is dropped), and the
 * next file asking for the same shape adopts it, after the same checks again, instead of starting
 * one: a lab start and stop cost ~0.65 s of CPU. Instances the user killed, stopped, froze or
 * faulted are brought back first (`restore`). Take the writer from `lab.status()`, never assume
 * one. Anywhere else, or when no parked lab fits, a fresh lab starts as with `startLab`.
 */
import { createHash } from 'node:crypto'
import {
  appendFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { basename, join } from 'node:path'
import { forceDown } from '../../lab/client.ts'
import { within } from '../../lab/instance.ts'
import { adoptLab, daemonConfig, type Lab, type LabOptions, parkLab, startLab } from '../../lab/mod.ts'
import { alive } from '../../lab/procs.ts'

/** The folder of parked labs with these options (one per shape), or undefined: no sharing. */
function shelfOf(options: LabOptions): string | undefined {
  const pool = process.env.PGHA_TEST_LAB_POOL
  if (!pool) return undefined
  if (options.dir !== undefined || options.port !== undefined || options.proxyStartupModule) return undefined
  // The timings are not part of the shape: an adopted lab takes its new user's (lab/control.ts).
  const {
    dir: _dir,
    ownerPid: _owner,
    removeDir: _remove,
    promoteAfterMs: _promote,
    endpointLagMs: _lag,
    probeTimeoutMs: _probe,
    ...shape
  } = daemonConfig(options)
  return join(pool, createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 16))
}

/** One line per lab start, adoption and parking, for the runner's summary (`<what> <lab folder>`). */
function note(what: 'started' | 'adopted' | 'parked', dir: string): void {
  try {
    appendFileSync(join(process.env.PGHA_TEST_LAB_POOL!, 'history'), `${what} ${dir}\n`)
  } catch {}
}

/** A parked lab's entry: written whole (renamed into place), taken by renaming it away. */
interface Entry {
  dir: string
  /** The process that parked it: the lab is not taken while that process still runs. */
  parker: number
}

async function takeParked(shelf: string, options: LabOptions): Promise<Lab | undefined> {
  let names: string[] = []
  try {
    names = readdirSync(shelf).filter((n) => n.endsWith('.json'))
  } catch {
    return undefined
  }
  for (const name of names) {
    let entry: Entry
    try {
      entry = JSON.parse(readFileSync(join(shelf, name), 'utf8'))
    } catch {
      continue
    }
    if (alive(entry.parker)) continue
    const mine = join(shelf, `${name}.${process.pid}.taken`)
    try {
      renameSync(join(shelf, name), mine)
    } catch {
      continue
    }
    rmSync(mine, { force: true })
    try {
      const lab = await adoptLab(entry.dir, options)
      note('adopted', lab.dir)
      return lab
    } catch {
      await forceDown(entry.dir)
      rmSync(entry.dir, { recursive: true, force: true })
    }
  }
  return undefined
}

/** How long bringing a lab back to full strength for its next user may take before it goes down. */
const RESTORE_MS = 15_000

/**
 * Brings back the instances the last user took out (killed, stopped, frozen, behind a fault), so
 * that the lab can be handed on rather than taken down: a rejoin costs ~0.25 s of CPU, a new lab
 * for the next file ~0.75 s (start and down), and about half the labs of a run ended with a
 * killed writer. The lab's own operations, as a test would run them; `parkLab` then checks the
 * result as for any lab. False when it could not (then the lab goes down).
 */
async function restore(lab: Lab): Promise<boolean> {
  const status = await lab.status()
  const whole = (nodes: typeof status.nodes) =>
    nodes.every((n) => n.state === 'running' && n.fault === 'none')
  // A Patroni cluster is Patroni's to mend (its own park checks it as it is); a lab with a reader
  // added or removed is no longer of its shape.
  if (status.manager !== 'lab' || whole(status.nodes)) return true
  if (status.nodes.length !== status.options.nodes) return false
  const work = (async () => {
    if (status.nodes.some((n) => n.state === 'frozen' || n.fault !== 'none')) await lab.heal()
    for (const n of (await lab.status()).nodes)
      if (n.state === 'killed' || n.state === 'stopped') await lab.start(n.id)
    await lab.waitForWriter({ timeoutMs: 10_000 })
    return whole((await lab.status()).nodes)
  })()
  // Past the bound (or failed), the lab goes down; a later failure of `work` is handled by the race.
  return await within(RESTORE_MS, work, 'restoring the lab').catch(() => false)
}

/** `lab` whose `down()` parks it on `shelf` when it qualifies, and takes it down otherwise. */
function parkOnDown(lab: Lab, shelf: string): Lab {
  let downed: Promise<void> | undefined
  const down = () => {
    downed ??= (async () => {
      let parked = false
      try {
        parked = (await restore(lab)) && (await parkLab(lab))
      } catch {}
      if (!parked) return lab.down()
      const entry = join(shelf, `${basename(lab.dir)}.json`)
      const body: Entry = { dir: lab.dir, parker: process.pid }
      writeFileSync(`${entry}.tmp`, JSON.stringify(body))
      renameSync(`${entry}.tmp`, entry)
      note('parked', lab.dir)
    })()
    return downed
  }
  return new Proxy(lab, {
    get(target, prop) {
      if (prop === 'down' || prop === Symbol.asyncDispose) return down
      const value = Reflect.get(target, prop, target)
      if (typeof value !== 'function') return value
      // After down() the lab may be another file's: no operation reaches it from here.
      return (...args: unknown[]) =>
        downed ? Promise.reject(new Error('the lab is down')) : value.apply(target, args)
    },
  })
}

/**
 * Starts a lab (as `startLab`), or adopts one with the same options that another test file of this
 * run has parked. `down()` parks it for the next one when it qualifies.
 */
export async function sharedLab(options: LabOptions = {}): Promise<Lab> {
  const shelf = shelfOf(options)
  if (!shelf) return startLab(options)
  mkdirSync(shelf, { recursive: true })
  let lab = await takeParked(shelf, options)
  if (!lab) {
    lab = await startLab(options)
    note('started', lab.dir)
  }
  return parkOnDown(lab, shelf)
}
