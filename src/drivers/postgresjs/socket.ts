/**
 * Sockets we open ourselves for postgres.js (its `socket` option), so that every connection to a
 * host can be counted and destroyed at once. postgres.js's own `end({ timeout: 0 })` only
 * half-closes a socket, which keeps the process alive when the peer is black-holed.
 *
 * @module
 */
import { createConnection, type Socket } from 'node:net'
import { startTimer } from '../../runtime/mod.ts'

/** How long a socket we half-closed may wait for the peer's FIN before we destroy it. */
const HALF_CLOSE_GRACE_MS = 1000
const CANCEL_REQUEST_BYTES = 16

/** The live sockets of one host (or of one dedicated connection); see {@link openTrackedSocket}. */
export interface SocketSet {
  readonly sockets: Set<Socket>
  /** Called when a socket of the set was opened. */
  onSocketOpen?: ((socket: Socket) => void) | undefined
  /** Called after a socket of the set closed, for whatever reason. */
  onSocketClose?: ((socket: Socket) => void) | undefined
}

/** An error with a `code`, shaped like the connection errors postgres.js raises itself. */
export function connectionError(code: string, message: string, host?: string, port?: number): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code, errno: code, address: host, port })
}

/**
 * Opens a TCP socket to `host:port` and tracks it in every set of `sets` until it closes.
 *
 * Returned while still connecting (postgres.js attaches its listeners first and buffers its first
 * write). Two things postgres.js does not do on its own: a peer that accepts and closes without a
 * byte (a proxy whose upstream is gone) becomes an `ECONNRESET` error instead of a silent close
 * that postgres.js would reconnect forever; and a socket we half-closed is destroyed after a
 * second if the peer never answers.
 */
export function openTrackedSocket(host: string, port: number, sets: readonly SocketSet[]): Socket {
  const socket = createConnection({ host, port })
  // postgres.js reads these for TLS server names and error messages.
  ;(socket as Socket & { host?: string; port?: number }).host = host
  ;(socket as Socket & { host?: string; port?: number }).port = port
  for (const set of sets) {
    set.sockets.add(socket)
    set.onSocketOpen?.(socket)
  }
  const onEnd = () => {
    // A cancel request (exactly 16 bytes) is answered by a close without a byte; that is no error.
    if (socket.bytesRead === 0 && socket.bytesWritten !== CANCEL_REQUEST_BYTES)
      socket.destroy(
        connectionError('ECONNRESET', `${host}:${port} closed the connection before it started`, host, port),
      )
  }
  const onFinish = () => startTimer(() => socket.destroy(), HALF_CLOSE_GRACE_MS)
  const onClose = () => {
    for (const set of sets) {
      set.sockets.delete(socket)
      set.onSocketClose?.(socket)
    }
  }
  const attach = () => {
    socket.once('end', onEnd)
    socket.once('finish', onFinish)
    socket.once('close', onClose)
    // A late error with nobody listening would crash the process.
    socket.on('error', noop)
  }
  attach()
  holdErrorsUntilClose(socket)
  // postgres.js calls removeAllListeners() when it upgrades to TLS and when a socket closed; keep ours.
  const removeAll = socket.removeAllListeners
  socket.removeAllListeners = function (this: Socket, ...args: [string | symbol] | []) {
    removeAll.apply(this, args as [string | symbol])
    if (args.length === 0) attach()
    return this
  } as Socket['removeAllListeners']
  return socket
}

const noop = () => {}

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
  const flush = () => {
    if (!holding) return
    holding = false
    emit.call(socket, 'error', held)
  }
  socket.emit = function (this: Socket, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'error') {
      if (holding) return true
      held = args[0]
      holding = true
      // Node always follows an error with 'close'; never hold one forever regardless.
      startTimer(flush, HALF_CLOSE_GRACE_MS)
      return true
    }
    if (event === 'close') {
      setImmediate(() =>
        setImmediate(() => {
          flush()
          emit.call(socket, 'close', ...args)
        }),
      )
      return true
    }
    return emit.call(this, event, ...args)
  } as Socket['emit']
}

/** Destroys every socket of `set` at once; pending statements on them reject with `error`. */
export function destroySockets(set: SocketSet, error?: Error): void {
  for (const socket of [...set.sockets]) socket.destroy(error)
}
