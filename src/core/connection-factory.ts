/**
 * The seam between the core and a database driver. The core opens its own short-lived or
 * long-lived connections (topology reads, host probes, role checks) only through this interface,
 * so it never imports postgres.js; `src/drivers/postgresjs/` implements it.
 *
 * @module
 */
import type { HostAddress } from './host.ts'

/**
 * What an error means for high availability, whatever driver raised it.
 * - `connection-lost`: an open connection broke (reset, closed, EOF, admin shutdown 57P01-3)
 * - `connect-failed`: no connection could be opened (refused, timeout, unreachable); nothing was sent
 * - `read-only`: a write was refused because the host is not the writer (25006)
 * - `auth-failed`: the server rejected the credentials (28P01, 28000)
 * - `other`: anything else, such as an ordinary SQL error
 */
export type ErrorKind = 'connection-lost' | 'connect-failed' | 'read-only' | 'auth-failed' | 'other'

/** Why the core opens a connection; plugins may treat purposes differently. */
export type ConnectPurpose = 'user' | 'topology' | 'monitor' | 'probe'

/** A request for one connection. */
export interface ConnectRequest {
  /** The host to connect to. */
  readonly host: HostAddress
  /** Why the connection is opened. */
  readonly purpose: ConnectPurpose
  /** Give up (and reject with a `connect-failed` error) after this long. */
  readonly timeoutMs: number
  /**
   * Also give up once the host has sent nothing for this long while an answer is awaited: a
   * frozen or black-holed host is "connected and silent", while a host on a slow network keeps
   * answering each step of the login and gets up to `timeoutMs`. Default: `timeoutMs` only.
   */
  readonly silenceTimeoutMs?: number
  /** User name resolved by the connect plugins; the driver's own when absent. */
  readonly user?: string
  /** Password resolved by the connect plugins (an IAM token, a secret); the driver's own when absent. */
  readonly password?: string
}

/** Options of a single statement on a {@link DbConnection}. */
export interface StatementOptions {
  /** Reject with a `connection-lost` error and abort the connection if no answer by then. */
  readonly timeoutMs?: number
}

/**
 * One connection to one host, used by the core for its own statements.
 *
 * @example
 * ```ts
 * const conn = await factory.connect({ host, purpose: 'probe', timeoutMs: 1000 })
 * const [row] = await conn.query<{ r: boolean }>('select pg_is_in_recovery() as r')
 * conn.abort()
 * ```
 */
export interface DbConnection {
  /** The host this connection is to. */
  readonly host: HostAddress
  /** Runs one statement and returns its rows. */
  query<Row = Record<string, unknown>>(
    text: string,
    params?: readonly unknown[],
    options?: StatementOptions,
  ): Promise<Row[]>
  /** Closes gracefully; resolves once closed. Never waits longer than a second on a silent peer. */
  close(): Promise<void>
  /** Drops the connection at once, without waiting for the peer; pending statements reject. */
  abort(): void
  /** True once closed, aborted or broken. */
  readonly closed: boolean
}

/** Opens {@link DbConnection}s and tells what driver errors mean. */
export interface ConnectionFactory {
  /** Opens and authenticates a connection; rejects with a `connect-failed` or `auth-failed` error. */
  connect(request: ConnectRequest): Promise<DbConnection>
  /** Classifies any error this driver raises. */
  classify(error: unknown): ErrorKind
}
