/**
 * Sockets we open ourselves for postgres.js (its `socket` option), so that every connection to a
 * host can be counted and destroyed at once. postgres.js's own `end({ timeout: 0 })` only
 * half-closes a socket, which keeps the process alive when the peer is black-holed. With `ssl` on
 * we negotiate TLS here too (see `tls.ts`) and postgres.js gets the finished TLS socket.
 *
 * @module
 */
import { createConnection, type Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { startTimer } from '../../runtime/mod.ts'
import { connectionError } from './errors.ts'
import { closeWith, finalServerError } from './last-words.ts'
import { socketPath } from './socket-path.ts'
import { negotiateTls, type TlsSettings } from './tls.ts'

export { connectionError } from './errors.ts'

/** How long a socket we half-closed may wait for the peer's FIN before we destroy it. */
const HALF_CLOSE_GRACE_MS = 1000
const CANCEL_REQUEST_BYTES = 16

/** The live sockets of one host (or of one dedicated connection); see {@link openSocket}. */
export interface SocketSet {
  /** TCP sockets; with TLS, the TCP socket under the TLS socket postgres.js uses. */
  readonly sockets: Set<Socket>
  /** Called when a socket of the set was opened. */
  onSocketOpen?: ((socket: Socket) => void) | undefined
  /** Called after a socket of the set closed, for whatever reason. */
  onSocketClose?: ((socket: Socket) => void) | undefined
}

type Addressed = Socket & { host?: string; port?: number }

/** The TLS socket running over a tracked TCP socket: what {@link destroySockets} destroys. */
const secured = new WeakMap<Socket, Socket>()

/**
 * Opens the connection to a host: the user's postgres.js `socket` function (an SSH tunnel, a
 * proxy, Cloudflare's sockets) in place of a TCP or Unix-domain socket of ours. It may return a
 * socket still connecting, or a promise; whatever it throws fails the connection with that value.
 */
export type SocketConnector = (host: string, port: number) => Socket | Promise<Socket>

/**
 * A socket for postgres.js to `host:port`, tracked in every set of `sets` until it closes.
 *
 * Without `tls`, a TCP socket returned while still connecting (postgres.js attaches its listeners
 * first and buffers its first write). With `tls`, a promise of the TLS socket once the SSLRequest
 * and the handshake are done (within `timeoutMs`). The promise never rejects: a failed negotiation
 * gives a socket that fails with that error (see {@link failedSocket}).
 */
export function openSocket(
  host: string,
  port: number,
  sets: readonly SocketSet[],
  tls: TlsSettings | undefined,
  timeoutMs: number,
  connector?: SocketConnector,
): Socket | Promise<Socket> {
  if (!connector) return secure(tcp(host, port), host, port, sets, tls, timeoutMs)
  let opened: Socket | Promise<Socket>
  try {
    opened = connector(host, port)
  } catch (error) {
    return failedSocket(error, host, port)
  }
  return Promise.resolve(opened).then(
    (socket) => {
      const addressed = socket as Addressed
      // postgres.js reads these for error messages.
      addressed.host ??= host
      addressed.port ??= port
      return secure(addressed, host, port, sets, tls, timeoutMs)
    },
    (error: unknown) => failedSocket(error, host, port),
  )
}

/** Tracks `raw` in `sets` and, with `tls`, secures it (see {@link openSocket}). */
function secure(
  raw: Addressed,
  host: string,
  port: number,
  sets: readonly SocketSet[],
  tls: TlsSettings | undefined,
  timeoutMs: number,
): Socket | Promise<Socket> {
  for (const set of sets) {
    set.sockets.add(raw)
    set.onSocketOpen?.(raw)
  }
  const untrack = () => {
    for (const set of sets) {
      set.sockets.delete(raw)
      set.onSocketClose?.(raw)
    }
  }
  if (!tls) {
    guard(raw, raw, untrack)
    return raw
  }
  // Never handed to postgres.js (unless the server declined TLS): only its late errors need a home.
  raw.on('error', noop)
  raw.once('close', untrack)
  return negotiateTls(raw, tls, host, port, timeoutMs).then(
    (socket) => {
      if (socket === raw) {
        raw.removeListener('close', untrack)
        guard(raw, raw, untrack)
        return raw
      }
      secured.set(raw, socket)
      ;(socket as Addressed).host = host
      ;(socket as Addressed).port = port
      guard(socket, raw, undefined)
      return socket
    },
    (error: unknown) => failedSocket(error, host, port),
  )
}

/**
 * A socket that fails with `error` as soon as postgres.js listens to it: what our `socket`
 * function returns when it cannot give a connection. postgres.js would hand a rejection to the
 * waiting query too, but would then keep that connection slot "connecting" forever.
 */
export function failedSocket(error: unknown, host: string, port: number): Socket {
  // postgres.js hands a reservation what failed as it is, and wraps anything but an object into an
  // Error for a statement ('wat' becomes an Error 'wat'); a falsy value cannot fail a stream.
  const socket = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      callback()
    },
  }) as unknown as Addressed
  socket.host = host
  socket.port = port
  socket.on('error', noop)
  holdErrorsUntilClose(socket)
  // A close without an error would make postgres.js reconnect at once.
  const reason = error ? error : new Error(String(error))
  setImmediate(() => socket.destroy(reason as Error))
  return socket
}

/** Destroys every socket of `set` at once; pending statements on them reject with `error`. */
export function destroySockets(set: SocketSet, error?: Error): void {
  for (const socket of [...set.sockets]) (secured.get(socket) ?? socket).destroy(error)
}

function tcp(host: string, port: number): Addressed {
  const path = socketPath(host, port)
  const socket = (path ? createConnection({ path }) : createConnection({ host, port })) as Addressed
  // postgres.js reads these for error messages.
  socket.host = host
  socket.port = port
  return socket
}

/**
 * Makes `socket` (the one postgres.js uses; `raw` is the TCP socket under it) safe to give to
 * postgres.js. Two things postgres.js does not do on its own: a peer that accepts and closes
 * without a byte (a proxy whose upstream is gone) becomes an `ECONNRESET` error instead of a
 * silent close that postgres.js would reconnect forever (plain sockets, given `untrack`, their
 * close listener: a TLS server already answered); and a socket we half-closed is destroyed after
 * a second if the peer never answers. No error of it can ever go unhandled.
 */
function guard(socket: Socket, raw: Addressed, untrack: (() => void) | undefined): void {
  const read = raw.bytesRead
  const written = raw.bytesWritten
  const onEnd = () => {
    // A cancel request (exactly 16 bytes) is answered by a close without a byte; that is no error.
    // A user's socket may be any duplex stream, without byte counts: nothing to tell then.
    if (typeof read !== 'number') return
    if (raw.bytesRead === read && raw.bytesWritten - written !== CANCEL_REQUEST_BYTES) {
      const where = `${raw.host}:${raw.port}`
      socket.destroy(
        connectionError('ECONNRESET', `${where} closed the connection before it started`, raw.host, raw.port),
      )
    }
  }
  const onFinish = () => startTimer(() => socket.destroy(), HALF_CLOSE_GRACE_MS)
  const attach = () => {
    if (untrack) {
      socket.once('end', onEnd)
      socket.once('close', untrack)
    }
    socket.once('finish', onFinish)
    // A late error with nobody listening would crash the process.
    socket.on('error', noop)
  }
  attach()
  holdErrorsUntilClose(socket)
  // postgres.js calls removeAllListeners() when a socket closed; keep ours.
  const removeAll = socket.removeAllListeners
  socket.removeAllListeners = function (this: Socket, ...args: [string | symbol] | []) {
    removeAll.apply(this, args as [string | symbol])
    if (args.length === 0) attach()
    return this
  } as Socket['removeAllListeners']
}

const noop = () => {}

let closingError: unknown

/**
 * While postgres.js handles a socket's close (synchronously, inside its emit): the error that
 * socket failed with, if any — what postgres.js rejected the statements in flight with.
 */
export function socketClosingError(): unknown {
  return closingError
}

/**
 * Delivers a socket's 'error' together with its 'close', and only after the writes postgres.js
 * queued for it (a `setImmediate`) ran. Two postgres.js flaws make both necessary:
 * - it rejects the statements of a connection on 'error' but, when 'close' follows a tick later,
 *   not those queued on the dying connection in between: they would wait forever;
 * - its 'close' handler cancels a queued write without forgetting it, after which that connection
 *   never writes again (every reconnect times out). Node runs immediates before 'close' callbacks;
 *   Bun does not, so 'close' waits two rounds of immediates here.
 */
function holdErrorsUntilClose(socket: Socket): void {
  const emit = socket.emit as (this: Socket, event: string | symbol, ...args: unknown[]) => boolean
  let held: unknown
  let holding = false
  /** The error this socket failed with, if any: what postgres.js rejected its statements with. */
  let failure: unknown
  // The last two chunks received: a FATAL error is the server's last message (see last-words.ts).
  let previous: Uint8Array | undefined
  let last: Uint8Array | undefined
  const flush = () => {
    if (!holding) return
    holding = false
    emit.call(socket, 'error', held)
  }
  // Every chunk of every statement passes here: 'data' takes a path with no rest array or spread.
  socket.emit = function (this: Socket, event: string | symbol, arg?: unknown): boolean {
    if (event === 'data') {
      previous = last
      last = arg as Uint8Array
      return emit.call(this, event, arg)
    }
    if (event === 'error') {
      if (holding) return true
      held = arg
      failure ??= arg
      holding = true
      // Node always follows an error with 'close'; never hold one forever regardless.
      startTimer(flush, HALF_CLOSE_GRACE_MS)
      return true
    }
    // biome-ignore lint/complexity/noArguments: the rare events keep every argument as given.
    const args = Array.prototype.slice.call(arguments, 1) as unknown[]
    if (event === 'close') {
      setImmediate(() =>
        setImmediate(() => {
          flush()
          const outer = closingError
          closingError = failure
          try {
            closeWith(finalServerError(previous, last), () => emit.call(socket, 'close', ...args))
          } finally {
            closingError = outer
          }
        }),
      )
      return true
    }
    return emit.apply(this, [event, ...args])
  } as Socket['emit']
}

/** Resolves once `socket` (still connecting, or a TLS socket already secured) is connected; rejects with its error. */
export function connected(pending: Socket | Promise<Socket>): Promise<Socket> {
  return Promise.resolve(pending).then(
    (socket) =>
      new Promise<Socket>((resolve, reject) => {
        if (!socket.connecting && !socket.destroyed) return resolve(socket)
        const onConnect = () => {
          socket.removeListener('close', onClose)
          socket.removeListener('error', onError)
          resolve(socket)
        }
        const onError = (error: unknown) => {
          socket.removeListener('connect', onConnect)
          socket.removeListener('close', onClose)
          reject(error)
        }
        const onClose = () => {
          socket.removeListener('connect', onConnect)
          socket.removeListener('error', onError)
          reject(connectionError('CONNECTION_CLOSED', 'closed while connecting', undefined, undefined))
        }
        socket.once('connect', onConnect)
        socket.once('error', onError)
        socket.once('close', onClose)
      }),
  )
}
