/**
 * `sql.subscribe` (logical replication): postgres.js's own subscribe, on a dedicated instance on
 * the writer, opened through the executor so the core picks the host (and a connect failure fails
 * over like any statement). When the replication connection closes or the writer moves, every
 * subscriber is subscribed again on the host the core then gives, and its `onsubscribe` runs
 * again, as after a postgres.js reconnect. Rows changed while no subscription stood are not replayed: postgres.js's slots are
 * temporary, they end with their connection.
 *
 * @module
 */
import type postgres from 'postgres'
import type { Executor } from '../../core/executor.ts'
import { sleep } from '../../runtime/mod.ts'
import type { Dedicated, HostPools } from './pools.ts'

type RowFn = (row: unknown, info: unknown) => void

interface SubscriberEntry {
  readonly event: string
  readonly fn: RowFn
  readonly onsubscribe: () => void
  readonly onerror: (error: unknown) => void
  /** postgres.js's unsubscribe of the subscription standing for it now. */
  unsubscribe: (() => void) | undefined
}

interface SubscribeResult {
  unsubscribe(): void
  state: { pid?: number; secret?: number }
  sql: postgres.Sql
}

type PgSubscribe = (
  event: string,
  fn: RowFn,
  onsubscribe?: () => void,
  onerror?: (error: unknown) => void,
) => Promise<SubscribeResult>

interface Instance {
  readonly dedicated: Dedicated
  /** postgres.js's replication instance inside it (`subscribe.sql`). */
  readonly inner: postgres.Sql
  readonly subscribe: PgSubscribe
  retired: boolean
}

/** The subscribe side of a client. */
export interface Subscriber {
  subscribe(
    event: string,
    fn: RowFn,
    onsubscribe?: () => void,
    onerror?: (error: unknown) => void,
  ): Promise<{ unsubscribe(): void; state: object; sql: postgres.Sql }>
  /** Subscribes everyone again on the host the core now gives (call it after a writer change). */
  resubscribe(): Promise<void>
  end(): Promise<void>
}

/** What {@link createSubscriber} needs from the client. */
export interface SubscriberDeps {
  readonly executor: Executor
  readonly pools: HostPools
  isEnded(): boolean
  endedError(): Error
}

const MAX_RETRY_DELAY_MS = 5000
const noop = () => {}

/** Makes the subscribe side of a client. */
export function createSubscriber(deps: SubscriberDeps): Subscriber {
  const { executor, pools } = deps
  const entries = new Set<SubscriberEntry>()
  let instance: Instance | undefined
  let opening: Promise<Instance> | undefined
  let retrying = false
  // One state for every caller, always that of the subscription standing now.
  const state = Object.defineProperties(
    {},
    {
      pid: { enumerable: true, get: () => current()?.pid },
      secret: { enumerable: true, get: () => current()?.secret },
    },
  )
  let currentState: SubscribeResult['state'] | undefined
  const current = () => currentState

  /** Subscribes `entry` on `inst` (postgres.js connects the replication slot on the first one). */
  async function attach(inst: Instance, entry: SubscriberEntry): Promise<SubscribeResult> {
    const result = await inst.subscribe(entry.event, entry.fn, entry.onsubscribe, entry.onerror)
    entry.unsubscribe = result.unsubscribe
    currentState = result.state
    return result
  }

  function retire(inst: Instance): void {
    if (inst.retired) return
    inst.retired = true
    if (instance === inst) instance = undefined
    void inst.dedicated.end().catch(noop)
  }

  /** Opens an instance on the writer with `first` subscribed on it. */
  function open(first: SubscriberEntry): Promise<{ inst: Instance; result: SubscribeResult }> {
    return executor.execute(
      { kind: 'listen', targetRole: 'writer', description: 'subscribe' },
      async (host, ctx) => {
        const dedicated = pools.dedicated(host, { no_subscribe: false, fetch_types: false } as never)
        const subscribe = (dedicated.sql as unknown as { subscribe: PgSubscribe & { sql: postgres.Sql } })
          .subscribe
        const inst: Instance = { dedicated, inner: subscribe.sql, subscribe, retired: false }
        guardReconnect(inst)
        ctx.sent = true
        try {
          const result = await attach(inst, first)
          if (deps.isEnded()) throw deps.endedError()
          return { inst, result }
        } catch (error) {
          retire(inst)
          throw error
        }
      },
    )
  }

  /**
   * postgres.js re-subscribes from the replication instance's `onclose`, an async function that
   * nobody awaits: a failure would be an unhandled rejection, and after its server went away it
   * waits forever (its reconnect never opens a socket). The hook is taken over here (postgres.js
   * reads it from the instance's own options object at each close): the instance is retired and
   * every subscriber subscribed again through the core, on the host it gives now.
   */
  function guardReconnect(inst: Instance): void {
    const options = (inst.inner as unknown as { options: { onclose?: (id: number) => unknown } }).options
    options.onclose = () => {
      if (inst.retired) return
      retire(inst)
      scheduleRetry()
    }
  }

  async function establish(): Promise<void> {
    const [first, ...rest] = entries
    if (!first) return
    opening ??= open(first).then(({ inst }) => inst)
    try {
      const inst = await opening
      for (const entry of rest) await attach(inst, entry)
      instance = inst
    } finally {
      opening = undefined
    }
  }

  /** Subscribes again after a lost host, with a growing delay, until it works or the client ends. */
  function scheduleRetry(): void {
    if (retrying || deps.isEnded() || entries.size === 0) return
    retrying = true
    void (async () => {
      for (
        let delay = 50;
        !deps.isEnded() && entries.size > 0 && !instance;
        delay = Math.min(delay * 2, MAX_RETRY_DELAY_MS)
      ) {
        try {
          await establish()
          break
        } catch {
          await sleep(delay, { keepAlive: true })
        }
      }
      retrying = false
    })()
  }

  return {
    async subscribe(event, fn, onsubscribe = noop, onerror = noop) {
      if (deps.isEnded()) throw deps.endedError()
      const entry: SubscriberEntry = { event, fn, onsubscribe, onerror, unsubscribe: undefined }
      entries.add(entry)
      let sql: postgres.Sql
      try {
        const pending = opening
        if (instance && !instance.retired) sql = (await attach(instance, entry)).sql
        else if (pending) sql = (await attach(await pending, entry)).sql
        else {
          const promise = open(entry)
          opening = promise.then(({ inst }) => inst)
          try {
            const { inst, result } = await promise
            instance = inst
            sql = result.sql
          } finally {
            opening = undefined
          }
        }
      } catch (error) {
        entries.delete(entry)
        throw error
      }
      return {
        state,
        sql,
        unsubscribe() {
          entries.delete(entry)
          entry.unsubscribe?.()
        },
      }
    },
    async resubscribe() {
      const old = instance
      if (old) retire(old)
      if (entries.size === 0 || deps.isEnded()) return
      try {
        await establish()
      } catch (error) {
        scheduleRetry()
        throw error
      }
    },
    async end() {
      const inst = instance
      instance = undefined
      if (inst) {
        inst.retired = true
        await inst.dedicated.end()
      }
    },
  }
}
