/**
 * The core's {@link ConnectionFactory} on postgres.js: one `max: 1` instance per connection, on a
 * socket of our own so that `abort()` is immediate, with a connect timeout and a per-statement
 * timeout that aborts the connection. Internal connections use postgres.js's default parsers and no
 * transform, whatever the user (or Drizzle) configured for their own queries. They log in as the
 * pools do (login.ts), so SCRAM's salted password is derived once per client, not once per probe.
 *
 * @module
 */
import type { Socket } from 'node:net'
import postgres from 'postgres'
import type {
  ConnectionFactory,
  ConnectRequest,
  DbConnection,
  StatementOptions,
} from '../../core/connection-factory.ts'
import { QueryTimeoutError } from '../../core/errors.ts'
import { startTimer, stopTimer, type TimerHandle } from '../../runtime/mod.ts'
import { classify } from './classify.ts'
import { postgresJsError } from './errors.ts'
import { handOver, login } from './login.ts'
import type { ParsedConnection } from './parse.ts'
import { createSaltedPasswords, type SaltedPasswords } from './salted-passwords.ts'
import {
  connected,
  connectionError,
  destroySockets,
  failedSocket,
  openSocket,
  type SocketSet,
} from './socket.ts'
import { tlsSettings } from './tls.ts'

/** Options of {@link createConnectionFactory}. */
export interface ConnectionFactoryOptions {
  readonly parsed: ParsedConnection
  /** The client's SCRAM salted passwords, shared with its pools. */
  readonly salted?: SaltedPasswords | undefined
}

const identityTransform = Object.freeze({
  undefined: undefined,
  column: {},
  value: {},
  row: {},
})

/**
 * Creates the connection factory of a client.
 *
 * @example
 * ```ts
 * const factory = createConnectionFactory({ parsed: parseConnection(url) })
 * const conn = await factory.connect({ host, purpose: 'probe', timeoutMs: 1000 })
 * const [row] = await conn.query<{ r: boolean }>('select pg_is_in_recovery() as r', [], { timeoutMs: 500 })
 * conn.abort()
 * ```
 */
export function createConnectionFactory(opts: ConnectionFactoryOptions): ConnectionFactory {
  const { parsed } = opts
  const salted = opts.salted ?? createSaltedPasswords()
  const o = parsed.options as unknown as Record<string, unknown>
  // Taken now, before anyone (Drizzle) rewires the user's parsers.
  const parsers = { ...(o.parsers as object) }
  const serializers = { ...(o.serializers as object) }
  const tls = tlsSettings(o)

  async function connect(request: ConnectRequest): Promise<DbConnection> {
    const { host, timeoutMs } = request
    const started = performance.now()
    const timedOut = () => postgresJsError('CONNECT_TIMEOUT', host.host, host.port)
    // Credentials the core's connect plugins resolved win over the configured ones.
    const user = request.user ?? parsed.user
    const password = request.password ?? (await parsed.password())
    const remainingMs = Math.max(1, timeoutMs - (performance.now() - started))
    // The driver's own connections (topology, monitoring, probes) never keep a process alive;
    // work a caller waits for holds the process open itself (see holdOpenUntil).
    // When the host last sent anything: the login's deadline for silence counts from there. The
    // TCP socket hears the answer to an SSLRequest; a finished TLS handshake is an answer too.
    let heardAt = performance.now()
    const heard = () => {
      heardAt = performance.now()
    }
    const listen = (socket: Socket): Socket => {
      heard()
      return socket.on('data', heard)
    }
    const sockets: SocketSet = {
      sockets: new Set(),
      onSocketOpen: (socket) => {
        socket.unref?.()
        // Once: the answer to the SSLRequest. The TLS socket takes over the TCP socket afterwards,
        // and nothing else may read from it.
        if (tls) socket.once('data', heard)
      },
    }
    let closed = false
    const sql = postgres({
      ...o,
      host: [host.host],
      port: [host.port],
      path: false,
      // TLS is negotiated in our socket function (see tls.ts).
      ssl: false,
      user,
      pass: password ?? '',
      max: 1,
      prepare: false,
      fetch_types: false,
      idle_timeout: null,
      max_lifetime: null,
      connect_timeout: remainingMs / 1000,
      backoff: 0,
      target_session_attrs: null,
      no_subscribe: true,
      onnotice: () => {},
      onnotify: undefined,
      onparameter: undefined,
      onclose: () => {
        closed = true
      },
      debug: false,
      transform: identityTransform,
      parsers,
      serializers,
      parameters: {},
      shared: { retries: 0, typeArrayMap: {} },
      socket: async (connecting?: { database?: string; connection?: Record<string, unknown> }) => {
        const pending = openSocket(host.host, host.port, [sockets], tls, remainingMs, parsed.connector)
        try {
          const socket = listen(await connected(pending))
          const loggedIn = await login(
            socket,
            {
              user,
              // As postgres.js's `pass` was: a server that asks gets an empty password and refuses it.
              password: password ?? '',
              database: connecting?.database ?? (o.database as string),
              parameters: connecting?.connection ?? (o.connection as Record<string, unknown>) ?? {},
            },
            Math.max(1, remainingMs - (performance.now() - started)),
            salted,
          )
          return handOver(loggedIn, async (request) => {
            const plain = await connected(
              openSocket(host.host, host.port, [], tls, remainingMs, parsed.connector),
            )
            await new Promise<void>((resolve) => {
              plain.once('close', () => resolve())
              plain.write(request)
            })
          })
        } catch (error) {
          // As postgres.js would have reported it: the connect's or the server's own error.
          return failedSocket(error, host.host, host.port)
        }
      },
    } as unknown as postgres.Options<Record<string, postgres.PostgresType>>)

    function abort(): void {
      closed = true
      destroySockets(sockets, connectionError('CONNECTION_DESTROYED', 'aborted', host.host, host.port))
      // postgres.js's end() does not reject today; if a version ever does, an abort must still
      // not become an unhandled rejection, and the sockets go either way.
      const destroy = () => destroySockets(sockets)
      void sql.end({ timeout: 0 }).then(destroy, destroy)
    }

    try {
      // An empty statement: connects, authenticates and costs nothing on the server.
      heardAt = performance.now()
      await withTimeout(
        sql.unsafe(''),
        remainingMs,
        // Silent or slow, the host did not let a connection open in time: postgres.js's error.
        timedOut,
        request.silenceTimeoutMs === undefined
          ? undefined
          : { ms: request.silenceTimeoutMs, heardAt: () => heardAt },
      )
    } catch (error) {
      abort()
      // postgres.js's own error (ECONNREFUSED, ENOTFOUND, CONNECT_TIMEOUT...), as its users know it.
      throw error
    }

    return {
      host,
      get closed() {
        return closed
      },
      query<Row>(text: string, params?: readonly unknown[], options?: StatementOptions): Promise<Row[]> {
        const q = sql.unsafe(text, (params ?? []) as never[]) as unknown as Promise<Row[]>
        const timeoutMs = options?.timeoutMs
        if (!timeoutMs) return q
        return withTimeout(q, timeoutMs, () => {
          abort()
          return new QueryTimeoutError(timeoutMs)
        })
      },
      async close() {
        if (closed && sockets.sockets.size === 0) return
        closed = true
        await sql.end({ timeout: 1 })
        destroySockets(sockets)
      },
      abort,
    }
  }

  return { connect, classify }
}

/** A deadline that moves with every byte the host sends. */
interface Silence {
  readonly ms: number
  heardAt(): number
}

/**
 * A check that runs this much after its due time means this process itself was stalled (a busy
 * machine, a long synchronous task): the deadline then waits `STALL_GRACE_MS` more — up to
 * `STALL_GRACES` times in a row — so the event loop reads the I/O that arrived meanwhile before
 * the host is called silent. A check on time judges at once: detection on a healthy process is
 * unchanged.
 */
const STALL_MS = 10
const STALL_GRACE_MS = 10
const STALL_GRACES = 3

/**
 * `promise`, or `onTimeout()` after `ms`; with `silence`, also `onTimeout(silence.ms)` once the
 * host has sent nothing for `silence.ms`.
 */
function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: (silentMs?: number) => Error,
  silence?: Silence,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const started = performance.now()
    let timer: TimerHandle | undefined
    let dueAt = started
    let graces = 0
    const check = () => {
      const now = performance.now()
      const expired = now - started >= ms || (silence !== undefined && now - silence.heardAt() >= silence.ms)
      if (expired && graces < STALL_GRACES && now - dueAt > STALL_MS) {
        // After a stall, timers run before the I/O that arrived meanwhile is read: an answer may
        // be waiting in the socket. A real wait (not a zero timer) lets every runtime poll it.
        graces++
        dueAt = now + STALL_GRACE_MS
        timer = startTimer(check, STALL_GRACE_MS, { keepAlive: true })
        return
      }
      if (now - started >= ms) return reject(onTimeout())
      if (silence && now - silence.heardAt() >= silence.ms) return reject(onTimeout(silence.ms))
      graces = 0
      const due = Math.min(started + ms, silence ? silence.heardAt() + silence.ms : Number.POSITIVE_INFINITY)
      dueAt = Math.max(now + 1, due)
      timer = startTimer(check, dueAt - now, { keepAlive: true })
    }
    check()
    promise.then(
      (value) => {
        stopTimer(timer)
        resolve(value)
      },
      (error) => {
        stopTimer(timer)
        reject(error)
      },
    )
  })
}
