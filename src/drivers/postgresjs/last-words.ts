/**
 * The server's last words on a connection: the FATAL error PostgreSQL sends right before it ends a
 * session (a recovery conflict on a standby, `57P04` database dropped, `57P01` terminated...).
 *
 * postgres.js keeps the ErrorResponse of a running statement until the ReadyForQuery that follows
 * it, and a FATAL one is followed by the close instead: the statement rejects with a bare
 * `CONNECTION_CLOSED` and the server's reason is lost (raised later, stale, on the first statement of
 * the reconnected connection; see query.ts). So the socket remembers its last chunks (a reference
 * per chunk, nothing parsed on the way), and when it closes the final message is read back: a
 * FATAL or PANIC ErrorResponse that ends exactly where the stream ended. While postgres.js handles
 * that close (synchronously, inside the emit), {@link closingWords} gives it to the statements it
 * rejects.
 *
 * @module
 */
import postgres from 'postgres'

/** The fields of an ErrorResponse, named as postgres.js names them on its `PostgresError`. */
const FIELDS: Record<number, string> = {
  83: 'severity_local', // S
  86: 'severity', // V
  67: 'code', // C
  77: 'message', // M
  68: 'detail', // D
  72: 'hint', // H
  80: 'position', // P
  112: 'internal_position', // p
  113: 'internal_query', // q
  87: 'where', // W
  115: 'schema_name', // s
  116: 'table_name', // t
  99: 'column_name', // c
  100: 'data type_name', // d
  110: 'constraint_name', // n
  70: 'file', // F
  76: 'line', // L
  82: 'routine', // R
}

/** An ErrorResponse is small; the search looks no further back than this. */
const MAX_MESSAGE = 4096

/** The fields of a server error, as postgres.js's `PostgresError` carries them. */
export type ServerErrorFields = Readonly<Record<string, string>>

/**
 * The fields of the FATAL or PANIC ErrorResponse that ends the bytes `previous` + `last`;
 * `undefined` when the stream ends otherwise.
 *
 * @example
 * ```ts
 * finalServerError(undefined, chunk)?.code // '57P04'
 * ```
 */
export function finalServerError(
  previous: Uint8Array | undefined,
  last: Uint8Array | undefined,
): ServerErrorFields | undefined {
  if (!last || last.length === 0) return undefined
  let bytes = last
  if (previous && last.length < MAX_MESSAGE) {
    const take = Math.min(previous.length, MAX_MESSAGE - last.length)
    bytes = new Uint8Array(take + last.length)
    bytes.set(previous.subarray(previous.length - take), 0)
    bytes.set(last, take)
  }
  const end = bytes.length
  // 'E', a length that reaches exactly the end, and fields closed by a final zero byte.
  for (let at = end - 6; at >= 0 && end - at <= MAX_MESSAGE; at--) {
    if (bytes[at] !== 0x45) continue
    const length =
      ((bytes[at + 1]! << 24) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 8) | bytes[at + 4]!) >>> 0
    if (at + 1 + length !== end || bytes[end - 1] !== 0) continue
    const fields = parseFields(bytes.subarray(at + 5, end - 1))
    if (!fields) continue
    const severity = fields.severity ?? fields.severity_local
    return severity === 'FATAL' || severity === 'PANIC' ? fields : undefined
  }
  return undefined
}

/** The zero-terminated fields of an ErrorResponse body; `undefined` if it is not one. */
function parseFields(body: Uint8Array): Record<string, string> | undefined {
  const fields: Record<string, string> = {}
  const decoder = new TextDecoder()
  let at = 0
  while (at < body.length) {
    const name = FIELDS[body[at]!]
    const stop = body.indexOf(0, at + 1)
    if (stop < 0) return undefined
    if (name) fields[name] = decoder.decode(body.subarray(at + 1, stop))
    at = stop + 1
  }
  return typeof fields.code === 'string' && fields.code.length === 5 && fields.message !== undefined
    ? fields
    : undefined
}

let closing: ServerErrorFields | undefined

/**
 * Runs `emitClose` (the emit of a socket's `close`, during which postgres.js rejects that
 * connection's statements) with `words` as the server's last words.
 */
export function closeWith(words: ServerErrorFields | undefined, emitClose: () => void): void {
  const outer = closing
  closing = words
  try {
    emitClose()
  } finally {
    closing = outer
  }
}

/**
 * The last words of the socket whose close is being handled right now, if the server sent any:
 * a new postgres.js `PostgresError` per call (each statement gets its own).
 */
export function closingWords(): Error | undefined {
  return closing && (new postgres.PostgresError({ ...closing } as unknown as string) as Error)
}
