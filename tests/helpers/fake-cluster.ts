/**
 * A cluster of pretend hosts behind a {@link ConnectionFactory}, for unit tests of our own state
 * machines (writer search, failover, monitors) without a database. It answers only the few
 * statements the core sends (the role check, `select 1`, the topology read of
 * {@link FakeCluster.dialect}); errors are shaped like the driver's and classified by the driver's
 * own classifier. Every wait is on the fake runtime, so tests move time by hand.
 *
 * @module
 */
import type {
  ConnectionFactory,
  ConnectRequest,
  DbConnection,
  StatementOptions,
} from '../../src/core/connection-factory.ts'
import { type Dialect, ROLE_QUERY } from '../../src/core/dialect.ts'
import { ConnectTimeoutError, QueryTimeoutError } from '../../src/core/errors.ts'
import { type HostAddress, type HostInfo, hostKey } from '../../src/core/host.ts'
import { classify } from '../../src/drivers/postgresjs/classify.ts'
import { connectionError } from '../../src/drivers/postgresjs/errors.ts'
import type { FakeRuntime } from './fake-runtime.ts'

/**
 * How a pretend host behaves: `writer` and `reader` answer; `down` refuses connections (and its
 * open ones break); `silent` accepts nothing and answers nothing (a black hole); `busy` refuses
 * new connections with an answer (53300, too many connections): it is up.
 */
export type FakeHostState = 'writer' | 'reader' | 'down' | 'silent' | 'busy'

/** The statement the fake dialect reads the topology with. */
export const FAKE_TOPOLOGY_QUERY = 'fake topology'

/** A pretend cluster; see the module doc. */
export interface FakeCluster {
  readonly factory: ConnectionFactory
  /** Reads the topology as every answering host describes it (the roles set with {@link set}). */
  readonly dialect: Dialect
  /** Sets a host's state; `down` and `silent` break its open connections' pending statements. */
  set(host: HostAddress, state: FakeHostState): void
  state(host: HostAddress): FakeHostState
  /** Fake milliseconds a host takes to accept a connection, and to answer a statement. */
  delays(host: HostAddress, delays: { connectMs?: number; queryMs?: number }): void
  /** Every connect asked for, in order, with the fake time it was asked at. */
  readonly connects: Array<{ host: string; purpose: string; at: number }>
  /** Every statement sent, in order, with the fake time it was sent at. */
  readonly queries: Array<{ host: string; text: string; at: number }>
  /** Connections open now (neither closed nor aborted). */
  openConnections(host?: HostAddress): number
}

/** Creates a cluster of `hosts` with their initial states, on `runtime`'s time. */
export function fakeCluster(
  runtime: FakeRuntime,
  hosts: ReadonlyArray<readonly [HostAddress, FakeHostState]>,
): FakeCluster {
  const states = new Map<string, FakeHostState>()
  const addresses = new Map<string, HostAddress>()
  const delays = new Map<string, { connectMs: number; queryMs: number }>()
  const open = new Set<FakeConnection>()
  const connects: FakeCluster['connects'] = []
  const queries: FakeCluster['queries'] = []
  for (const [h, s] of hosts) {
    states.set(hostKey(h), s)
    addresses.set(hostKey(h), { host: h.host, port: h.port })
  }
  const stateOf = (h: HostAddress): FakeHostState => states.get(hostKey(h)) ?? 'down'
  const delayOf = (h: HostAddress) => delays.get(hostKey(h)) ?? { connectMs: 0, queryMs: 0 }

  interface FakeConnection extends DbConnection {
    breakWith(error: Error): void
  }

  /** Resolves after `ms` of fake time, or rejects when `timeoutMs` passes first (0: never). */
  function wait<T>(ms: number, timeoutMs: number, answer: () => T, onTimeout: () => Error): Promise<T> {
    return new Promise((resolve, reject) => {
      const timers: unknown[] = []
      const done = () => {
        for (const t of timers) runtime.stopTimer(t as never)
      }
      if (Number.isFinite(ms))
        timers.push(
          runtime.startTimer(() => {
            done()
            try {
              resolve(answer())
            } catch (error) {
              reject(error)
            }
          }, ms),
        )
      if (timeoutMs > 0)
        timers.push(
          runtime.startTimer(() => {
            done()
            reject(onTimeout())
          }, timeoutMs),
        )
    })
  }

  function connection(host: HostAddress): FakeConnection {
    let closed = false
    const pending = new Set<(error: Error) => void>()
    const conn: FakeConnection = {
      host,
      get closed() {
        return closed
      },
      query<Row>(text: string, _params?: readonly unknown[], options?: StatementOptions): Promise<Row[]> {
        queries.push({ host: hostKey(host), text, at: runtime.now() })
        if (closed) return Promise.reject(lost(host, 'the connection is closed'))
        const state = stateOf(host)
        const timeoutMs = options?.timeoutMs ?? 0
        const answerMs = state === 'silent' ? Number.POSITIVE_INFINITY : delayOf(host).queryMs
        return new Promise<Row[]>((resolve, reject) => {
          const fail = (error: Error) => {
            pending.delete(fail)
            reject(error)
          }
          pending.add(fail)
          wait(
            answerMs,
            timeoutMs,
            () => rows<Row>(host, text),
            () => {
              conn.abort()
              return new QueryTimeoutError(timeoutMs)
            },
          ).then((value) => {
            pending.delete(fail)
            resolve(value)
          }, fail)
        })
      },
      async close() {
        conn.abort()
      },
      abort() {
        if (closed) return
        closed = true
        open.delete(conn)
        for (const fail of [...pending]) fail(lost(host, 'aborted'))
      },
      breakWith(error) {
        if (closed) return
        closed = true
        open.delete(conn)
        for (const fail of [...pending]) fail(error)
      },
    }
    return conn
  }

  function rows<Row>(host: HostAddress, text: string): Row[] {
    const state = stateOf(host)
    if (state === 'down') throw lost(host, 'the server went away')
    if (text === ROLE_QUERY) return [{ is_reader: state !== 'writer' } as Row]
    if (text === FAKE_TOPOLOGY_QUERY)
      return [...addresses.entries()].map(([key, a]) => {
        const s = states.get(key)
        return { ...a, role: s === 'writer' ? 'writer' : s === 'reader' ? 'reader' : 'unknown' } as Row
      })
    return [{} as Row]
  }

  const factory: ConnectionFactory = {
    classify,
    connect(request: ConnectRequest): Promise<DbConnection> {
      const { host, purpose, timeoutMs } = request
      connects.push({ host: hostKey(host), purpose, at: runtime.now() })
      const state = stateOf(host)
      if (state === 'down') return Promise.reject(refused(host))
      if (state === 'busy') return Promise.reject(tooManyClients())
      const acceptMs = state === 'silent' ? Number.POSITIVE_INFINITY : delayOf(host).connectMs
      // A silent host sends nothing: the silence limit ends the wait before the whole timeout.
      const limitMs =
        state === 'silent' && request.silenceTimeoutMs
          ? Math.min(timeoutMs, request.silenceTimeoutMs)
          : timeoutMs
      return wait(
        acceptMs,
        limitMs,
        () => {
          // The host may have gone down while we were connecting.
          if (stateOf(host) === 'down') throw refused(host)
          const conn = connection(host)
          open.add(conn)
          return conn as DbConnection
        },
        () => new ConnectTimeoutError(host.host, host.port),
      )
    },
  }

  const dialect: Dialect = {
    name: 'pg',
    async readTopology(conn) {
      return conn.query<HostInfo>(FAKE_TOPOLOGY_QUERY)
    },
  }

  return {
    factory,
    dialect,
    set(host, state) {
      states.set(hostKey(host), state)
      addresses.set(hostKey(host), { host: host.host, port: host.port })
      if (state === 'down')
        for (const c of [...open])
          if (hostKey(c.host) === hostKey(host)) c.breakWith(lost(host, 'terminated'))
    },
    state: stateOf,
    delays(host, d) {
      delays.set(hostKey(host), { ...delayOf(host), ...d })
    },
    connects,
    queries,
    openConnections: (host) => [...open].filter((c) => !host || hostKey(c.host) === hostKey(host)).length,
  }
}

function refused(host: HostAddress): Error {
  return Object.assign(
    connectionError('ECONNREFUSED', `connect ECONNREFUSED ${hostKey(host)}`, host.host, host.port),
    {
      syscall: 'connect',
    },
  )
}

/** The server's own refusal: it answered, so it is up. */
function tooManyClients(): Error {
  return Object.assign(new Error('sorry, too many clients already'), { code: '53300', severity: 'FATAL' })
}

function lost(host: HostAddress, why: string): Error {
  return connectionError('CONNECTION_CLOSED', `${why} (${hostKey(host)})`, host.host, host.port)
}
