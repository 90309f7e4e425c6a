/**
 * Just enough of the PostgreSQL wire protocol for the lab's authenticating front ends: read
 * length-prefixed messages from a socket, build the few messages they send.
 *
 * @module
 */
import type { Duplex } from 'node:stream'

/** One backend or frontend message: its type byte and its body (without the length). */
export interface PgMessage {
  readonly type: string
  readonly body: Buffer
  /** The message exactly as it was on the wire, for forwarding. */
  readonly raw: Buffer
}

/** Startup-phase request codes (the int32 after the length of an untyped first message). */
export const SSL_REQUEST = 80877103
export const GSSENC_REQUEST = 80877104
export const CANCEL_REQUEST = 80877102
export const PROTOCOL_3 = 196608

/**
 * Buffers what a socket sends and hands it out message by message. `detach()` gives any unread
 * bytes back to the socket (so a `pipe()` set up afterwards loses nothing).
 */
export class PgReader {
  private buffer: Buffer = Buffer.alloc(0)
  private waiter: (() => void) | undefined
  private failure: Error | undefined
  private readonly onData = (chunk: Buffer) => {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk
    this.wake()
  }
  private readonly onEnd = () => this.fail(new Error('the peer closed the connection'))
  private readonly onError = (e: Error) => this.fail(e)

  constructor(readonly socket: Duplex) {
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('close', this.onEnd)
    socket.on('error', this.onError)
  }

  private fail(e: Error): void {
    this.failure ??= e
    this.wake()
  }

  private wake(): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  /** Resolves with exactly `n` bytes. */
  async take(n: number): Promise<Buffer> {
    while (this.buffer.length < n) {
      if (this.failure) throw this.failure
      await new Promise<void>((resolve) => (this.waiter = resolve))
    }
    const out = this.buffer.subarray(0, n)
    this.buffer = this.buffer.subarray(n)
    return out
  }

  /** Reads an untyped startup-phase message (SSLRequest, StartupMessage, CancelRequest): its code and body. */
  async startup(): Promise<{ code: number; body: Buffer; raw: Buffer }> {
    const head = await this.take(4)
    const length = head.readInt32BE(0)
    if (length < 8 || length > 10_000) throw new Error(`invalid startup packet length ${length}`)
    const rest = await this.take(length - 4)
    return { code: rest.readInt32BE(0), body: rest.subarray(4), raw: Buffer.concat([head, rest]) }
  }

  /** Reads one typed message. */
  async message(): Promise<PgMessage> {
    const head = await this.take(5)
    const length = head.readInt32BE(1)
    if (length < 4 || length > 64 * 1024 * 1024) throw new Error(`invalid message length ${length}`)
    const body = await this.take(length - 4)
    return { type: String.fromCharCode(head[0]!), body, raw: Buffer.concat([head, body]) }
  }

  /** Whether bytes beyond what was read have arrived. */
  get pending(): number {
    return this.buffer.length
  }

  /** Stops reading and pushes unread bytes back into the socket's stream. */
  detach(): void {
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onEnd)
    this.socket.off('close', this.onEnd)
    this.socket.off('error', this.onError)
    this.socket.pause()
    if (this.buffer.length) this.socket.unshift(this.buffer)
    this.buffer = Buffer.alloc(0)
  }
}

/** Builds a typed message. */
export function message(type: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
  const head = Buffer.alloc(5)
  head.write(type, 0, 'latin1')
  head.writeInt32BE(payload.length + 4, 1)
  return Buffer.concat([head, payload])
}

/** Builds an Authentication message (`R`) with the given code and extra bytes. */
export function authentication(code: number, extra: Buffer = Buffer.alloc(0)): Buffer {
  const body = Buffer.alloc(4)
  body.writeInt32BE(code, 0)
  return message('R', Buffer.concat([body, extra]))
}

/** Builds a null-terminated string. */
export function cstring(value: string): Buffer {
  return Buffer.from(`${value}\0`, 'utf8')
}

/** Parses the key/value pairs of a StartupMessage body (after the protocol version). */
export function parseStartupParams(body: Buffer): Map<string, string> {
  const parts = body.toString('utf8').split('\0')
  const params = new Map<string, string>()
  for (let i = 0; i + 1 < parts.length && parts[i]; i += 2) params.set(parts[i]!, parts[i + 1]!)
  return params
}

/** Builds a StartupMessage (protocol 3.0) from parameters. */
export function startupMessage(params: Map<string, string>): Buffer {
  const pairs = [...params].map(([k, v]) => `${k}\0${v}\0`).join('')
  const body = Buffer.from(`${pairs}\0`, 'utf8')
  const head = Buffer.alloc(8)
  head.writeInt32BE(body.length + 8, 0)
  head.writeInt32BE(PROTOCOL_3, 4)
  return Buffer.concat([head, body])
}

/** The fields of an ErrorResponse, by their protocol codes (`S`, `V`, `C`, `M`, ...). */
export type ErrorFields = Partial<Record<'S' | 'V' | 'C' | 'M' | 'D' | 'H' | 'F' | 'L' | 'R', string>>

/** Builds an ErrorResponse (`E`). */
export function errorResponse(fields: ErrorFields): Buffer {
  const parts = Object.entries(fields).map(([code, value]) => `${code}${value}\0`)
  return message('E', `${parts.join('')}\0`)
}

/** Reads the fields of an ErrorResponse body. */
export function parseErrorFields(body: Buffer): ErrorFields {
  const fields: Record<string, string> = {}
  for (const part of body.toString('utf8').split('\0')) if (part) fields[part[0]!] = part.slice(1)
  return fields as ErrorFields
}
