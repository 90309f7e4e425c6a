/**
 * Logs in to a PostgreSQL server on behalf of a client whose own credentials were checked
 * elsewhere (an IAM token), with the role's real password, by whatever method the server asks:
 * SCRAM-SHA-256, md5 or cleartext. Returns the server's post-authentication messages so the
 * caller can forward them to its client unchanged.
 *
 * @module
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Duplex } from 'node:stream'
import {
  cstring,
  message,
  type PgMessage,
  type PgReader,
  parseErrorFields,
  startupMessage,
} from './pg-wire.ts'

/** The server refused the login or the startup; `raw` is its ErrorResponse, to forward as is. */
export class UpstreamAuthError extends Error {
  constructor(
    message: string,
    readonly raw: Buffer | undefined,
    readonly sqlState?: string,
  ) {
    super(message)
    this.name = 'UpstreamAuthError'
  }
}

const hmac = (key: Buffer, data: string) => createHmac('sha256', key).update(data).digest()
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest()
const md5Hex = (data: string | Buffer) => createHash('md5').update(data).digest('hex')

/**
 * Sends the StartupMessage, answers the server's authentication request with `password`, and
 * reads through to the first ReadyForQuery. Resolves with every message from AuthenticationOk
 * to ReadyForQuery, concatenated (ParameterStatus, BackendKeyData, ...); rejects with an
 * {@link UpstreamAuthError} carrying the server's ErrorResponse if it refuses.
 *
 * @example
 * ```ts
 * const upstream = net.connect(5432, '127.0.0.1')
 * const reader = new PgReader(upstream)
 * const postAuth = await authenticateUpstream(upstream, reader, new Map([['user', 'app'], ['database', 'app']]), realPassword)
 * client.write(postAuth)
 * ```
 */
export async function authenticateUpstream(
  socket: Duplex,
  reader: PgReader,
  params: Map<string, string>,
  password: string,
): Promise<Buffer> {
  const user = params.get('user') ?? ''
  socket.write(startupMessage(params))
  let scram: { clientFirstBare: string; nonce: string; serverSignature?: Buffer } | undefined
  const refuse = (m: PgMessage): never => {
    const fields = parseErrorFields(m.body)
    throw new UpstreamAuthError(`upstream refused: ${fields.C} ${fields.M}`, m.raw, fields.C)
  }
  for (;;) {
    const m = await reader.message()
    if (m.type === 'E') refuse(m)
    if (m.type !== 'R')
      throw new UpstreamAuthError(`unexpected message ${m.type} during authentication`, undefined)
    const code = m.body.readInt32BE(0)
    if (code === 0) {
      if (scram && !scram.serverSignature)
        throw new UpstreamAuthError('SCRAM exchange ended early', undefined)
      return collectUntilReady(reader, [m.raw])
    }
    if (code === 3) socket.write(message('p', cstring(password)))
    else if (code === 5) {
      const salt = m.body.subarray(4, 8)
      const inner = md5Hex(password + user)
      socket.write(message('p', cstring(`md5${md5Hex(Buffer.concat([Buffer.from(inner), salt]))}`)))
    } else if (code === 10) {
      const mechanisms = m.body.subarray(4).toString('utf8').split('\0')
      if (!mechanisms.includes('SCRAM-SHA-256'))
        throw new UpstreamAuthError(`no supported SASL mechanism in ${mechanisms.join(',')}`, undefined)
      const nonce = randomBytes(18).toString('base64')
      const clientFirstBare = `n=*,r=${nonce}`
      const first = Buffer.from(`n,,${clientFirstBare}`)
      const len = Buffer.alloc(4)
      len.writeInt32BE(first.length, 0)
      socket.write(message('p', Buffer.concat([cstring('SCRAM-SHA-256'), len, first])))
      scram = { clientFirstBare, nonce }
    } else if (code === 11 && scram) {
      const serverFirst = m.body.subarray(4).toString('utf8')
      const attrs = new Map(serverFirst.split(',').map((a) => [a[0], a.slice(2)] as const))
      const serverNonce = attrs.get('r') ?? ''
      if (!serverNonce.startsWith(scram.nonce))
        throw new UpstreamAuthError('SCRAM server nonce mismatch', undefined)
      const salted = pbkdf2Sync(
        password,
        Buffer.from(attrs.get('s') ?? '', 'base64'),
        Number(attrs.get('i')),
        32,
        'sha256',
      )
      const clientKey = hmac(salted, 'Client Key')
      const withoutProof = `c=biws,r=${serverNonce}`
      const authMessage = `${scram.clientFirstBare},${serverFirst},${withoutProof}`
      const signature = hmac(sha256(clientKey), authMessage)
      const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!))
      scram.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage)
      socket.write(message('p', `${withoutProof},p=${proof.toString('base64')}`))
    } else if (code === 12 && scram?.serverSignature) {
      const verifier = Buffer.from(m.body.subarray(4).toString('utf8').replace(/^v=/, ''), 'base64')
      if (verifier.length !== 32 || !timingSafeEqual(verifier, scram.serverSignature))
        throw new UpstreamAuthError('SCRAM server signature does not verify', undefined)
    } else throw new UpstreamAuthError(`unsupported authentication request ${code}`, undefined)
  }
}

async function collectUntilReady(reader: PgReader, messages: Buffer[]): Promise<Buffer> {
  for (;;) {
    const m = await reader.message()
    messages.push(m.raw)
    if (m.type === 'E') {
      const fields = parseErrorFields(m.body)
      throw new UpstreamAuthError(`upstream refused: ${fields.C} ${fields.M}`, m.raw, fields.C)
    }
    if (m.type === 'Z') return Buffer.concat(messages)
  }
}
