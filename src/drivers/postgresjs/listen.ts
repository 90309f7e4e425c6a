/**
 * `sql.listen`: one dedicated listening connection on the writer (LISTEN is refused on a standby),
 * opened through the executor so the core picks the host. When that connection is lost, or when
 * the core calls {@link Listener.relisten} after a writer change, every channel is listened to
 * again on the host the core then gives, and each listener's `onlisten` runs again (as postgres.js
 * does after a reconnect).
 *
 * @module
 */
import type { Socket } from 'node:net'
import type { Executor } from '../../core/executor.ts'
import type { HostAddress } from '../../core/host.ts'
import { sleep } from '../../runtime/mod.ts'
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
  let connecting: Promise<ListenConnection> | undefined
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

  function open(): Promise<ListenConnection> {
    if (conn && !conn.lost) return Promise.resolve(conn)
    if (connecting) return connecting
    connecting = executor
      .execute({ kind: 'listen', targetRole: 'writer', description: 'listen' }, async (host, ctx) => {
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
          ctx.sent = true
          const result = await c.dedicated.sql.unsafe(
            names.length ? names.map((n) => `listen ${quote(n)}`).join(';') : 'select 1',
          )
          const backend = ((Array.isArray(result[0]) ? result[0] : result) as unknown as { state: object })
            .state
          c.state = Object.assign(state, backend)
          for (const n of names) c.listening.add(n)
        } catch (error) {
          c.closing = true
          void c.dedicated.end()
          throw error
        }
        if (deps.isEnded()) {
          c.closing = true
          void c.dedicated.end()
          throw deps.endedError()
        }
        conn = c
        return c
      })
      .finally(() => {
        connecting = undefined
      })
    return connecting
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

  return {
    async listen(channel, fn, onlisten) {
      if (deps.isEnded()) throw deps.endedError()
      const entry: ListenerEntry = { fn, onlisten }
      let set = channels.get(channel)
      if (!set) channels.set(channel, (set = new Set()))
      set.add(entry)
      const c = await open()
      if (!c.listening.has(channel)) {
        await c.dedicated.sql.unsafe(`listen ${quote(channel)}`)
        c.listening.add(channel)
      }
      onlisten?.()
      return {
        state,
        async unlisten() {
          const current = channels.get(channel)
          if (!current?.delete(entry) || current.size > 0) return
          channels.delete(channel)
          const live = conn
          if (live?.listening.delete(channel)) await live.dedicated.sql.unsafe(`unlisten ${quote(channel)}`)
        },
      }
    },
    async relisten() {
      const old = conn
      conn = undefined
      if (old) {
        old.closing = true
        void old.dedicated.end()
      }
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
