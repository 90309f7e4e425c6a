/**
 * The emulation tables: the control plane's view of the cluster, written on the writer into
 * `lab_internal.instances`, from which the emulated Aurora and RDS Multi-AZ topology functions
 * (`lab/emulation.ts`) answer on every instance once it replicates.
 *
 * @module
 */
import type { Cluster } from './cluster.ts'
import { within } from './instance.ts'

export class TopologyTable {
  private chain: Promise<unknown> = Promise.resolve()
  /** A write failed or found no writer: the next probe tick writes again. */
  dirty = false

  constructor(private readonly c: Cluster) {}

  /** Writes the topology table on the writer; `synchronous` waits for a standby like any write. */
  write(synchronous = false): Promise<void> {
    const c = this.c
    const run = async () => {
      const w = c.writer ? c.members.get(c.writer) : undefined
      if (w?.state !== 'running') {
        this.dirty = true
        return
      }
      const rows = [...c.members.values()].map((m) => ({
        server_id: m.inst.id,
        session_id: m.sessionId,
        role: m.role,
        down_since: m.role === 'down' ? (m.downSince ?? new Date()) : null,
        lag_ms: 0,
        cpu: 1 + m.ord,
        port: c.port,
        ord: m.ord,
      }))
      this.dirty = false
      try {
        await within(
          synchronous ? 30_000 : 5_000,
          w.inst.admin.begin(async (tx) => {
            if (!synchronous) await tx`SET LOCAL synchronous_commit = local`
            await tx`
              INSERT INTO lab_internal.instances ${tx(rows)}
              ON CONFLICT (server_id) DO UPDATE SET session_id = excluded.session_id, role = excluded.role,
                down_since = excluded.down_since, lag_ms = excluded.lag_ms, cpu = excluded.cpu,
                port = excluded.port, ord = excluded.ord`
            // An instance removed from the lab leaves the topology, as a deleted Aurora reader does.
            await tx`DELETE FROM lab_internal.instances WHERE server_id <> ALL(${rows.map((r) => r.server_id)}::text[])`
          }),
          'topology write',
        )
      } catch (e) {
        this.dirty = true
        if (synchronous) throw e
        c.log(`topology write failed: ${(e as Error).message}`)
      }
    }
    const p = this.chain.then(run, run)
    this.chain = p.catch(() => {})
    return p
  }
}
