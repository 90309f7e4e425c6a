/**
 * What a postgres.js (or socket) error means for high availability.
 *
 * @module
 */
import type { ErrorKind } from '../../core/connection-factory.ts'

const KINDS: Record<string, ErrorKind> = {
  // No connection could be opened; nothing was sent.
  ECONNREFUSED: 'connect-failed',
  CONNECT_TIMEOUT: 'connect-failed',
  EHOSTUNREACH: 'connect-failed',
  ENETUNREACH: 'connect-failed',
  EHOSTDOWN: 'connect-failed',
  ENOTFOUND: 'connect-failed',
  EAI_AGAIN: 'connect-failed',
  EADDRNOTAVAIL: 'connect-failed',
  '57P03': 'connect-failed', // cannot_connect_now (starting up, shutting down, in recovery)
  '08001': 'connect-failed', // sqlclient_unable_to_establish_sqlconnection
  '08004': 'connect-failed', // sqlserver_rejected_establishment_of_sqlconnection
  // An open connection broke.
  CONNECTION_CLOSED: 'connection-lost',
  CONNECTION_ENDED: 'connection-lost',
  CONNECTION_DESTROYED: 'connection-lost',
  CONNECTION_DROPPED: 'connection-lost', // postgres-ha dropped it (ConnectionDroppedError)
  ECONNRESET: 'connection-lost',
  ECONNABORTED: 'connection-lost',
  EPIPE: 'connection-lost',
  ETIMEDOUT: 'connection-lost',
  ERR_SOCKET_CLOSED: 'connection-lost',
  ERR_STREAM_DESTROYED: 'connection-lost',
  QUERY_TIMEOUT: 'connection-lost', // the driver aborted the connection of a statement that hung
  '57P01': 'connection-lost', // admin_shutdown
  '57P02': 'connection-lost', // crash_shutdown
  '57P05': 'connection-lost', // idle_session_timeout
  '08000': 'connection-lost',
  '08003': 'connection-lost',
  '08006': 'connection-lost',
  '08007': 'connection-lost',
  // The host is not (or no longer) the writer.
  '25006': 'read-only',
  // The server refused the credentials.
  '28P01': 'auth-failed',
  '28000': 'auth-failed',
  SASL_SIGNATURE_MISMATCH: 'auth-failed',
}

/**
 * Classifies any error postgres.js, the socket layer or this driver raises.
 *
 * @example
 * ```ts
 * try { await sql`select 1` } catch (e) { if (classify(e) === 'connection-lost') reconnect() }
 * ```
 */
export function classify(error: unknown): ErrorKind {
  if (error === null || typeof error !== 'object') return 'other'
  // The AWS plugins got no credentials (signing, Secrets Manager): the host is fine, failing over
  // cannot help, and the caller must see that error itself.
  if ((error as { credentialsUnavailable?: unknown }).credentialsUnavailable === true) return 'auth-failed'
  const { code, syscall } = error as { code?: unknown; syscall?: unknown }
  // A Unix-domain socket file that is not there: the server is down (ENOENT from anything else,
  // sql.file() for one, is no connection problem).
  if (code === 'ENOENT') return syscall === 'connect' ? 'connect-failed' : 'other'
  const kind = typeof code === 'string' ? KINDS[code] : undefined
  if (kind === undefined) return 'other'
  // The server sent this error and kept the session (severity ERROR, not FATAL or PANIC): a
  // PL/pgSQL `raise`, or dblink / postgres_fdw relaying another server's error. The connection
  // and the host are fine; it is the statement's own error.
  if ((kind === 'connection-lost' || kind === 'connect-failed') && keptSession(error)) return 'other'
  // Any socket error raised while connecting (ETIMEDOUT, ECONNRESET...) means nothing was sent.
  if (kind === 'connection-lost' && syscall === 'connect') return 'connect-failed'
  return kind
}

/** Severities after which PostgreSQL closes the session. */
const SESSION_ENDING = new Set(['FATAL', 'PANIC'])

/** Whether `error` is an error message from the server that left the session open. */
function keptSession(error: object): boolean {
  const { severity, severity_local } = error as { severity?: unknown; severity_local?: unknown }
  const level = typeof severity === 'string' ? severity : severity_local
  return typeof level === 'string' && !SESSION_ENDING.has(level)
}
