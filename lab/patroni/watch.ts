/**
 * The Patroni lab's eyes: each member's PostgreSQL asked directly, every 20 ms while a change is
 * expected and every 250 ms otherwise, whether it is in recovery. A member that leaves recovery is
 * `promoted`; once a commit that needs a synchronous standby succeeds on it, `writer-ready` — the
 * moment the cluster accepts writes again, from which benchmarks measure the driver's downtime.
 *
 * @module
 */
import postgres from 'postgres'
import type { EventLog } from '../events.ts'
import { ADMIN_PASSWORD, ADMIN_USER, DATABASE, type Sql, within } from '../instance.ts'
import type { MemberLayout } from './config.ts'

/** What the watcher last saw of a member. */
export type Seen = 'writer' | 'reader' | 'down'

function memberSql(m: MemberLayout): Sql {
  return postgres({
    host: m.id,
    port: m.pgPort,
    user: ADMIN_USER,
    password: ADMIN_PASSWORD,
    database: DATABASE,
    max: 1,
    idle_timeout: 0,
    connect_timeout: 1,
    max_lifetime: null,
    onnotice: () => {},
    connection: { application_name: 'pgha-lab-control' },
  })
}

export class Watcher {
  /** The member that last proved writable with a synchronous commit. */
  writer: string | null = null
  readonly seen = new Map<string, Seen>()
  private sql = new Map<string, Sql>()
  /** Reasons to poll fast, each until its change came or its deadline passed. */
  private fast = new Set<{ until: number }>()
  /** Released by the next `writer-ready`. */
  private untilWriter: (() => void)[] = []
  private timer?: ReturnType<typeof setTimeout>
  private closed = false
  private readying?: string

  constructor(
    private readonly members: readonly MemberLayout[],
    private readonly events: EventLog,
    private readonly log: (m: string) => void,
  ) {
    for (const m of members) this.seen.set(m.id, 'down')
  }

  /** A direct connection to a member, for the control plane's own statements. */
  admin(id: string): Sql {
    let sql = this.sql.get(id)
    if (!sql) {
      sql = memberSql(this.members.find((m) => m.id === id)!)
      this.sql.set(id, sql)
    }
    return sql
  }

  /**
   * Polls fast (a fault was injected) until the returned release is called, at most `ms`: 150
   * statements a second on a 3-member cluster, which for the whole minute it used to last, long
   * after the change it waited for, cost several seconds of CPU per fault.
   */
  expectChange(ms = 60_000): () => void {
    const expectation = { until: Date.now() + ms }
    this.fast.add(expectation)
    return () => this.fast.delete(expectation)
  }

  /** Polls fast until the next `writer-ready` (the writer was killed or stopped), at most `ms`. */
  expectWriter(ms = 60_000): void {
    this.untilWriter.push(this.expectChange(ms))
  }

  private polling(): 'fast' | 'calm' {
    const now = Date.now()
    for (const e of this.fast) if (now >= e.until) this.fast.delete(e)
    return this.fast.size > 0 ? 'fast' : 'calm'
  }

  start(): void {
    const tick = async () => {
      if (this.closed) return
      await this.poll().catch((e) => this.log(`watch: ${(e as Error).message}`))
      if (this.closed) return
      this.timer = setTimeout(tick, this.polling() === 'fast' ? 20 : 250)
    }
    void tick()
  }

  /** One look at every member. */
  async poll(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        let next: Seen = 'down'
        try {
          const [row] = await within(1000, this.admin(m.id)`SELECT pg_is_in_recovery() AS r`)
          next = row!.r ? 'reader' : 'writer'
        } catch {
          // A connection that failed is not reused: the server may be back on the next tick.
          void this.sql
            .get(m.id)
            ?.end({ timeout: 0 })
            .catch(() => {})
          this.sql.delete(m.id)
        }
        this.observe(m.id, next)
      }),
    )
  }

  /** The watcher was told a member is gone (killed or stopped by the lab). */
  lost(id: string, reason: string): void {
    this.seen.set(id, 'down')
    if (this.writer === id) {
      this.writer = null
      this.events.emit('writer-lost', id, { reason })
    }
  }

  private observe(id: string, next: Seen): void {
    const before = this.seen.get(id)
    this.seen.set(id, next)
    if (next === before) {
      if (next === 'writer' && this.writer !== id) void this.confirmWriter(id)
      return
    }
    if (before === 'writer' && this.writer === id) {
      this.writer = null
      this.events.emit('writer-lost', id, { reason: next === 'down' ? 'unreachable' : 'demoted' })
    }
    if (next === 'writer') {
      this.events.emit('promoted', id, { from: this.lastWriter ?? null })
      void this.confirmWriter(id)
    }
    if (next === 'reader' && (before === 'down' || before === 'writer') && this.started)
      this.events.emit('reader-rejoined', id, {})
  }

  /** Set once bring-up is done: members coming up then are not "rejoining". */
  started = false
  private lastWriter: string | null = null

  /**
   * A commit that waits for the synchronous standby: writes work again. It must write WAL — a
   * transaction that only takes an xid (`txid_current()`) commits without waiting for a standby,
   * and would mark the leader ready before any real write can commit.
   */
  private async confirmWriter(id: string): Promise<void> {
    if (this.readying === id) return
    this.readying = id
    try {
      await within(5000, this.admin(id)`SELECT pg_catalog.pg_logical_emit_message(true, 'pgha-lab', 'ready')`)
      if (this.seen.get(id) !== 'writer' || this.writer === id) return
      const from = this.lastWriter
      this.writer = id
      this.lastWriter = id
      this.events.emit('writer-ready', id, { from })
      for (const release of this.untilWriter.splice(0)) release()
    } catch {
    } finally {
      this.readying = undefined
    }
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    await Promise.all([...this.sql.values()].map((s) => s.end({ timeout: 0 }).catch(() => {})))
    this.sql.clear()
  }
}
