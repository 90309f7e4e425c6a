/**
 * TLS negotiation done by us rather than by postgres.js. Given our `socket` option, postgres.js
 * would upgrade the socket itself and then strip every listener from the TLS socket when it
 * closes, so an error Node forwards from the TCP socket afterwards crashes the process. We
 * negotiate exactly as postgres.js's `secure()` would, hand it the finished TLS socket and run its
 * instances with `ssl: false`.
 *
 * @module
 */
import { isIP, type Socket } from 'node:net'
import { type ConnectionOptions, checkServerIdentity, type TLSSocket, connect as tlsConnect } from 'node:tls'
import { startTimer, stopTimer } from '../../runtime/mod.ts'
import { connectionError, postgresJsError } from './errors.ts'

/** How to secure a connection, resolved once from the postgres.js options `ssl` and `sslnegotiation`. */
export interface TlsSettings {
  /** The postgres.js `ssl` value: `'require'`, `'allow'`, `'prefer'`, `'verify-full'`, `true` or TLS options. */
  readonly ssl: unknown
  /** `sslnegotiation: 'direct'`: TLS at once with ALPN `postgresql`, no SSLRequest. */
  readonly direct: boolean
}

/** `undefined` when postgres.js would not use TLS (any falsy `ssl`). */
export function tlsSettings(options: { ssl?: unknown; sslnegotiation?: unknown }): TlsSettings | undefined {
  return options.ssl ? { ssl: options.ssl, direct: options.sslnegotiation === 'direct' } : undefined
}

/** Int32 length 8, int32 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])
const S = 83
const N = 78

/**
 * Secures `raw` (connecting or connected, tracked by the caller) as postgres.js would: SSLRequest
 * and its one-byte answer, then a TLS handshake on the same socket. Resolves with the TLS socket
 * once the handshake finished, or with `raw` itself when the server declined and `ssl` is
 * `'prefer'`. Rejects with the error that ended the negotiation (a declined `'require'`, a failed
 * handshake, a closed socket, `CONNECT_TIMEOUT` after `timeoutMs` unless 0); `raw` is destroyed then.
 */
export function negotiateTls(
  raw: Socket,
  settings: TlsSettings,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    let secured: TLSSocket | undefined
    let done = false
    const finish = (error: unknown, socket?: Socket) => {
      if (done) return
      done = true
      stopTimer(timer)
      raw.removeListener('data', onAnswer)
      raw.removeListener('error', finish)
      raw.removeListener('close', onClose)
      secured?.removeListener('secureConnect', onSecure)
      secured?.removeListener('error', finish)
      secured?.removeListener('close', onClose)
      if (socket) return resolve(socket)
      // Whatever either socket still emits has nobody else to go to.
      secured?.on('error', noop).destroy()
      raw.on('error', noop).destroy()
      reject(error)
    }
    const onClose = () =>
      finish(
        connectionError(
          'ECONNRESET',
          `${host}:${port} closed the connection during TLS negotiation`,
          host,
          port,
        ),
      )
    const onSecure = () => finish(undefined, secured)
    const onAnswer = (answer: Buffer) => {
      raw.removeListener('data', onAnswer)
      // Bytes beyond the one-byte answer were not sent by the server under TLS (CVE-2021-23222).
      if (answer.length !== 1 || (answer[0] !== S && answer[0] !== N))
        return finish(
          connectionError(
            'SSL_NEGOTIATION_FAILED',
            `${host}:${port} gave an invalid answer to SSLRequest`,
            host,
            port,
          ),
        )
      if (answer[0] === S) return startHandshake()
      if (settings.ssl === 'prefer') return finish(undefined, raw)
      finish(
        connectionError(
          'SSL_NOT_SUPPORTED',
          `${host}:${port} does not support SSL, but ssl is ${describe(settings.ssl)}`,
          host,
          port,
        ),
      )
    }
    const startHandshake = () => {
      // postgres.js's secure(), option for option (SNI only for a name, never for an address).
      const options: ConnectionOptions = { socket: raw, servername: isIP(host) ? undefined : host }
      if (settings.direct) options.ALPNProtocols = ['postgresql']
      const { ssl } = settings
      if (ssl === 'require' || ssl === 'allow' || ssl === 'prefer') options.rejectUnauthorized = false
      else if (typeof ssl === 'object') Object.assign(options, ssl)
      options.checkServerIdentity = identityCheck(options, host)
      secured = tlsConnect(options)
      secured.once('secureConnect', onSecure)
      secured.on('error', finish)
      secured.once('close', onClose)
    }
    const timer =
      timeoutMs > 0
        ? startTimer(
            // postgres.js's own error for a connect that did not finish in time (see login.ts).
            () => finish(postgresJsError('CONNECT_TIMEOUT', host, port)),
            timeoutMs,
          )
        : undefined
    raw.on('error', finish)
    raw.once('close', onClose)
    if (settings.direct) return startHandshake()
    raw.on('data', onAnswer)
    raw.write(SSL_REQUEST)
  })
}

const noop = () => {}

/**
 * The certificate check of one connection: against the host it really goes to (or the user's own
 * `servername`, which overrides it as in postgres.js). Given a socket and no `servername` (an IP
 * address), Node and Deno check the certificate against 'localhost' instead: with one `ssl`
 * object for every host, an instance endpoint (given as an address, or learned from the
 * topology) would be accepted with any certificate valid for localhost. A user's
 * `checkServerIdentity` is called with the same name.
 */
function identityCheck(options: ConnectionOptions, host: string): ConnectionOptions['checkServerIdentity'] {
  const name = typeof options.servername === 'string' && options.servername ? options.servername : host
  const check = options.checkServerIdentity ?? checkServerIdentity
  return (_name, cert) => check(name, cert)
}

function describe(ssl: unknown): string {
  return typeof ssl === 'string' ? `'${ssl}'` : typeof ssl === 'object' ? 'a TLS options object' : String(ssl)
}
