/**
 * Logging: silent by default, through an optional user logger, with secrets masked at the source.
 *
 * @module
 */

/** Severity of a log line. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/**
 * What postgres-ha logs to. `console` fits, as do pino and winston loggers.
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { logger: console })
 * ```
 */
export interface Logger {
  /** Detail useful when investigating (topology reads, polling changes). */
  debug(message: string, fields?: Record<string, unknown>): void
  /** Normal but notable events (a failover done, a writer change). */
  info(message: string, fields?: Record<string, unknown>): void
  /** Something failed and was handled (a host down, a failover started). */
  warn(message: string, fields?: Record<string, unknown>): void
  /** Something failed and could not be handled (a failover that found no writer). */
  error(message: string, fields?: Record<string, unknown>): void
}

const SECRET_KEY = /pass(word)?|secret|token|credential|authorization|session_?key|access_?key/i

/** Replaces secret-looking values in a flat or nested record with `'***'`. */
export function maskSecrets(
  fields: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined {
  if (!fields) return fields
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_KEY.test(k)) out[k] = v === undefined || v === null || v === '' ? v : '***'
    else if (v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Error))
      out[k] = maskSecrets(v as Record<string, unknown>)
    else out[k] = v
  }
  return out
}

const noop = () => {}

/** A logger that discards everything. */
export const silentLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop })

/** Wraps a user logger so every line is masked and a throwing logger never breaks the client. */
export function safeLogger(target: Partial<Logger> | undefined): Logger {
  if (!target) return silentLogger
  const wrap =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void => {
      try {
        const fn = target[level]
        if (typeof fn === 'function') fn.call(target, `postgres-ha: ${message}`, maskSecrets(fields))
      } catch {
        // A broken logger must not take the database client down with it.
      }
    }
  return { debug: wrap('debug'), info: wrap('info'), warn: wrap('warn'), error: wrap('error') }
}
