/**
 * libpq's `target_session_attrs=read-write` refuses a server whose `default_transaction_read_only`
 * is on, and `read-only` accepts it as well as a standby. This remembers, per host, what the server
 * says of that setting for this client's user and database (ALTER ROLE/DATABASE ... SET count),
 * asked once per host and again after each topology change.
 *
 * @module
 */
import type { ConnectionFactory } from './connection-factory.ts'
import { type HostAddress, hostKey } from './host.ts'

/** What a server's sessions start with. */
export const DEFAULT_READ_ONLY_QUERY =
  "select pg_catalog.current_setting('default_transaction_read_only') = 'on' as ro"

/**
 * Per-host `default_transaction_read_only`, asked on demand.
 *
 * @example
 * ```ts
 * const ro = new DefaultReadOnly(factory, 2000)
 * if (await ro.check(writer)) throw new NoWriterAvailableError(...)
 * ```
 */
export class DefaultReadOnly {
  readonly #factory: ConnectionFactory
  readonly #timeoutMs: number
  readonly #known = new Map<string, boolean>()
  readonly #pending = new Map<string, Promise<boolean>>()

  constructor(factory: ConnectionFactory, timeoutMs: number) {
    this.#factory = factory
    this.#timeoutMs = timeoutMs
  }

  /** What `host` said last, if it was asked. */
  known(host: HostAddress): boolean | undefined {
    return this.#known.get(hostKey(host))
  }

  /** Asks `host` (concurrent calls share one ask). */
  check(host: HostAddress): Promise<boolean> {
    const key = hostKey(host)
    let pending = this.#pending.get(key)
    if (!pending) {
      pending = (async () => {
        const conn = await this.#factory.connect({ host, purpose: 'probe', timeoutMs: this.#timeoutMs })
        try {
          const [row] = await conn.query<{ ro: boolean }>(DEFAULT_READ_ONLY_QUERY, [], {
            timeoutMs: this.#timeoutMs,
          })
          this.#known.set(key, row?.ro === true)
          return row?.ro === true
        } finally {
          conn.abort()
        }
      })().finally(() => this.#pending.delete(key))
      this.#pending.set(key, pending)
    }
    return pending
  }

  /** Forgets every answer (the topology changed; a setting may have too). */
  forget(): void {
    this.#known.clear()
  }
}
