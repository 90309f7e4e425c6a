/**
 * `sql.listen`: one dedicated listening connection on the writer (LISTEN is refused on a standby).
 * Every LISTEN and UNLISTEN goes through the executor like any statement, so the core picks the
 * host and a silent host is noticed (host monitoring) and failed over instead of waiting on a
 * black-holed socket. When that connection is lost, or when the core calls
 * {@link Listener.relisten} after a writer change, every channel is listened to again on the host
 * the core then gives, and each listener's `onlisten` runs again (as postgres.js does after a
 * reconnect).
 *
 * @module
 */
import type { Socket } from 'node:net'
import type { Executor } from '../../core/executor.ts'
import { type HostAddress, sameHost } from '../../core/host.ts'
import { sleep } from '../../runtime/mod.ts'
import { classify } from './classify.ts'
import type { Dedicated, HostPools } from './pools.ts'

interface ListenerEntry {
  readonly fn: (payload: string) => void
  readonly onlisten: (() => void) | undefined
}

interface ListenConnection {
  readonly host: HostAddress
  readonly dedicated: Dedicated
  readonly listening: Set<string>
  state: unknown
  main: Socket | undefined
  lost: boolean
  closing: boolean
}

/** What `sql.listen` resolves to (as in postgres.js). */
export interface ListenResult {
  readonly state: unknown
  unlisten(): Promise<void>
}

/** The listen side of a client. */
export interface Listener {
  listen(channel: string, fn: (payload: string) => void, onlisten?: () => void): Promise<ListenResult>
  /** Moves every channel to the host the core now gives for `listen` (call it after a writer change). */
  relisten(): Promise<void>
  end(): Promise<void>
}

/** What {@link createListener} needs from the client. */
export interface ListenerDeps {
  readonly executor: Executor
  readonly pools: HostPools
  isEnded(): boolean
  endedError(): Error
}

const MAX_RETRY_DELAY_MS = 5000

/** Makes the listen side of a client. */
export function createListener(deps: ListenerDeps): Listener {
  const { executor, pools } = deps
  const channels = new Map<string, Set<ListenerEntry>>()
  let conn: ListenConnection | undefined
  let opening: { readonly host: HostAddress; readonly promise: Promise<ListenConnection> } | undefined
  let retrying = false
  // One state object for every listen result, updated on each (re)connect as postgres.js's is.
  const state: Record<string, unknown> = {}

  function quote(name: string): string {
    return '"' + name.replace(/"/g, '""') + '"'
  }

  function onnotify(channel: string, payload: string): void {
    const set = channels.get(channel)
    if (!set) return
    for (const l of set) {
      try {
        l.fn(payload)
      } catch {
        // As in postgres.js, a throwing listener does not break the connection.
      }
    }
  }

  function retire(c: ListenConnection): void {
    c.closing = true
    void c.dedicated.end()
  }

  /**
   * The live listen connection on `host`, listening to every channel: the current one, or a new one
   * (which then replaces one elsewhere). One at a time per host.
   *
   * `ctx.sent` stays false for LISTEN: what it does lives only in its own session, which is gone
   * with a lost connection, so running it again on another host can do nothing twice. The failover
   * plugin then moves it to the new writer instead of failing the caller.
   */
  function connectionOn(host: HostAddress): Promise<ListenConnection> {
    if (conn && !conn.lost && sameHost(conn.host, host)) return Promise.resolve(conn)
    if (opening && sameHost(opening.host, host)) return opening.promise
    const promise: Promise<ListenConnection> = openOn(host).finally(() => {
      if (opening?.promise === promise) opening = undefined
    })
    opening = { host, promise }
    return promise
  }

  async function openOn(host: HostAddress): Promise<ListenConnection> {
    const c: ListenConnection = {
      host,
      listening: new Set(),
      state: undefined,
      main: undefined,
      lost: false,
      closing: false,
      dedicated: undefined as unknown as Dedicated,
    }
    ;(c as { dedicated: Dedicated }).dedicated = pools.dedicated(
      host,
      {
        max: 1,
        idle_timeout: null,
        max_lifetime: null,
        fetch_types: false,
        onnotify,
      } as never,
      {
        onSocketOpen(socket) {
          if (!c.main || c.main.destroyed) c.main = socket
        },
        onSocketClose(socket) {
          if (socket !== c.main) return
          c.main = undefined
          c.lost = true
          if (!c.closing && conn === c) {
            conn = undefined
            void c.dedicated.end()
            scheduleRetry()
          }
        },
      },
    )
    try {
      const names = [...channels.keys()]
      const result = await c.dedicated.sql.unsafe(
        names.length ? names.map((n) => `listen ${quote(n)}`).join(';') : 'select 1',
      )
      const backend = ((Array.isArray(result[0]) ? result[0] : result) as unknown as { state: object }).state
      c.state = Object.assign(state, backend)
      for (const n of names) c.listening.add(n)
    } catch (error) {
      retire(c)
      throw error
    }
    if (deps.isEnded() || c.lost) {
      retire(c)
      throw deps.isEnded() ? deps.endedError() : new Error('the listen connection closed while it opened')
    }
    const old = conn
    conn = c
    if (old && old !== c) retire(old)
    return c
  }

  /** A listen connection on the host the core gives for `listen` (the writer). */
  function open(): Promise<ListenConnection> {
    return executor.execute({ kind: 'listen', targetRole: 'writer', description: 'listen' }, (host) =>
      connectionOn(host),
    )
  }

  function notifyListening(): void {
    for (const set of channels.values()) for (const l of set) l.onlisten?.()
  }

  /** Re-listens after a lost connection, with a growing delay, until it works or the client ends. */
  function scheduleRetry(): void {
    if (retrying || deps.isEnded() || channels.size === 0) return
    retrying = true
    void (async () => {
      for (
        let delay = 50;
        !deps.isEnded() && channels.size > 0;
        delay = Math.min(delay * 2, MAX_RETRY_DELAY_MS)
      ) {
        try {
          await open()
          notifyListening()
          break
        } catch {
          await sleep(delay, { keepAlive: true })
        }
      }
      retrying = false
    })()
  }

  /** LISTEN `channel` on the writer's listen connection (opening or moving it as needed). */
  function listenOn(channel: string): Promise<void> {
    return executor.execute({ kind: 'listen', targetRole: 'writer', description: 'listen' }, async (host) => {
      const c = await connectionOn(host)
      if (c.listening.has(channel) || !channels.has(channel)) return
      await c.dedicated.sql.unsafe(`listen ${quote(channel)}`)
      c.listening.add(channel)
    })
  }

  /**
   * UNLISTEN `channel` on `c`, bounded like any statement. A connection that is lost or replaced
   * listens to nothing any more: the unlisten is done, and no failover is waited for.
   */
  async function unlistenOn(c: ListenConnection, channel: string): Promise<void> {
    const gone = () => c.lost || c.closing || conn !== c
    await executor.execute(
      { kind: 'listen', targetRole: 'writer', pinnedHost: c.host, description: 'unlisten' },
      async (host) => {
        if (gone() || !sameHost(host, c.host)) return
        try {
          await c.dedicated.sql.unsafe(`unlisten ${quote(channel)}`)
        } catch (error) {
          const kind = classify(error)
          if (gone() || kind === 'connection-lost' || kind === 'connect-failed') return
          throw error
        }
      },
    )
  }

  return {
    async listen(channel, fn, onlisten) {
      if (deps.isEnded()) throw deps.endedError()
      const entry: ListenerEntry = { fn, onlisten }
      let set = channels.get(channel)
      if (!set) channels.set(channel, (set = new Set()))
      set.add(entry)
      try {
        await listenOn(channel)
      } catch (error) {
        // The caller is told it failed: its function must not be called later.
        if (set.delete(entry) && set.size === 0 && channels.get(channel) === set) channels.delete(channel)
        throw error
      }
      onlisten?.()
      return {
        state,
        async unlisten() {
          const current = channels.get(channel)
          if (!current?.delete(entry) || current.size > 0) return
          channels.delete(channel)
          const live = conn
          if (live?.listening.delete(channel)) await unlistenOn(live, channel)
        },
      }
    },
    async relisten() {
      const old = conn
      conn = undefined
      if (old) retire(old)
      if (channels.size === 0 || deps.isEnded()) return
      try {
        await open()
      } catch (error) {
        scheduleRetry()
        throw error
      }
      notifyListening()
    },
    async end() {
      const c = conn
      conn = undefined
      if (c) {
        c.closing = true
        await c.dedicated.end()
      }
    },
  }
}
