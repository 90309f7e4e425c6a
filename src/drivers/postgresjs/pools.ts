/**
 * One postgres.js instance per host, never postgres.js's own multi-host mode. Every instance is
 * made from the same parsed options (sharing `parsers`, `serializers`, `transform` and
 * `parameters`) with its own host, our own sockets and a password that runs the connect hook.
 *
 * @module
 */
import postgres from 'postgres'
import { type HostAddress, hostKey } from '../../core/host.ts'
import type { ConnectContext } from '../../core/plugin.ts'
import type { ParsedConnection } from './parse.ts'
import { connectionError, destroySockets, openTrackedSocket, type SocketSet } from './socket.ts'

/** Runs the connect pipeline (plugins may set `user`/`password`); resolves when credentials are ready. */
export type ConnectHook = (ctx: ConnectContext) => Promise<void>

/** Options of {@link createHostPools}. */
export interface HostPoolsOptions {
  readonly parsed: ParsedConnection
  /** Called on every authentication of a user connection. Default: use the configured password. */
  readonly connectHook?: ConnectHook | undefined
  /** Connect timeout of user connections, in milliseconds (default: postgres.js's `connect_timeout`). */
  readonly connectTimeoutMs?: number | undefined
}

/** The pools of one client, by host. */
export interface HostPools {
  /** The parsed options shared by every instance (exposed as `sql.options`). */
  readonly options: postgres.ParsedOptions
  /** The postgres.js instance for `host`, created on first use. */
  get(host: HostAddress): postgres.Sql
  /** Destroys every socket to `host` at once (pool, reserved and listen connections); in-flight statements reject. */
  abort(host: HostAddress, reason: string): void
  /** Ends the pool of `host` gracefully and forgets it; its next `get` makes a new one. */
  close(host: HostAddress): Promise<void>
  /** Hosts that have a pool. */
  hosts(): HostAddress[]
  /** Open sockets to `host` (all instances of this client). */
  connectionCount(host: HostAddress): number
  /** Ends every instance; after `timeout` seconds, drops what is left. Twice is harmless. */
  endAll(options?: { timeout?: number | null | undefined }): Promise<void>
  /**
   * A separate `max: 1` instance on `host` for a reserved or listening connection, counted and
   * aborted with the host; `hooks` see its sockets open and close.
   * @internal
   */
  dedicated(
    host: HostAddress,
    overrides: Partial<postgres.ParsedOptions>,
    hooks?: Pick<SocketSet, 'onSocketOpen' | 'onSocketClose'>,
  ): Dedicated
  /** The pool entry of `host`, with the handler postgres.js queries of that pool run through. @internal */
  entry(host: HostAddress): PoolEntry
}

/** A dedicated instance (see {@link HostPools.dedicated}). */
export interface Dedicated {
  readonly sql: postgres.Sql
  readonly sockets: SocketSet
  /** Ends it; drops its sockets after a second at most. */
  end(): Promise<void>
}

/** A host's pool as the sql surface uses it. @internal */
export interface PoolEntry extends SocketSet {
  readonly address: HostAddress
  readonly sql: postgres.Sql
  /** The pool's internal query handler and canceller, taken from a query it made. */
  readonly handler: unknown
  readonly canceller: unknown
  readonly dedicated: Set<Dedicated>
}

/**
 * Creates the per-host pools of one client.
 *
 * @example
 * ```ts
 * const pools = createHostPools({ parsed: parseConnection(url), connectHook: (ctx) => runPlugins(ctx) })
 * const rows = await pools.get({ host: '127.0.0.1', port: 5432 })`select 1 as x`
 * pools.abort({ host: '127.0.0.1', port: 5432 }, 'failover')
 * ```
 */
export function createHostPools(opts: HostPoolsOptions): HostPools {
  const { parsed, connectHook, connectTimeoutMs } = opts
  const shared = parsed.options as postgres.ParsedOptions & { shared: { typeArrayMap: object } }
  const entries = new Map<string, PoolEntry>()
  let lastHost: HostAddress | undefined
  let lastEntry: PoolEntry | undefined
  let ending: Promise<void> | undefined

  function hostOptions(address: HostAddress, sets: SocketSet[], overrides?: Partial<postgres.ParsedOptions>) {
    const { host, port } = address
    return {
      ...shared,
      host: [host],
      port: [port],
      path: false,
      target_session_attrs: null,
      connect_timeout: connectTimeoutMs !== undefined ? connectTimeoutMs / 1000 : shared.connect_timeout,
      // The core decides when to try a host again; postgres.js's own back-off grows to 20 s.
      backoff: 0,
      no_subscribe: true,
      socket: () => openTrackedSocket(host, port, sets),
      pass: () => password(address),
      shared: { retries: 0, typeArrayMap: shared.shared.typeArrayMap },
      ...overrides,
    } as unknown as postgres.ParsedOptions
  }

  async function password(host: HostAddress): Promise<string> {
    const ctx: ConnectContext = {
      host,
      purpose: 'user',
      user: parsed.user,
      password: await parsed.password(),
    }
    if (connectHook) await connectHook(ctx)
    return ctx.password ?? ''
  }

  function entry(address: HostAddress): PoolEntry {
    if (address === lastHost && lastEntry) return lastEntry
    const key = hostKey(address)
    let e = entries.get(key)
    if (!e) {
      if (ending)
        throw connectionError('CONNECTION_ENDED', 'the client has been ended', address.host, address.port)
      const partial = {
        address: { host: address.host, port: address.port },
        sockets: new Set(),
        dedicated: new Set(),
      }
      e = partial as unknown as PoolEntry
      entries.set(key, e)
      attachInstance(e)
    }
    lastHost = address
    lastEntry = e
    return e
  }

  /** Gives an entry a fresh postgres.js instance; returns the one it had. */
  function attachInstance(e: PoolEntry): postgres.Sql | undefined {
    const previous = e.sql as postgres.Sql | undefined
    const sql = makeInstance(hostOptions(e.address, [e]))
    // A query that is never run: it carries the pool's handler and canceller.
    const probe = (sql as unknown as (s: TemplateStringsArray) => { handler: unknown; canceller: unknown })(
      Object.assign([''], { raw: [''] }) as unknown as TemplateStringsArray,
    )
    Object.assign(e, { sql, handler: probe.handler, canceller: probe.canceller })
    return previous
  }

  function makeInstance(options: postgres.ParsedOptions): postgres.Sql {
    // postgres.js takes an already parsed options object (one with `shared`) as it is.
    return postgres(
      options as unknown as postgres.Options<Record<string, postgres.PostgresType>>,
    ) as unknown as postgres.Sql
  }

  function forget(key: string): void {
    entries.delete(key)
    lastHost = lastEntry = undefined
  }

  return {
    options: shared,
    get: (host) => entry(host).sql,
    entry,
    abort(host, reason) {
      const e = entries.get(hostKey(host))
      if (!e) return
      destroySockets(
        e,
        connectionError('CONNECTION_DESTROYED', `aborted by postgres-ha: ${reason}`, host.host, host.port),
      )
      if (ending) return
      // postgres.js keeps a closed connection's last statement as "in flight": its end() would wait
      // for it forever, and a late write to it (a transaction's ROLLBACK) throws. Terminating the
      // old instance settles both; the host gets a fresh instance for what comes next.
      const old = attachInstance(e)
      if (old) void endInstance(old, { sockets: new Set() }, 0).catch(() => {})
    },
    async close(host) {
      const key = hostKey(host)
      const e = entries.get(key)
      if (!e) return
      forget(key)
      await endEntry(e, 1)
    },
    hosts: () => [...entries.values()].map((e) => e.address),
    connectionCount(host) {
      const e = entries.get(hostKey(host))
      if (!e) return 0
      let n = 0
      for (const s of e.sockets) s.destroyed ? e.sockets.delete(s) : n++
      return n
    },
    endAll({ timeout } = {}) {
      if (ending) return ending
      const all = [...entries.values()]
      // The sql surface ends pools only once its own statements are done, so with no timeout
      // what is left is idle or dead (a closed connection postgres.js still counts as busy would
      // make a graceful end wait forever): close them now.
      ending = Promise.all(all.map((e) => endEntry(e, timeout ?? 0))).then(() => {
        entries.clear()
        lastHost = lastEntry = undefined
      })
      return ending
    },
    dedicated(host, overrides, hooks) {
      const pool = entry(host)
      const set: SocketSet = { sockets: new Set(), ...hooks }
      const sql = makeInstance(
        hostOptions(host, [set, pool], {
          max: 1,
          idle_timeout: null as unknown as undefined,
          ...overrides,
        } as Partial<postgres.ParsedOptions>),
      )
      const d: Dedicated = {
        sql,
        sockets: set,
        async end() {
          pool.dedicated.delete(d)
          await endInstance(sql, set, 1)
        },
      }
      pool.dedicated.add(d)
      return d
    },
  }

  async function endEntry(e: PoolEntry, timeout: number | null): Promise<void> {
    await Promise.all([endInstance(e.sql, e, timeout), ...[...e.dedicated].map((d) => d.end())])
    destroySockets(e)
  }
}

async function endInstance(sql: postgres.Sql, set: SocketSet, timeout: number | null): Promise<void> {
  await sql.end({ timeout: timeout ?? undefined })
  destroySockets(set)
}
