/**
 * One postgres.js instance per host, never postgres.js's own multi-host mode. Every instance is
 * made from the same parsed options (sharing `parsers`, `serializers`, `transform` and
 * `parameters`) with its own host and user, and our own sockets. The connect hook runs in our
 * `socket` function, before each connection opens: postgres.js calls its `pass` function without
 * catching, so a failing hook there would be an unhandled rejection.
 *
 * @module
 */
import postgres from 'postgres'
import type { ConnectStart, OpenWith } from '../../core/connect-contract.ts'
import { ConnectionDroppedError } from '../../core/errors.ts'
import { type HostAddress, hostKey } from '../../core/host.ts'
import type { ConnectContext } from '../../core/plugin.ts'
import { settleWithin, startTimer, stopTimer } from '../../runtime/mod.ts'
import { isCancelRequest } from './cancel-request.ts'
import { classify } from './classify.ts'
import { postgresJsError } from './errors.ts'
import { handOver, type LoggedIn, login } from './login.ts'
import { createLoginStash, type LoginStash } from './login-stash.ts'
import type { ParsedConnection } from './parse.ts'
import { unrunQuery } from './query.ts'
import { createSaltedPasswords, type SaltedPasswords } from './salted-passwords.ts'
import {
  connected,
  connectionError,
  destroySockets,
  failedSocket,
  openSocket,
  type SocketSet,
} from './socket.ts'
import { socketPath } from './socket-path.ts'
import { tlsSettings } from './tls.ts'

/**
 * Runs one connection through the connect plugins: they choose the credentials and call `open`,
 * which logs in with them (within its `timeoutMs`) and rejects with the server's refusal, so a
 * plugin can try others. The whole call settles within `timeoutMs` (see `HaClient.connect`).
 */
export type ConnectHook = (start: ConnectStart, open: OpenWith, timeoutMs: number) => Promise<unknown>

/** Options of {@link createHostPools}. */
export interface HostPoolsOptions {
  readonly parsed: ParsedConnection
  /** Runs every user connection's login (see {@link ConnectHook}). Default: postgres.js logs in with the configured password. */
  readonly connectHook?: ConnectHook | undefined
  /** Connect timeout of user connections, in milliseconds (default: postgres.js's `connect_timeout`). */
  readonly connectTimeoutMs?: number | undefined
  /** The client's SCRAM salted passwords (shared with its internal connections); cleared by `endAll`. */
  readonly salted?: SaltedPasswords | undefined
}

/** The pools of one client, by host. */
export interface HostPools {
  /** The parsed options shared by every instance (exposed as `sql.options`). */
  readonly options: postgres.ParsedOptions
  /** The postgres.js instance for `host`, created on first use. */
  get(host: HostAddress): postgres.Sql
  /**
   * Destroys every socket to `host` at once (pool, reserved and listen connections); in-flight
   * statements reject. Returns false, doing nothing, when the host's connections were dropped
   * already and none opened since: a failover reports one dead host several ways (host
   * monitoring, the host-down event, the writer change), and one drop is enough.
   */
  abort(host: HostAddress, reason: string): boolean
  /**
   * How many times `host`'s connections were dropped so far; {@link HostPools.explain} tells
   * whether a statement's connection error came from such a drop.
   */
  drops(host: HostAddress): number
  /**
   * `error` as the caller should see it: a connection error on `host` after postgres-ha dropped
   * its connections (since `dropsBefore`, from {@link HostPools.drops}) becomes a
   * `ConnectionDroppedError` saying why, whatever postgres.js made of the drop; anything else is
   * returned as it is.
   */
  explain(host: HostAddress, dropsBefore: number, error: unknown): unknown
  /** Ends the pool of `host` gracefully and forgets it; its next `get` makes a new one. */
  close(host: HostAddress): Promise<void>
  /**
   * Opens one pool connection to `host` now, if it has none, so that its first statement finds it
   * open (failover: the hosts the writer search reaches); and, when `like` (the lost writer) had
   * more connections open at once, logs that many more in ahead, for the pool's next connections
   * to take as postgres.js opens them (login-stash.ts). Returns a release to call once the
   * failover is over: with `kept` (the host became the writer) the logins not taken yet close
   * after a few seconds; without, they close at once, and so does the pool if nothing but the
   * warm-up used it (no read, LISTEN or reservation went there meanwhile: closing would cut their
   * statements off on a healthy host).
   */
  warm(host: HostAddress, like?: HostAddress): (kept?: boolean) => void
  /** Hosts that have a pool. */
  hosts(): HostAddress[]
  /** Open sockets to `host` (all instances of this client). */
  connectionCount(host: HostAddress): number
  /**
   * Logs new pool connections in as `user` (plugins resolved it): every pool gets a fresh
   * instance for it and its old instance ends gracefully, letting its statements finish.
   * Reserved and listening connections already open keep theirs.
   */
  setUser(user: string): void
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
  /** The password the connect hook last resolved for this host, for postgres.js's `pass`. */
  password?: string | undefined
  /** How many times postgres-ha dropped this host's connections, and the last reason. */
  drops?: number
  dropReason?: string
  /** Dropped, and no socket opened since. */
  dropped?: boolean
  /**
   * Opened by {@link HostPools.warm} and used by nothing else since: its release may close it.
   * A statement, LISTEN or reserved connection that took the pool meanwhile keeps it open.
   */
  warmOnly?: boolean
  /** The pool instance's own open sockets (not the reserved or listening ones). */
  own?: SocketSet
  /** The most of them open at once: how many a failover hand-over logs in ahead elsewhere. */
  peak?: number
}

/** What the `socket` function of one postgres.js instance needs to know about it. */
interface InstanceState {
  readonly user: string
  /** Ended or being destroyed: a connection whose hook settles now must not open a socket. */
  retired: boolean
  /** Logins made ahead for this instance's next connections (see {@link HostPools.warm}). */
  stash?: LoginStash
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
  const tls = tlsSettings(shared)
  const connectTimeout: unknown =
    connectTimeoutMs !== undefined ? connectTimeoutMs / 1000 : shared.connect_timeout
  // Our own steps (connect hook, TLS) come before postgres.js starts its connect timer, which it
  // does right after our socket function resolved. A `connect_timeout` with a `valueOf` is read
  // once per connect, by us, and postgres.js is handed what we read: a user's `valueOf` counts
  // connects exactly as it would under postgres.js alone.
  let lastSeconds = 0
  const dynamic = connectTimeout !== null && typeof connectTimeout === 'object'
  const timeoutForPostgresJs = dynamic ? { valueOf: () => lastSeconds } : connectTimeout
  const budgetMs = () => {
    const seconds = Number(connectTimeout)
    if (dynamic) lastSeconds = seconds
    return seconds > 0 ? seconds * 1000 : 0
  }
  const resolvesCredentials = connectHook !== undefined || parsed.passwordIsFunction
  const entries = new Map<string, PoolEntry>()
  const states = new WeakMap<postgres.Sql, InstanceState>()
  let user = parsed.user
  let lastHost: HostAddress | undefined
  let lastEntry: PoolEntry | undefined
  let ending: Promise<void> | undefined
  /** What {@link HostPools.close} is ending: forgotten entries whose connections may still be open. */
  const closing = new Set<Promise<void>>()
  // SCRAM's salted password per (password, salt, iterations): after a failover, the new writer's
  // whole pool logs in at once, and each derivation would block the event loop (see the module).
  const salted = opts.salted ?? createSaltedPasswords()

  function hostOptions(pool: PoolEntry, sets: SocketSet[], overrides?: Partial<postgres.ParsedOptions>) {
    const { host, port } = pool.address
    const state: InstanceState = { user, retired: false }
    const plainSocket = () => openSocket(host, port, sets, tls, budgetMs(), parsed.connector)
    const options = {
      ...shared,
      host: [host],
      port: [port],
      // For postgres.js's error messages; the socket itself is ours.
      path: socketPath(host, port) ?? false,
      user,
      // TLS is negotiated in our socket function (see tls.ts).
      ssl: false,
      target_session_attrs: null,
      connect_timeout: timeoutForPostgresJs,
      // The core decides when to try a host again; postgres.js's own back-off grows to 20 s.
      backoff: 0,
      no_subscribe: true,
      socket: connectHook
        ? (connecting?: StartupOf) =>
            isCancelRequest() ? plainSocket() : loggedInSocket(pool, state, sets, connecting)
        : resolvesCredentials
          ? () => (isCancelRequest() ? plainSocket() : credentialsThenSocket(pool, state, sets))
          : plainSocket,
      pass: resolvesCredentials ? () => password(pool, state) : () => parsed.password().then((p) => p ?? ''),
      shared: { retries: 0, typeArrayMap: shared.shared.typeArrayMap },
      ...overrides,
    } as unknown as postgres.ParsedOptions
    return { options, state }
  }

  /** What our login needs from the postgres.js options that postgres.js passes to `socket`. */
  type StartupOf = { readonly database?: string; readonly connection?: Record<string, unknown> }

  /**
   * Our `socket` function when the connect plugins supply credentials: they run around our own
   * login (see login.ts), so that a refusal reaches them at connect time and they may retry with
   * other credentials on a new socket. postgres.js gets the logged-in socket. Whatever fails is
   * handed to the waiting statement as it is (a plugin's `credentialsUnavailable` error, the
   * server's 28P01), through a socket that fails with it; nothing was sent for that statement.
   */
  async function loggedInSocket(
    pool: PoolEntry,
    state: InstanceState,
    sets: SocketSet[],
    connecting: StartupOf | undefined,
  ) {
    const { host, port } = pool.address
    // A login made ahead by the failover hand-over (see login-stash.ts), if one is ready.
    let done = state.stash?.take()
    if (!done) {
      try {
        done = await logIn(pool, state, sets, connecting)
      } catch (error) {
        return failedSocket(error, host, port)
      }
    }
    if (state.retired) {
      done.socket.destroy()
      return failedSocket(destroyedError(host, port), host, port)
    }
    const budget = budgetMs() || DEFAULT_BUDGET_MS
    return handOver(done, async (request) => {
      const socket = await withBudget(
        connected(openSocket(host, port, [], tls, budget, parsed.connector)),
        budget,
        host,
        port,
      )
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve())
        socket.write(request)
      })
    })
  }

  /**
   * One login through the connect plugins (see {@link loggedInSocket}): the logged-in socket, or
   * the refusal as it is (a plugin's `credentialsUnavailable` error, the server's 28P01).
   */
  async function logIn(
    pool: PoolEntry,
    state: InstanceState,
    sets: SocketSet[],
    connecting: StartupOf | undefined,
  ): Promise<LoggedIn> {
    const { host, port } = pool.address
    const budget = budgetMs() || DEFAULT_BUDGET_MS
    let done: LoggedIn | undefined
    let abandoned = false
    const open: OpenWith = async (credentials, timeoutMs) => {
      if (state.retired) throw destroyedError(host, port)
      if (abandoned) throw connectionError('CONNECTION_ENDED', 'the pool was ended', host, port)
      const started = performance.now()
      const pending = openSocket(host, port, sets, tls, timeoutMs, parsed.connector)
      const socket = await withBudget(connected(pending), timeoutMs, host, port).catch((error) => {
        void Promise.resolve(pending).then((s) => s.destroy())
        throw error
      })
      const left = Math.max(1, timeoutMs - (performance.now() - started))
      done = await login(
        socket,
        {
          user: credentials.user,
          password: credentials.password,
          // postgres.js calls `socket` with the options of the instance that connects: its
          // startup parameters may differ from ours (subscribe's instance adds replication).
          database: connecting?.database ?? shared.database,
          parameters: connecting?.connection ?? (shared as StartupOf).connection ?? {},
        },
        left,
        salted,
      )
      const mine = done
      if (abandoned) mine.socket.destroy()
      return () => mine.socket.destroy()
    }
    try {
      const start = {
        host: pool.address,
        purpose: 'user' as const,
        user: state.user,
        password: await parsed.password(),
      }
      // The hook settles within the budget; the margin only guards against one that does not.
      await withBudget(connectHook!(start, open, budget), budget + HOOK_GRACE_MS, host, port)
    } catch (error) {
      abandoned = true
      done?.socket.destroy()
      throw error
    }
    if (!done || state.retired) {
      done?.socket.destroy()
      throw state.retired
        ? destroyedError(host, port)
        : connectionError('CONNECTION_ENDED', 'the pool was ended', host, port)
    }
    return done
  }

  /**
   * Our `socket` function when the password is a function of the user's (no connect plugins):
   * called for every connection within the connect timeout; a failure reaches the waiting
   * statement as it is, through a socket that fails with it.
   */
  async function credentialsThenSocket(pool: PoolEntry, state: InstanceState, sets: SocketSet[]) {
    const { host, port } = pool.address
    const started = performance.now()
    const budget = budgetMs()
    let ctx: ConnectContext
    try {
      ctx = await withBudget(resolveCredentials(pool.address, state.user), budget, host, port)
    } catch (error) {
      return failedSocket(error, host, port)
    }
    if (state.retired) return failedSocket(destroyedError(host, port), host, port)
    pool.password = ctx.password ?? ''
    const remainingMs = budget && Math.max(1, budget - (performance.now() - started))
    return openSocket(host, port, sets, tls, remainingMs, parsed.connector)
  }

  async function resolveCredentials(host: HostAddress, as: string): Promise<ConnectContext> {
    return {
      host,
      purpose: 'user',
      user: as,
      password: await parsed.password(),
      deadline: Number.POSITIVE_INFINITY,
    }
  }

  /** postgres.js's `pass`, which it awaits without catching: it must never reject. */
  function password(pool: PoolEntry, state: InstanceState): string | Promise<string> {
    if (pool.password !== undefined) return pool.password
    // Only if postgres.js asks before our socket function ran; a failure gets a plain 28P01.
    return resolveCredentials(pool.address, state.user).then(
      (ctx) => ctx.password ?? '',
      () => '',
    )
  }

  function switchUser(next: string, only?: PoolEntry): void {
    user = next
    if (ending) return
    for (const e of only ? [only] : entries.values()) {
      if (states.get(e.sql)?.user === next) continue
      const old = attachInstance(e)
      if (old) void endInstance(old, { sockets: new Set() }, null).catch(() => {})
    }
  }

  function entry(address: HostAddress): PoolEntry {
    if (address === lastHost && lastEntry) return lastEntry
    const key = hostKey(address)
    let e = entries.get(key)
    if (!e) {
      if (ending)
        throw connectionError('CONNECTION_ENDED', 'the client has been ended', address.host, address.port)
      const partial: Partial<PoolEntry> = {
        address: { host: address.host, port: address.port },
        sockets: new Set(),
        dedicated: new Set(),
        // A new connection since the last drop is something the next drop must close.
        onSocketOpen: () => {
          partial.dropped = false
        },
      }
      e = partial as PoolEntry
      entries.set(key, e)
      attachInstance(e)
    }
    lastHost = address
    lastEntry = e
    return e
  }

  /** Gives an entry a fresh postgres.js instance (for the current user); returns the one it had. */
  function attachInstance(e: PoolEntry): postgres.Sql | undefined {
    const previous = e.sql as postgres.Sql | undefined
    const own: SocketSet = (e.own ??= {
      sockets: new Set(),
      onSocketOpen: () => {
        e.peak = Math.max(e.peak ?? 0, own.sockets.size)
      },
    })
    const sql = makeInstance(e, [e, own])
    const { handler, canceller } = unrunQuery(sql)
    Object.assign(e, { sql, handler, canceller })
    return previous
  }

  function makeInstance(
    pool: PoolEntry,
    sets: SocketSet[],
    overrides?: Partial<postgres.ParsedOptions>,
  ): postgres.Sql {
    const { options, state } = hostOptions(pool, sets, overrides)
    // postgres.js takes an already parsed options object (one with `shared`) as it is.
    const sql = postgres(
      options as unknown as postgres.Options<Record<string, postgres.PostgresType>>,
    ) as unknown as postgres.Sql
    states.set(sql, state)
    return sql
  }

  /**
   * Ends an instance (see postgres.js `end`), then destroys what is left in `set`. From the moment
   * postgres.js destroys its connections (at `timeout`), a connection still resolving its
   * credentials must not open a socket: nothing would ever close it.
   */
  async function endInstance(sql: postgres.Sql, set: SocketSet, timeout: number | null): Promise<void> {
    const state = states.get(sql)
    const timer =
      state && timeout !== null ? startTimer(() => (state.retired = true), timeout * 1000) : undefined
    if (state && timeout === 0) state.retired = true
    state?.stash?.expire(0)
    await sql.end({ timeout: timeout ?? undefined })
    stopTimer(timer)
    if (state) state.retired = true
    destroySockets(set)
  }

  /** `e` taken for the client's own work: a hand-over's release no longer closes it. */
  function used(e: PoolEntry): PoolEntry {
    if (e.warmOnly) e.warmOnly = false
    return e
  }

  function forget(key: string): void {
    entries.delete(key)
    lastHost = lastEntry = undefined
  }

  return {
    options: shared,
    get: (host) => used(entry(host)).sql,
    entry: (host) => used(entry(host)),
    abort(host, reason) {
      const e = entries.get(hostKey(host))
      if (!e || e.dropped) return false
      e.dropped = true
      e.drops = (e.drops ?? 0) + 1
      e.dropReason = reason
      destroySockets(e, new ConnectionDroppedError(hostKey(host), reason))
      if (ending) return true
      // postgres.js keeps a closed connection's last statement as "in flight": its end() would wait
      // for it forever, and a late write to it (a transaction's ROLLBACK) throws. Terminating the
      // old instance settles both; the host gets a fresh instance for what comes next.
      const old = attachInstance(e)
      if (old) void endInstance(old, { sockets: new Set() }, 0).catch(() => {})
      return true
    },
    async close(host) {
      const key = hostKey(host)
      const e = entries.get(key)
      if (!e) return
      forget(key)
      const closed = endEntry(e, 1)
      closing.add(closed)
      try {
        await closed
      } finally {
        closing.delete(closed)
      }
    },
    warm(host, like) {
      if (ending) return () => {}
      const open = this.connectionCount(host)
      const e = entry(host)
      if (open === 0) {
        e.warmOnly = true
        // The statement is what opens (and authenticates) the connection; its answer is not needed.
        void e.sql`select 1`.catch(() => {})
      }
      const state = states.get(e.sql)
      const wanted = Math.min(Number(shared.max) || 1, (like && entries.get(hostKey(like))?.peak) || 1)
      const ahead = connectHook && state ? wanted - Math.max(1, open) : 0
      if (ahead > 0) {
        const stash = (state!.stash ??= createLoginStash())
        for (let i = 0; i < ahead; i++) stash.add(logIn(e, state!, [e, e.own!], undefined))
      }
      return (kept) => {
        const stashed = state?.stash?.size ?? 0
        if (kept) return state?.stash?.expire(STASH_KEPT_MS)
        state?.stash?.expire(0)
        // Logins closed just now are still counted until their sockets are destroyed.
        if (
          open === 0 &&
          entries.get(hostKey(host)) === e &&
          e.warmOnly &&
          this.connectionCount(host) - stashed <= 1
        )
          void this.close(host).catch(() => {})
      }
    },
    drops: (host) => entries.get(hostKey(host))?.drops ?? 0,
    explain(host, dropsBefore, error) {
      const e = entries.get(hostKey(host))
      if (!e || (e.drops ?? 0) === dropsBefore || error instanceof ConnectionDroppedError) return error
      const kind = classify(error)
      if (kind !== 'connection-lost' && kind !== 'connect-failed') return error
      return new ConnectionDroppedError(hostKey(host), e.dropReason ?? 'dropped', { cause: error })
    },
    hosts: () => [...entries.values()].map((e) => e.address),
    connectionCount(host) {
      const e = entries.get(hostKey(host))
      if (!e) return 0
      let n = 0
      for (const s of e.sockets) s.destroyed ? e.sockets.delete(s) : n++
      return n
    },
    setUser: (next) => switchUser(next),
    endAll({ timeout } = {}) {
      if (ending) return ending
      const all = [...entries.values()]
      // The sql surface ends pools only once its own statements are done, so with no timeout
      // what is left is idle or dead (a closed connection postgres.js still counts as busy would
      // make a graceful end wait forever): close them now.
      salted.clear()
      // A pool being closed (a retired host, a hand-over the failover let go) is forgotten but
      // may still be logging connections in: end() resolves once those are closed too.
      const closes = [...closing].map((closed) => closed.catch(() => {}))
      ending = Promise.all([...all.map((e) => endEntry(e, timeout ?? 0)), ...closes]).then(() => {
        entries.clear()
        lastHost = lastEntry = undefined
      })
      return ending
    },
    dedicated(host, overrides, hooks) {
      const pool = used(entry(host))
      const set: SocketSet = { sockets: new Set(), ...hooks }
      const sql = makeInstance(pool, [set, pool], {
        max: 1,
        idle_timeout: null as unknown as undefined,
        ...overrides,
      } as Partial<postgres.ParsedOptions>)
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
    const stash = states.get(e.sql)?.stash
    await Promise.all([endInstance(e.sql, e, timeout), ...[...e.dedicated].map((d) => d.end())])
    // A login made ahead may still be under way (its instance is retired now: no new socket):
    // destroying its socket ends it, and the pool's end waits for that.
    destroySockets(e)
    await stash?.settled()
  }
}

/**
 * Why a connection still logging in when its instance is retired gets no socket: postgres.js is
 * destroying that instance's connections (`end({ timeout })` is up, or the host was dropped), and
 * it destroys one still connecting with CONNECTION_DESTROYED, so its statement gets that. The
 * pool's `ending` alone is no reason: until the timeout, postgres.js lets such a connection
 * connect and run what it holds.
 */
function destroyedError(host: string, port: number): Error {
  return postgresJsError('CONNECTION_DESTROYED', host, port)
}

/**
 * How long the logins a failover hand-over made ahead on the new writer wait for the pool's
 * connections to take them: the statements that waited for the failover open them at once.
 */
const STASH_KEPT_MS = 5_000

/** When the connect timeout is off (0), the connect plugins still get a deadline. */
const DEFAULT_BUDGET_MS = 30_000
/** How much longer than its own deadline a connect hook is given before it is cut short. */
const HOOK_GRACE_MS = 100

/** `promise`, or a `CONNECT_TIMEOUT` error after `ms` (never, for 0). */
function withBudget<T>(promise: Promise<T>, ms: number, host: string, port: number): Promise<T> {
  if (!ms) return promise
  return settleWithin(promise, ms, () =>
    connectionError('CONNECT_TIMEOUT', `${host}:${port}: credentials not ready within ${ms} ms`, host, port),
  )
}
