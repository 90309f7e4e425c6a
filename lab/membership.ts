/**
 * Instances joining and leaving a running lab, as readers are added to and deleted from an Aurora
 * cluster: a new standby is a base backup of the writer (`pg_basebackup`, or a copy between
 * `pg_backup_start` and `pg_backup_stop` where the binaries have none), started streaming, given
 * its instance endpoint, and only then listed in the topology table (so a client that reads it can
 * reach it). A removed instance is shut down cleanly (its System V segment goes with it), leaves the
 * table and its endpoint closes.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Cluster, Member, Role } from './cluster.ts'
import type { Endpoints } from './endpoints.ts'
import type { Health } from './health.ts'
import { ADMIN_PASSWORD, ADMIN_USER, Instance } from './instance.ts'
import type { Lifecycle } from './lifecycle.ts'
import { runAs } from './pg-bin.ts'
import { freePort } from './ports.ts'
import { defaultStartup, Gate } from './proxy.ts'
import type { TopologyTable } from './topology-table.ts'
import type { LabNode } from './types.ts'

/** Instance ids run from 127.0.0.11 to 127.0.0.19: 127.0.0.20 is the reader endpoint. */
export const FIRST_OCTET = 11
const LAST_OCTET = 19

/** A member for instance `id` (not yet in the cluster), its gate and exit handling wired. */
export function newMember(
  c: Cluster,
  health: Health,
  id: string,
  pgPort: number,
  role: Role,
  ord: number,
): Member {
  const inst = new Instance(c.bin, id, pgPort, c.options.dir)
  const gate = new Gate(
    id,
    () => (inst.running ? inst.pgPort : undefined),
    c.options.startup ?? defaultStartup,
  )
  const m: Member = {
    inst,
    gate,
    role,
    state: 'stopped',
    stale: false,
    lastRole: role === 'writer' ? 'writer' : 'reader',
    sessionId: randomUUID(),
    ord,
  }
  inst.onExit = (code, signal) => health.onExit(m, code, signal)
  return m
}

export class Membership {
  constructor(
    private readonly c: Cluster,
    private readonly health: Health,
    private readonly endpoints: Endpoints,
    private readonly table: TopologyTable,
    private readonly lifecycle: Lifecycle,
  ) {}

  /** Adds a streaming reader with the next free id; resolves once the topology table lists it. */
  async addReader(): Promise<LabNode> {
    const c = this.c
    const w = c.member('writer')
    if (w.state !== 'running')
      throw new Error(`the writer ${w.inst.id} is ${w.state}: no base backup to take`)
    const octet = Math.max(...[...c.members.keys()].map((id) => Number(id.split('.')[3]))) + 1
    if (octet > LAST_OCTET)
      throw new Error(
        `no room for another instance: ids run from 127.0.0.${FIRST_OCTET} to 127.0.0.${LAST_OCTET} ` +
          '(127.0.0.20 is the reader endpoint); remove one first',
      )
    const id = `127.0.0.${octet}`
    const started = performance.now()
    const ords = [...c.members.values()].map((m) => m.ord)
    const m = newMember(c, this.health, id, await freePort(), 'down', Math.max(...ords) + 1)
    let how = 'pg_basebackup'
    try {
      if (existsSync(join(c.bin.dir, 'pg_basebackup'))) await this.baseBackup(m, w)
      else {
        how = 'copy'
        await m.inst.copyFrom(w.inst)
      }
      m.inst.writeConfig(c.configFor(m))
      await this.lifecycle.startStandby(m, w)
      if (!(await this.lifecycle.streaming(m, w, 30_000)))
        throw new Error(
          `${id} does not stream from ${w.inst.id}; see ${m.inst.logFile}:\n${m.inst.logTail()}`,
        )
      await this.endpoints.listenInstance(m)
    } catch (error) {
      await m.inst.stop()
      await m.inst.closeAdmin()
      rmSync(m.inst.dataDir, { recursive: true, force: true })
      throw error
    }
    m.role = 'reader'
    m.state = 'running'
    c.members.set(id, m)
    c.refreshSync()
    c.events.emit('reader-added', id, { how, ms: Math.round(performance.now() - started) })
    this.endpoints.changed()
    await this.table.write()
    return c.nodeOf(m)
  }

  /** Removes a reader (or a down instance): shut down cleanly, out of the topology, endpoint closed, data deleted. */
  async remove(target: string): Promise<void> {
    const c = this.c
    const m = c.member(target)
    const id = m.inst.id
    if (c.writer === id || c.lost?.id === id || c.settling === id)
      throw new Error(`${id} is the writer (or about to be): switch over to another instance first`)
    c.members.delete(id)
    // Its exit is no reader going down: nothing left to tell the health checks.
    m.role = 'down'
    m.state = 'stopped'
    m.gate.closeAll()
    this.endpoints.closeInstance(m)
    if (m.inst.frozen) m.inst.thaw()
    await m.inst.stop()
    await m.inst.closeAdmin()
    c.refreshSync()
    c.events.emit('reader-removed', id)
    this.endpoints.changed()
    await this.table.write()
    rmSync(m.inst.dataDir, { recursive: true, force: true })
  }

  /** `pg_basebackup` of the running writer into the new instance's (absent) data directory. */
  private async baseBackup(m: Member, w: Member): Promise<void> {
    rmSync(m.inst.dataDir, { recursive: true, force: true })
    await runAs(
      this.c.bin,
      'pg_basebackup',
      [
        '-D',
        m.inst.dataDir,
        '-d',
        `host=127.0.0.1 port=${w.inst.pgPort} user=${ADMIN_USER} password=${ADMIN_PASSWORD}`,
        '-X',
        'stream',
        '-c',
        'fast',
        '--no-sync',
      ],
      120_000,
    )
  }
}
