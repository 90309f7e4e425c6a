/**
 * The endpoints: every instance's own address, the cluster endpoint and the reader endpoint, all
 * on one port, and the emulated DNS behind the last two, which follows a topology change only
 * `endpointLagMs` later (like Aurora's DNS TTL).
 *
 * @module
 */
import type { Server } from 'node:net'
import type { Cluster, Member } from './cluster.ts'
import { freePort } from './ports.ts'
import { type Gate, listen } from './proxy.ts'
import type { TopologyTable } from './topology-table.ts'

export const CLUSTER_HOST = '127.0.0.10'
export const READER_HOST = '127.0.0.20'

export class Endpoints {
  private servers: Server[] = []
  private dns = { cluster: null as string | null, readers: [] as string[] }
  private readerTurn = 0

  constructor(
    private readonly c: Cluster,
    private readonly table: TopologyTable,
  ) {}

  /** Binds every endpoint address on one port (a free one unless given). */
  async listenAll(): Promise<void> {
    const c = this.c
    const bind = async (port: number) => {
      const servers: Server[] = []
      try {
        for (const m of c.members.values()) {
          m.server = await listen(m.inst.id, port, () => m.gate)
          servers.push(m.server)
        }
        servers.push(await listen(CLUSTER_HOST, port, () => this.routeCluster()))
        servers.push(await listen(READER_HOST, port, () => this.routeReader()))
        return servers
      } catch (e) {
        for (const s of servers) s.close()
        throw e
      }
    }
    if (c.options.port) {
      this.servers = await bind(c.options.port)
      c.port = c.options.port
      return
    }
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = await freePort(CLUSTER_HOST)
      try {
        this.servers = await bind(port)
        c.port = port
        return
      } catch {}
    }
    throw new Error('found no port free on every lab address after 20 attempts; pass --port')
  }

  /** Binds the endpoint of an instance added to the running lab. */
  async listenInstance(m: Member): Promise<void> {
    m.server = await listen(m.inst.id, this.c.port, () => m.gate)
    this.servers.push(m.server)
  }

  /** Closes the endpoint of an instance removed from the lab. */
  closeInstance(m: Member): void {
    this.servers = this.servers.filter((s) => s !== m.server)
    m.server?.close()
    m.server = undefined
  }

  /** Points the DNS at the current topology right away (at bring-up). */
  resolveNow(): void {
    this.dns = this.desired()
    // A lab handed to its next user (lab/pool.ts) deals reader connections as a fresh one does.
    this.readerTurn = 0
  }

  private routeCluster(): Gate | undefined {
    return this.dns.cluster ? this.c.members.get(this.dns.cluster)?.gate : undefined
  }

  private routeReader(): Gate | undefined {
    const ids = this.dns.readers
    if (ids.length === 0) return undefined
    return this.c.members.get(ids[this.readerTurn++ % ids.length]!)?.gate
  }

  private desired() {
    const c = this.c
    const readers = c.readers((r) => r.state === 'running' || r.state === 'frozen').map((r) => r.inst.id)
    const cluster = c.writer ?? this.dns.cluster
    return { cluster, readers: readers.length ? readers : cluster ? [cluster] : [] }
  }

  /** Topology changed: the table now, the emulated DNS `endpointLagMs` later. */
  changed(): void {
    const c = this.c
    void this.table.write()
    const next = this.desired()
    const apply = () => {
      if (c.closed) return
      if (next.cluster !== this.dns.cluster) {
        c.events.emit('endpoint-moved', next.cluster ?? undefined, {
          endpoint: 'cluster',
          from: this.dns.cluster,
          to: next.cluster,
        })
      }
      if (next.readers.join() !== this.dns.readers.join()) {
        c.events.emit('endpoint-moved', undefined, {
          endpoint: 'reader',
          from: this.dns.readers,
          to: next.readers,
        })
      }
      this.dns = next
    }
    if (c.options.endpointLagMs <= 0) apply()
    else c.later(c.options.endpointLagMs, apply)
  }

  close(): void {
    for (const s of this.servers) s.close()
  }
}
