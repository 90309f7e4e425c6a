/**
 * Logging a pool connection in ourselves, before postgres.js gets its socket. A pool connection
 * whose credentials come from the connect plugins must tell them at connect time whether the
 * server accepted them, so that a refused IAM token or a rotated secret can be replaced and the
 * login tried again on a new socket — postgres.js, authenticating on its own, would hand the
 * refusal to the statement that was waiting. So we send the StartupMessage and answer the
 * server's authentication request (trust, cleartext, MD5 or SCRAM-SHA-256, as postgres.js does),
 * keep what the server sent after AuthenticationOk up to ReadyForQuery, and replay it to
 * postgres.js as the answer to its own StartupMessage. Nothing else changes on the wire.
 *
 * @module
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import postgres from 'postgres'
import { startTimer, stopTimer } from '../../runtime/mod.ts'
import { connectionError, postgresJsError } from './errors.ts'
import type { SaltedPasswords } from './salted-passwords.ts'

/** What one login sends. */
export interface LoginParams {
  readonly user: string
  readonly password: string | undefined
  readonly database: string
  /** Further startup parameters (postgres.js's `connection` option), sent as postgres.js sends them. */
  readonly parameters: Readonly<Record<string, unknown>>
}

/** A logged-in socket and what postgres.js must read as the answer to its StartupMessage. */
export interface LoggedIn {
  readonly socket: Socket
  readonly replay: Buffer
}

const AUTH_OK = Buffer.from([82, 0, 0, 0, 8, 0, 0, 0, 0])
const CANCEL_CODE = 80877102

/** The StartupMessage postgres.js would send (protocol 3.0, `client_encoding` UTF8, `connection` entries). */
export function startupMessage(params: LoginParams): Buffer {
  const entries = Object.entries({
    user: params.user,
    database: params.database,
    client_encoding: 'UTF8',
    ...params.parameters,
  }).filter(([, v]) => v)
  const body = Buffer.from(`${entries.map(([k, v]) => `${k}\0${v}`).join('\0')}\0\0`)
  const head = Buffer.alloc(8)
  head.writeInt32BE(8 + body.length, 0)
  head.writeInt32BE(196608, 4)
  return Buffer.concat([head, body])
}

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5)
  head.write(type, 0, 'latin1')
  head.writeInt32BE(4 + body.length, 1)
  return Buffer.concat([head, body])
}

const cstring = (s: string) => Buffer.from(`${s}\0`)

/** The server's ErrorResponse as a postgres.js `PostgresError` (the error postgres.js itself would raise). */
function serverError(body: Buffer): Error {
  const names: Record<string, string> = {
    S: 'severity_local',
    V: 'severity',
    C: 'code',
    M: 'message',
    D: 'detail',
    H: 'hint',
    W: 'where',
    F: 'file',
    L: 'line',
    R: 'routine',
  }
  const fields: Record<string, string> = {}
  let i = 0
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1)
    const name = names[String.fromCharCode(body[i]!)]
    if (name) fields[name] = body.toString('utf8', i + 1, end)
    i = end + 1
  }
  return new postgres.PostgresError(fields as unknown as string)
}

/** The SCRAM-SHA-256 client (RFC 5802/7677, no channel binding, as postgres.js). */
function scram(password: string, salted: SaltedPasswords) {
  const nonce = randomBytes(18).toString('base64')
  const clientFirstBare = `n=*,r=${nonce}`
  let expectedServerSignature = ''
  const hmac = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest()
  return {
    first(): Buffer {
      const data = Buffer.from(`n,,${clientFirstBare}`)
      const len = Buffer.alloc(4)
      len.writeInt32BE(data.length)
      return message('p', Buffer.concat([cstring('SCRAM-SHA-256'), len, data]))
    },
    final(serverFirst: string): Buffer {
      const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]))
      if (!attrs.r?.startsWith(nonce) || !attrs.s || !attrs.i)
        throw connectionError('SASL_SIGNATURE_MISMATCH', 'the server sent an invalid SCRAM challenge')
      const saltedPassword = salted.get(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i))
      const clientKey = hmac(saltedPassword, 'Client Key')
      const storedKey = createHash('sha256').update(clientKey).digest()
      const withoutProof = `c=biws,r=${attrs.r}`
      const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`
      const signature = hmac(storedKey, authMessage)
      const proof = Buffer.from(clientKey.map((b, k) => b ^ signature[k]!))
      expectedServerSignature = hmac(hmac(saltedPassword, 'Server Key'), authMessage).toString('base64')
      return message('p', Buffer.from(`${withoutProof},p=${proof.toString('base64')}`))
    },
    verify(serverFinal: string): void {
      if (serverFinal.split(',')[0]?.slice(2) !== expectedServerSignature)
        throw connectionError('SASL_SIGNATURE_MISMATCH', 'The server did not return the correct signature')
    },
  }
}

const md5 = (text: string | Buffer) => createHash('md5').update(text).digest('hex')

/**
 * Sends the StartupMessage on `socket` (connected, TLS done) and authenticates. Resolves once the
 * server sent ReadyForQuery; rejects with the server's error (a `PostgresError`: 28P01, 28000,
 * 3D000, 53300...) or `CONNECT_TIMEOUT` after `timeoutMs`, destroying the socket then. The socket
 * is left paused with no listener of ours. SCRAM's salted password comes from `salted`, the
 * client's cache: a reconnect storm derives it once.
 */
export function login(
  socket: Socket,
  params: LoginParams,
  timeoutMs: number,
  salted: SaltedPasswords,
): Promise<LoggedIn> {
  return new Promise<LoggedIn>((resolve, reject) => {
    let buffer: Buffer = Buffer.alloc(0)
    let afterOk: Buffer[] | undefined
    let sasl: ReturnType<typeof scram> | undefined
    let done = false
    const where = `${params.user}@${(socket as { host?: string }).host ?? ''}`
    const host = (socket as { host?: string }).host
    const port = (socket as { port?: number }).port
    const finish = (error?: unknown) => {
      if (done) return
      done = true
      stopTimer(timer)
      socket.removeListener('data', onData)
      socket.removeListener('error', onError)
      socket.removeListener('close', onClose)
      if (error) {
        socket.destroy()
        reject(error)
        return
      }
      socket.pause()
      resolve({ socket, replay: Buffer.concat([AUTH_OK, ...afterOk!, buffer]) })
    }
    // postgres.js's own error for a connect that did not finish in time, whichever step stalled:
    // the caller's connect timeout runs beside this one, and either may fire first.
    const timer = startTimer(
      () => finish(postgresJsError('CONNECT_TIMEOUT', host ?? '', port ?? 0)),
      timeoutMs,
    )
    const onError = (error: unknown) => finish(error)
    const onClose = () =>
      finish(connectionError('CONNECTION_CLOSED', `${host}:${port}: closed during login`, host, port))
    const password = () => {
      if (params.password === undefined)
        throw connectionError(
          'AUTH_PASSWORD_MISSING',
          `the server asked ${where} for a password and none is set`,
        )
      return params.password
    }
    const onAuth = (body: Buffer) => {
      const kind = body.readInt32BE(0)
      if (kind === 0) afterOk = []
      else if (kind === 3) socket.write(message('p', cstring(password())))
      else if (kind === 5)
        socket.write(
          message(
            'p',
            cstring(
              `md5${md5(Buffer.concat([Buffer.from(md5(password() + params.user)), body.subarray(4, 8)]))}`,
            ),
          ),
        )
      else if (kind === 10) {
        sasl = scram(password(), salted)
        socket.write(sasl.first())
      } else if (kind === 11 && sasl) socket.write(sasl.final(body.toString('utf8', 4)))
      else if (kind === 12 && sasl) sasl.verify(body.toString('utf8', 4))
      else
        throw connectionError('AUTH_TYPE_NOT_IMPLEMENTED', `authentication method ${kind} is not supported`)
    }
    const onData = (chunk: Buffer) => {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk
      try {
        while (!done && buffer.length >= 5) {
          const length = buffer.readInt32BE(1)
          if (buffer.length < length + 1) return
          const whole = buffer.subarray(0, length + 1)
          const type = String.fromCharCode(buffer[0]!)
          buffer = buffer.subarray(length + 1)
          if (type === 'E') return finish(serverError(whole.subarray(5)))
          if (afterOk) {
            afterOk.push(whole)
            if (type === 'Z') return finish()
          } else if (type === 'R') onAuth(whole.subarray(5))
          else if (type !== 'N' && type !== 'v')
            throw connectionError('PROTOCOL_ERROR', `unexpected message ${type} during login`)
        }
      } catch (error) {
        finish(error)
      }
    }
    socket.on('data', onData)
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.resume()
    socket.write(startupMessage(params))
  })
}

/**
 * Gives a logged-in socket to postgres.js: its StartupMessage (its first write) is answered with
 * `replay` instead of reaching the server. If that first write is a CancelRequest instead (postgres.js
 * opens cancel connections through the same `socket` function), `cancel` sends it on a fresh
 * connection and this one is closed once that is done, which is what postgres.js waits for.
 */
export function handOver(loggedIn: LoggedIn, cancel: (request: Buffer) => Promise<void>): Socket {
  const { socket, replay } = loggedIn
  const original = socket.write
  socket.write = function (this: Socket, chunk: unknown, ...rest: unknown[]): boolean {
    socket.write = original
    const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined
    const bytes = Buffer.from(chunk as Uint8Array)
    if (bytes.length === 16 && bytes.readInt32BE(4) === CANCEL_CODE) {
      // Terminate (X) this session, after the cancel was delivered.
      void cancel(bytes)
        .catch(() => {})
        .then(() => socket.end(Buffer.from([88, 0, 0, 0, 4])))
    } else
      setImmediate(() => {
        socket.emit('data', replay)
        socket.resume()
      })
    if (callback) queueMicrotask(callback)
    return true
  } as Socket['write']
  return socket
}
