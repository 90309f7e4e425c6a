/**
 * The PostgreSQL front end of an IAM-checking endpoint: what RDS does between accepting a
 * connection for a role granted `rds_iam` and handing it to the database.
 *
 * It terminates TLS (RDS refuses IAM logins without it), reads the StartupMessage, asks for a
 * cleartext password (AuthenticationCleartextPassword, as RDS does), verifies that password as
 * an RDS IAM token, and either refuses with the error RDS sends
 * (`FATAL 28000 PAM authentication failed for user "..."`) or logs in upstream with the role's
 * real password and joins the two connections. Roles that are not IAM roles pass through to the
 * server's own password authentication, as on RDS.
 *
 * @example
 * ```ts
 * const handshake = createIamHandshake({ tls: labTlsCertificate(), upstreamPassword: (u) => passwords.get(u) })
 * net.createServer((client) => {
 *   handshake(client, () => connectTcp(5432, '127.0.0.1')).catch((e) => log(e.message))
 * }).listen(5432, '127.0.0.2')
 * ```
 *
 * @module
 */
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import { authenticateUpstream, UpstreamAuthError } from './pg-upstream-auth.ts'
import {
  authentication,
  CANCEL_REQUEST,
  type ErrorFields,
  errorResponse,
  GSSENC_REQUEST,
  PgReader,
  PROTOCOL_3,
  parseStartupParams,
  SSL_REQUEST,
} from './pg-wire.ts'
import { verifyRdsIamToken } from './rds-iam-token.ts'
import { LAB_AWS_CREDENTIALS, type LabAwsCredentials } from './sigv4.ts'

/** A per-connection startup hook for the lab's proxy; resolves with the client-side stream once joined. */
export type IamHandshake = (
  client: Socket,
  connectUpstream: () => Promise<Socket>,
  /** Where to read the connection's addresses from when `client` is not the TCP socket itself. */
  addresses?: Pick<Socket, 'localAddress' | 'localPort' | 'remoteAddress'>,
) => Promise<Duplex>

/** Options of {@link createIamHandshake}. */
export interface IamEndpointOptions {
  /** Certificate and key the endpoint presents (see `labTlsCertificate()`). */
  readonly tls: { readonly key: string | Buffer; readonly cert: string | Buffer }
  /**
   * The real password of a role that logs in with IAM, or `undefined` for a role without the
   * `rds_iam` grant (it then authenticates with the server itself).
   */
  readonly upstreamPassword: (user: string) => string | undefined | Promise<string | undefined>
  /** The region the endpoint is in (default `us-east-1`). */
  readonly region?: string
  /** The IAM identities that may sign tokens (default the lab's test credentials). */
  readonly credentials?: LabAwsCredentials | readonly LabAwsCredentials[]
  /**
   * The `host:port` names a token may be signed for (default: the address and port the client
   * connected to, i.e. this instance endpoint). Add the cluster endpoint's name to accept it too.
   */
  readonly endpoints?: (
    client: Pick<Socket, 'localAddress' | 'localPort'>,
  ) => readonly { host: string; port: number }[]
  /** Accept IAM logins without TLS (RDS never does; default `false`). */
  readonly allowPlaintext?: boolean
  /** Epoch milliseconds now (default `Date.now`); tests move it to expire tokens. */
  readonly now?: () => number
  /** Give up on a client that has not finished the handshake by then (default 10 000 ms). */
  readonly handshakeTimeoutMs?: number
  /** Join client and upstream with `pipe()` (default `true`); `false` leaves that to the caller. */
  readonly pipe?: boolean
  /** Called for every refused IAM login with the reason RDS would log (`pam_authenticate failed`). */
  readonly onRefused?: (refusal: IamRefusedError) => void
}

/** An IAM login was refused; the client got RDS's error, this carries the reason RDS would log. */
export class IamRefusedError extends Error {
  constructor(
    readonly user: string,
    readonly reason: string,
  ) {
    super(`IAM login refused for user "${user}": ${reason}`)
    this.name = 'IamRefusedError'
  }
}

const bare = (address: string | undefined) => (address ?? '').replace(/^::ffff:/, '')

/** Builds the per-connection handshake of an IAM endpoint. */
export function createIamHandshake(options: IamEndpointOptions): IamHandshake {
  const region = options.region ?? 'us-east-1'
  const credentials = options.credentials ?? LAB_AWS_CREDENTIALS
  const endpoints =
    options.endpoints ??
    ((client: Pick<Socket, 'localAddress' | 'localPort'>) => [
      { host: bare(client.localAddress), port: client.localPort ?? 0 },
    ])
  const now = options.now ?? Date.now
  const timeoutMs = options.handshakeTimeoutMs ?? 10_000

  return async function iamHandshake(client, connectUpstream, addresses = client) {
    let upstream: Socket | undefined
    let side: Duplex = client
    const timer = setTimeout(() => client.destroy(new Error('IAM handshake timed out')), timeoutMs)
    timer.unref?.()
    const fatal = (fields: ErrorFields) =>
      new Promise<void>((resolve) => {
        side.end(errorResponse({ S: 'FATAL', V: 'FATAL', ...fields }), () => resolve())
        setTimeout(resolve, 200).unref?.()
      })
    try {
      let reader = new PgReader(client)
      let first = await reader.startup()
      for (
        let round = 0;
        round < 2 && (first.code === SSL_REQUEST || first.code === GSSENC_REQUEST);
        round++
      ) {
        if (reader.pending) throw new Error('received unencrypted data after SSLRequest')
        if (first.code === GSSENC_REQUEST || side !== client) {
          side.write('N')
        } else {
          reader.detach()
          client.write('S')
          const secure = new TLSSocket(client, {
            isServer: true,
            key: options.tls.key,
            cert: options.tls.cert,
          })
          await new Promise<void>((resolve, reject) => {
            secure.once('secure', resolve)
            secure.once('error', reject)
          })
          side = secure
          reader = new PgReader(secure)
        }
        first = await reader.startup()
      }
      const encrypted = side !== client

      if (first.code === CANCEL_REQUEST) {
        upstream = await connectUpstream()
        upstream.end(first.raw)
        side.end()
        return side
      }
      if (first.code !== PROTOCOL_3) {
        await fatal({
          C: '0A000',
          M: `unsupported frontend protocol ${first.code >> 16}.${first.code & 0xffff}`,
        })
        throw new Error('unsupported frontend protocol')
      }
      const params = parseStartupParams(first.body)
      const user = params.get('user') ?? ''
      const password = await options.upstreamPassword(user)

      if (password === undefined) {
        // Not an IAM role: the server authenticates it with its own password, as on RDS.
        upstream = await connectUpstream()
        upstream.write(first.raw)
        reader.detach()
        join(side, upstream, options.pipe ?? true)
        return side
      }

      const refuse = async (reason: string, fields: ErrorFields) => {
        // Reported before the client can see the error, so observers never lag behind it.
        const refusal = new IamRefusedError(user, reason)
        options.onRefused?.(refusal)
        await fatal(fields)
        throw refusal
      }
      if (!encrypted && !options.allowPlaintext) {
        const database = params.get('database') ?? user
        await refuse('IAM authentication requires TLS', {
          C: '28000',
          M: `pg_hba.conf rejects connection for host "${bare(addresses.remoteAddress)}", user "${user}", database "${database}", no encryption`,
          F: 'auth.c',
          R: 'ClientAuthentication',
        })
      }
      side.write(authentication(3))
      const reply = await reader.message()
      if (reply.type !== 'p') throw new Error(`expected a password message, got ${reply.type}`)
      const token = reply.body.toString('utf8').replace(/\0$/, '')
      const verdict = verifyRdsIamToken({
        token,
        user,
        region,
        credentials,
        endpoints: endpoints(addresses),
        now: now(),
      })
      if (!verdict.ok)
        await refuse(verdict.reason, {
          C: '28000',
          M: `PAM authentication failed for user "${user}"`,
          F: 'auth.c',
          L: '326',
          R: 'auth_failed',
        })

      upstream = await connectUpstream()
      const upstreamReader = new PgReader(upstream)
      let postAuth: Buffer
      try {
        postAuth = await authenticateUpstream(upstream, upstreamReader, params, password!)
      } catch (e) {
        if (e instanceof UpstreamAuthError && e.raw) side.end(e.raw)
        throw e
      }
      side.write(postAuth)
      upstreamReader.detach()
      reader.detach()
      join(side, upstream, options.pipe ?? true)
      return side
    } catch (e) {
      upstream?.destroy()
      if (!(e instanceof IamRefusedError)) side.destroy()
      else setTimeout(() => side.destroy(), 1000).unref?.()
      throw e
    } finally {
      clearTimeout(timer)
    }
  }
}

function join(side: Duplex, upstream: Socket, pipe: boolean): void {
  const closeBoth = () => {
    side.destroy()
    upstream.destroy()
  }
  side.on('error', closeBoth).on('close', closeBoth)
  upstream.on('error', closeBoth).on('close', closeBoth)
  if (!pipe) return
  side.pipe(upstream)
  upstream.pipe(side)
  side.resume()
  upstream.resume()
}
