/**
 * The errors postgres-ha adds to those of postgres.js. Each has a stable `code` to branch on and
 * keeps what caused it as `cause`. Ordinary SQL errors (a `PostgresError` with a SQLSTATE) pass
 * through unchanged; these are only for what high availability changes.
 *
 * @module
 */

/** Stable codes of postgres-ha's own errors. */
export type HaErrorCode =
  | 'FAILOVER_SUCCESS'
  | 'FAILOVER_FAILED'
  | 'TRANSACTION_RESOLUTION_UNKNOWN'
  | 'INVALID_OPTION'
  | 'CONNECTION_ENDED'
  | 'CONNECT_TIMEOUT'
  | 'QUERY_TIMEOUT'
  | 'MISSING_DEPENDENCY'
  | 'CREDENTIALS_UNAVAILABLE'
  | 'NO_READER_AVAILABLE'
  | 'NO_WRITER_AVAILABLE'
  | 'CONNECTION_DROPPED'

/**
 * Base class of every postgres-ha error.
 *
 * @example
 * ```ts
 * try { await sql`select 1` } catch (e) { if (e instanceof HaError) console.log(e.code) }
 * ```
 */
export class HaError extends Error {
  /** Stable machine-readable code; never changes between versions. */
  readonly code: HaErrorCode

  /** Creates an error with a stable `code`; `options.cause` keeps what caused it. */
  constructor(code: HaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/**
 * The connection was lost and postgres-ha has switched to a healthy host. The statement that failed
 * was sent but its fate is unknown outside a transaction it is safe to run again; re-run it.
 *
 * @example
 * ```ts
 * try { await sql`update jobs set done = true where id = ${id}` }
 * catch (e) { if (e instanceof FailoverSuccessError) await sql`update jobs set done = true where id = ${id}` }
 * ```
 */
export class FailoverSuccessError extends HaError {
  /** The host the failed statement was sent to (`host:port`). */
  readonly fromHost: string | undefined
  /** The host now in use (`host:port`). */
  readonly toHost: string

  /** Creates the error; `options.cause` keeps what caused it. */
  constructor(fromHost: string | undefined, toHost: string, options?: { cause?: unknown }) {
    super(
      'FAILOVER_SUCCESS',
      `The connection to ${fromHost ?? 'the database'} was lost and postgres-ha switched to ${toHost}. ` +
        'The statement may or may not have run there; re-run it if it is safe to do so.',
      options,
    )
    this.fromHost = fromHost
    this.toHost = toHost
  }
}

/**
 * The connection was lost inside a transaction. Whether the transaction committed is unknown;
 * postgres-ha never retries it for you. Check your data, then decide whether to run it again.
 *
 * @example
 * ```ts
 * try { await sql.begin(tx => transfer(tx)) }
 * catch (e) { if (e instanceof TransactionResolutionUnknownError) await reconcile() }
 * ```
 */
export class TransactionResolutionUnknownError extends HaError {
  /** The host the transaction ran on (`host:port`). */
  readonly fromHost: string | undefined
  /** The host now in use, when failover found one (`host:port`). */
  readonly toHost: string | undefined

  /** Creates the error; `options.cause` keeps what caused it. */
  constructor(fromHost: string | undefined, toHost: string | undefined, options?: { cause?: unknown }) {
    super(
      'TRANSACTION_RESOLUTION_UNKNOWN',
      `The connection to ${fromHost ?? 'the database'} was lost during a transaction; whether it committed is unknown. ` +
        (toHost ? `postgres-ha switched to ${toHost}. ` : '') +
        'Check the data before running the transaction again.',
      options,
    )
    this.fromHost = fromHost
    this.toHost = toHost
  }
}

/**
 * No usable host was found within `failoverTimeoutMs`. When `mayHaveRun` is false the statement
 * provably never reached a server; when it is true it was sent before its connection was lost
 * and may have run there. (A transaction whose connection was lost gets
 * {@link TransactionResolutionUnknownError} instead, with this error as `cause`.)
 *
 * @example
 * ```ts
 * catch (e) {
 *   if (e instanceof FailoverFailedError) alertOnCall(e.message, { checkData: e.mayHaveRun })
 * }
 * ```
 */
export class FailoverFailedError extends HaError {
  /** How long failover searched before giving up, in milliseconds. */
  readonly elapsedMs: number
  /** True when the statement was sent before the connection was lost: it may have run. */
  readonly mayHaveRun: boolean

  /** Creates the error; `elapsedMs` is how long failover searched. */
  constructor(message: string, elapsedMs: number, options?: { cause?: unknown; mayHaveRun?: boolean }) {
    super('FAILOVER_FAILED', message, options)
    this.elapsedMs = elapsedMs
    this.mayHaveRun = options?.mayHaveRun ?? false
  }
}

/**
 * An option has a value postgres-ha cannot use. The message names the option, the value received
 * (secrets masked) and what would be valid.
 *
 * @example
 * ```ts
 * postgresHa({ failoverTimeoutMs: -1 }) // throws InvalidOptionError: failoverTimeoutMs ...
 * ```
 */
export class InvalidOptionError extends HaError {
  /** The option at fault, as the user spelled it. */
  readonly option: string

  /** Creates the error; `options.cause` keeps what caused it. */
  constructor(option: string, message: string, options?: { cause?: unknown }) {
    super('INVALID_OPTION', message, options)
    this.option = option
  }
}

/**
 * A plugin needs an optional package that is not installed (for example `@aws-sdk/rds-signer`
 * for `iam`). The message names the package to install.
 */
export class MissingDependencyError extends HaError {
  /** The npm package to install. */
  readonly packageName: string

  /** Creates the error; `options.cause` keeps what caused it. */
  constructor(packageName: string, plugin: string, options?: { cause?: unknown }) {
    super(
      'MISSING_DEPENDENCY',
      `The ${plugin} plugin needs the package ${packageName}, which is not installed. ` +
        `Install it (npm install ${packageName}) or remove "${plugin}" from the plugins option.`,
      options,
    )
    this.packageName = packageName
  }
}

/**
 * Work reached the core after `sql.end()`. The postgres.js `sql` rejects such statements itself
 * with postgres.js's own `CONNECTION_ENDED`; this is the core's driver-agnostic equivalent, with
 * the same `code`.
 */
export class ClientEndedError extends HaError {
  /** Creates the error. */
  constructor() {
    super('CONNECTION_ENDED', 'This postgres-ha client has been ended with sql.end(); create a new one.')
  }
}

/**
 * One of postgres-ha's own statements (a topology read, a probe) took longer than its timeout;
 * its connection was aborted. (User statements have no client-side timeout: use PostgreSQL's
 * `statement_timeout`.)
 */
export class QueryTimeoutError extends HaError {
  /** The limit that was exceeded, in milliseconds. */
  readonly timeoutMs: number

  /** Creates the error; `options.cause` keeps what caused it. */
  constructor(timeoutMs: number, options?: { cause?: unknown }) {
    super('QUERY_TIMEOUT', `The statement did not finish within ${timeoutMs} ms.`, options)
    this.timeoutMs = timeoutMs
  }
}

/**
 * No connection to a host was ready within the connect timeout, counting the connect plugins
 * (credentials) as well as the driver. Shaped like postgres.js's own `CONNECT_TIMEOUT` error
 * (same `code`, message `write CONNECT_TIMEOUT host:port`, `address`, `port`), which it stands
 * for where the deadline is postgres-ha's.
 *
 * @example
 * ```ts
 * try { await sql`select 1` } catch (e) { if (e.code === 'CONNECT_TIMEOUT') retryLater() }
 * ```
 */
export class ConnectTimeoutError extends HaError {
  /** `CONNECT_TIMEOUT`, as postgres.js sets it. */
  readonly errno = 'CONNECT_TIMEOUT'
  /** The host that did not answer in time. */
  readonly address: string
  /** Its port. */
  readonly port: number

  /** Creates the error for `host:port`; `options.cause` keeps what caused it. */
  constructor(host: string, port: number, options?: { cause?: unknown }) {
    super('CONNECT_TIMEOUT', `write CONNECT_TIMEOUT ${host}:${port}`, options)
    this.address = host
    this.port = port
  }
}

/**
 * No credentials could be produced for a connection: signing an IAM token or reading a Secrets
 * Manager secret failed (no AWS credentials, access denied, throttling, network), or the secret has
 * no usable user name and password. Nothing is wrong with the database host, so this never starts
 * a failover or marks the host down; `credentialsUnavailable` is the mark drivers classify it by.
 *
 * @example
 * ```ts
 * try { await sql`select 1` } catch (e) { if (e instanceof CredentialsUnavailableError) alertOps(e.message) }
 * ```
 */
export class CredentialsUnavailableError extends HaError {
  /** The host the connection was for (`host:port`). */
  readonly host: string
  /** Always true: the mark drivers classify this error by (an authentication problem, not a host failure). */
  readonly credentialsUnavailable = true

  /** Creates the error; `options.cause` keeps what caused it. */
  constructor(host: string, reason: string, options?: { cause?: unknown }) {
    super('CREDENTIALS_UNAVAILABLE', `No credentials for ${host}: ${reason}`, options)
    this.host = host
  }
}

/**
 * A read for the readers found none that is up, known to the topology and within
 * `maxReplicaLagMs`, and `readerFallback` is `'error'` (or `target_session_attrs` is `standby` /
 * `read-only`, which libpq also refuses to satisfy with a primary). Nothing was sent.
 *
 * @example
 * ```ts
 * try { await sql.ha.reader`select * from reports` }
 * catch (e) { if (e instanceof NoReaderAvailableError) return cachedReports() }
 * ```
 */
export class NoReaderAvailableError extends HaError {
  /** Creates the error; `reason` says why every reader was left out. */
  constructor(reason: string, options?: { cause?: unknown }) {
    super('NO_READER_AVAILABLE', `No reader available: ${reason}.`, options)
  }
}

/**
 * `target_session_attrs=read-write` and the writer's sessions start read-only
 * (`default_transaction_read_only` is on for this user or database): as libpq, postgres-ha does not
 * use it for writes. Nothing was sent; no failover starts, since no other host can be the writer.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof NoWriterAvailableError) alertOps(e.message) }
 * ```
 */
export class NoWriterAvailableError extends HaError {
  /** Creates the error; `reason` says why the writer does not qualify. */
  constructor(reason: string, options?: { cause?: unknown }) {
    super('NO_WRITER_AVAILABLE', `No writer available: ${reason}.`, options)
  }
}

/**
 * postgres-ha closed the connection a statement ran on, for the reason in the message: host
 * monitoring declared the host down (it stopped answering), or the writer moved and the old
 * writer's connections were closed. Whether the statement ran there is unknown. With the
 * `failover` plugin enabled, callers see `FailoverSuccessError` or
 * `TransactionResolutionUnknownError` instead; this is what they see without it.
 *
 * @example
 * ```ts
 * try { await sql`select 1` } catch (e) { if (e instanceof ConnectionDroppedError) console.warn(e.message) }
 * ```
 */
export class ConnectionDroppedError extends HaError {
  /** The host whose connections were dropped (`host:port`). */
  readonly host: string
  /** Why postgres-ha dropped them. */
  readonly reason: string

  /** Creates the error; `reason` says why the host's connections were dropped. */
  constructor(host: string, reason: string, options?: { cause?: unknown }) {
    super(
      'CONNECTION_DROPPED',
      `postgres-ha closed the connection to ${host}: ${reason}. The statement may or may not have run.`,
      options,
    )
    this.host = host
    this.reason = reason
  }
}

/**
 * The postgres-ha error behind `error`, looking through `cause` chains: ORMs wrap driver errors
 * (Drizzle throws its own `DrizzleQueryError` with ours as `cause`).
 *
 * @example
 * ```ts
 * try { await db.insert(users).values(row) }
 * catch (e) { if (haErrorOf(e) instanceof FailoverSuccessError) await db.insert(users).values(row) }
 * ```
 */
export function haErrorOf(error: unknown): HaError | undefined {
  for (let e = error, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++)
    if (e instanceof HaError) return e
  return undefined
}
