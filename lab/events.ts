/**
 * The control plane's event log: in memory for queries and waiters, appended to `events.jsonl`
 * in the lab folder for post-mortems.
 *
 * @module
 */
import { appendFileSync } from 'node:fs'
import { atOrAfter, nowMs } from './clock.ts'
import type { LabEvent } from './types.ts'

/** Filter of `waitForEvent`. */
export interface EventQuery {
  type: string
  /**
   * Only events at or after this time of {@link nowMs} (default: any), compared by
   * {@link atOrAfter}, which allows for the clocks' slack between processes: an event caused after
   * a reading taken in another process is never missed.
   */
  afterMs?: number
  node?: string
  timeoutMs?: number
}

function matches(e: LabEvent, q: EventQuery): boolean {
  return (
    e.type === q.type &&
    (q.afterMs === undefined || atOrAfter(e.atMs, q.afterMs)) &&
    (q.node === undefined || e.node === q.node)
  )
}

export class EventLog {
  readonly events: LabEvent[] = []
  private waiters = new Set<(e: LabEvent) => void>()

  constructor(
    private readonly file?: string,
    private readonly log: (m: string) => void = () => {},
  ) {}

  emit(type: LabEvent['type'], node?: string, detail?: Record<string, unknown>): LabEvent {
    const event: LabEvent = { type, atMs: nowMs(), ...(node ? { node } : {}), ...(detail ? { detail } : {}) }
    this.events.push(event)
    this.log(`event ${type}${node ? ` ${node}` : ''}${detail ? ` ${JSON.stringify(detail)}` : ''}`)
    if (this.file) {
      try {
        appendFileSync(this.file, `${JSON.stringify(event)}\n`)
      } catch {}
    }
    for (const w of [...this.waiters]) w(event)
    return event
  }

  /** Forgets every event (a lab handed to its next user, lab/pool.ts): it sees only its own. */
  reset(): void {
    this.events.length = 0
    if (this.file) {
      try {
        appendFileSync(this.file, `${JSON.stringify({ type: 'log-reset', atMs: nowMs() })}\n`)
      } catch {}
    }
  }

  /** The first matching event, waiting for it up to `timeoutMs` (default 30000). */
  wait(q: EventQuery): Promise<LabEvent> {
    const found = this.events.find((e) => matches(e, q))
    if (found) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const waiter = (e: LabEvent) => {
        if (!matches(e, q)) return
        clearTimeout(timer)
        this.waiters.delete(waiter)
        resolve(e)
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        const recent = this.events
          .slice(-8)
          .map((e) => `${e.type}${e.node ? `(${e.node})` : ''}`)
          .join(', ')
        reject(new Error(`no "${q.type}" event within ${q.timeoutMs ?? 30_000} ms; recent events: ${recent}`))
      }, q.timeoutMs ?? 30_000)
      this.waiters.add(waiter)
    })
  }
}
