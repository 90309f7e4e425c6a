/**
 * Promotion: which reader replaces a lost writer (only one that has every acknowledged commit,
 * the most advanced of them), fencing a lost writer that still runs, re-pointing the other readers
 * and promoting the chosen one.
 *
 * @module
 */

import { nowMs } from './clock.ts'
import type { Cluster, Member } from './cluster.ts'
import type { Endpoints } from './endpoints.ts'
import type { Health } from './health.ts'
import { sleep, within } from './instance.ts'
import type { TopologyTable } from './topology-table.ts'

export class Promotion {
  constructor(
    private readonly c: Cluster,
    private readonly health: Health,
    private readonly endpoints: Endpoints,
    private readonly table: TopologyTable,
  ) {}

  /**
   * The most advanced running standby (received WAL), preferring reachable endpoints, among the
   * readers `eligible` accepts.
   */
  async bestReader(
    eligible: (m: Member) => boolean = () => true,
  ): Promise<{ m: Member; lsn: string } | undefined> {
    const candidates = this.c.readers((r) => r.state === 'running' && !r.stale && eligible(r))
    const scored = await Promise.all(
      candidates.map(async (m) => {
        try {
          const [row] = await within(
            1000,
            m.inst
              .admin`SELECT coalesce(greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0') - '0/0' AS pos,
              greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text AS lsn,
              pg_is_in_recovery() AS standby`,
          )
          // Never "promote" a server that is not a standby: it would be a second primary.
          if (!row!.standby) return undefined
          return { m, pos: BigInt(row!.pos), lsn: String(row!.lsn) }
        } catch {
          return undefined
        }
      }),
    )
    const ok = scored.filter((s) => s !== undefined)
    ok.sort(
      (a, b) =>
        Number(b.m.gate.fault === 'none') - Number(a.m.gate.fault === 'none') ||
        (b.pos > a.pos ? 1 : b.pos < a.pos ? -1 : 0) ||
        a.m.ord - b.m.ord,
    )
    return ok[0]
  }

  /** Replaces the lost writer, if one of the readers that may is running. */
  async failover(): Promise<void> {
    const c = this.c
    if (c.writer || !c.lost || c.closed) return
    const lost = c.members.get(c.lost.id)!
    // A writer that still runs (black-holed, not frozen) could still acknowledge commits: fence it
    // before reading the readers' positions, so the chosen one has every acknowledged commit.
    if (lost.inst.running && !lost.inst.frozen) {
      lost.state = 'killed'
      await lost.inst.kill()
      c.events.emit('fenced', lost.inst.id, { reason: 'stale writer still running' })
    }
    // A reader that was down at the loss may lack commits the writer acknowledged without it; one
    // of the sync set that is down now may hold the only copy of the last acknowledged commit.
    const candidates = c.lost.candidates
    const down = [...candidates].filter((id) => c.members.get(id)!.state !== 'running')
    const best =
      down.length && !c.options.async ? undefined : await this.bestReader((r) => candidates.has(r.inst.id))
    if (!best) {
      c.events.emit('failover-failed', lost.inst.id, {
        reason: down.length
          ? `waiting for ${down.join(', ')}: may hold the last acknowledged commits`
          : 'no running reader to promote',
        candidates: [...candidates],
      })
      return
    }
    c.lost = null
    lost.stale = true
    await this.promote(best.m, lost.inst.id, best.lsn)
  }

  /** Re-points the other readers at `m`, promotes it, then waits for its first write. */
  async promote(m: Member, from: string | null, lsn: string): Promise<void> {
    const c = this.c
    const others = c.readers((r) => r !== m)
    // Whoever is down now misses the fork of the new timeline, and may hold WAL beyond it.
    for (const o of c.members.values()) if (o !== m && !o.inst.running) o.stale = true
    this.health.setWriter(m)
    await this.health.settle(m, async () => {
      for (const r of others) {
        if (!r.inst.running) continue
        // Cascading from the candidate first: they follow its promotion without reconnecting.
        r.inst.writeConfig(c.configFor(r))
        r.inst.reload()
      }
      m.inst.writeConfig(c.configFor(m), true)
      m.inst.reload()
      const promoteStart = nowMs()
      await m.inst.admin`SELECT pg_promote(false)`
      const deadline = Date.now() + 30_000
      for (;;) {
        const [row] = await m.inst.admin`SELECT pg_is_in_recovery() AS r`
        if (!row!.r) break
        if (Date.now() > deadline) throw new Error(`${m.inst.id} did not leave recovery in 30 s`)
        await sleep(5)
      }
      c.events.emit('promoted', m.inst.id, { from, lsn, ms: Math.round(nowMs() - promoteStart) })
    })
    await this.table.write(true)
    if (c.writer !== m.inst.id) throw new Error(`${m.inst.id} was lost right after its promotion`)
    c.events.emit('writer-ready', m.inst.id, { from })
    this.endpoints.changed()
  }
}
