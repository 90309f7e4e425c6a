/**
 * The connection errors this driver raises itself, shaped like postgres.js's own.
 *
 * @module
 */

import { socketPath } from './socket-path.ts'

/** An error with a `code`, shaped like the connection errors postgres.js raises itself. */
export function connectionError(code: string, message: string, host?: string, port?: number): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code, errno: code, address: host, port })
}

/**
 * The error postgres.js itself raises for a connection event (its `Errors.connection`): message
 * `write <code> <host:port>` (or the socket path), `code` and `errno` the code, `address` and `port`.
 * Used where postgres-ha stands in for postgres.js (a connect timeout of ours, a statement after
 * `end()`), so that code written against postgres.js sees exactly what it expects.
 */
export function postgresJsError(code: string, host: string, port: number): Error {
  // postgres.js names a Unix-domain socket by its file (its `path` option), also for a directory host.
  const path = socketPath(host, port)
  const error = Object.assign(
    new Error(`write ${code} ${path ?? `${host}:${port}`}`),
    { code, errno: code, address: path ?? host },
    path ? {} : { port },
  )
  Error.captureStackTrace?.(error, postgresJsError)
  return error
}
