/**
 * Fault injection: kill, freeze, stop an instance; black-hole or delay its endpoint; heal. Each
 * is logged as an event, and a fault on the writer starts the same loss handling as a real one.
 *
 * @module
 */
import type { Cluster } from './cluster.ts'
import type { Health } from './health.ts'
import type { Promotion } from './promotion.ts'

export class Faults {
  constructor(
    private readonly c: Cluster,
    private readonly health: Health,
    private readonly promotion: Promotion,
  ) {}

  async kill(target: string): Promise<void> {
    const c = this.c
    const m = c.member(target)
    c.events.emit('fault', m.inst.id, { fault: 'kill' })
    const wasWriter = c.writer === m.inst.id
    m.state = 'killed'
    await m.inst.kill()
    if (wasWriter) this.health.writerLost(m, 'killed')
    else this.health.readerDown(m)
  }

  async freeze(target: string): Promise<void> {
    const c = this.c
    const m = c.member(target)
    if (m.state !== 'running') throw new Error(`${m.inst.id} is ${m.state}, not running`)
    m.inst.freeze()
    m.state = 'frozen'
    c.events.emit('fault', m.inst.id, { fault: 'freeze' })
    if (m.role === 'reader') c.refreshSync()
  }

  async stop(target: string): Promise<void> {
    const c = this.c
    const m = c.member(target)
    c.events.emit('fault', m.inst.id, { fault: 'stop' })
    const wasWriter = c.writer === m.inst.id
    m.state = 'stopped'
    if (wasWriter) this.health.writerLost(m, 'stopped')
    else this.health.readerDown(m)
    await m.inst.stop()
  }

  async blackhole(target: string): Promise<void> {
    const m = this.c.member(target)
    m.gate.blackhole()
    this.c.events.emit('fault', m.inst.id, { fault: 'blackhole' })
  }

  async latency(target: string, ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new Error(`latency must be a number of ms >= 0, got ${ms}`)
    const m = this.c.member(target)
    m.gate.latency(ms)
    this.c.events.emit('fault', m.inst.id, { fault: 'latency', ms })
  }

  async heal(target?: string): Promise<void> {
    const c = this.c
    const list = target ? [c.member(target)] : [...c.members.values()]
    for (const m of list) {
      const wasFault = m.gate.fault
      if (m.state === 'frozen') {
        if (c.writer !== m.inst.id && m.lastRole === 'writer' && c.lost?.id !== m.inst.id) {
          // A replaced writer must never run again as a primary: fence it instead of resuming.
          m.state = 'killed'
          await m.inst.kill()
          m.stale = true
          c.events.emit('fenced', m.inst.id, { reason: 'replaced while frozen' })
        } else {
          m.inst.thaw()
          m.state = 'running'
          if (m.role === 'reader') c.refreshSync()
          c.events.emit('heal', m.inst.id, { fault: 'freeze' })
          // A failover that waited for this reader.
          if (m.role === 'reader' && c.lost && !c.lost.timer) await this.promotion.failover()
        }
      }
      if (wasFault !== 'none') {
        m.gate.heal()
        c.events.emit('heal', m.inst.id, { fault: wasFault })
      }
    }
  }
}
