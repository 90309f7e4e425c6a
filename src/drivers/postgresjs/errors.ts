/**
 * The connection errors this driver raises itself, shaped like postgres.js's own.
 *
 * @module
 */

/** An error with a `code`, shaped like the connection errors postgres.js raises itself. */
export function connectionError(code: string, message: string, host?: string, port?: number): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code, errno: code, address: host, port })
}
