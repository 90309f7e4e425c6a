/**
 * Parses the user's postgres.js arguments once, with postgres.js itself, into the options every
 * per-host instance is made from. The password is taken out of the options object and kept in a
 * closure so that nothing printing `sql.options` can reveal it.
 *
 * @module
 */
import postgres from 'postgres'
import type { HostAddress } from '../../core/host.ts'

/** A password as postgres.js accepts it: a string or a function returning one (IAM tokens, rotation). */
export type PasswordSource = string | (() => string | Promise<string>) | undefined

/** The user's connection settings, parsed once. */
export interface ParsedConnection {
  /**
   * The parsed postgres.js options exposed as `sql.options`. Every per-host instance shares its
   * `parsers`, `serializers`, `transform` and `parameters` objects (Drizzle writes into the first
   * two after wrapping the client). `pass` is masked; the real one is in {@link password}.
   */
  readonly options: postgres.ParsedOptions
  /** A postgres.js instance on these options that never connects; it makes helpers and fragments. */
  readonly base: postgres.Sql
  /** The hosts of the connection string or options, in order (`host1:port1,host2:port2`). */
  readonly hosts: readonly HostAddress[]
  /** The user to authenticate as. */
  readonly user: string
  /** Whether the password is a function (called for every connection, and may fail). */
  readonly passwordIsFunction: boolean
  /** Resolves the configured password (calls a password function each time). */
  password(): Promise<string | undefined>
}

const inspectSymbol = Symbol.for('nodejs.util.inspect.custom')
const denoInspectSymbol = Symbol.for('Deno.customInspect')
const MASK = '***'

/**
 * Parses a postgres.js URL and/or options object exactly as postgres.js does.
 *
 * @example
 * ```ts
 * const parsed = parseConnection('postgres://app:secret@db1:5432,db2:5432/app', { max: 5 })
 * parsed.hosts // [{ host: 'db1', port: 5432 }, { host: 'db2', port: 5432 }]
 * ```
 */
export function parseConnection(
  url?: string | postgres.Options<Record<string, postgres.PostgresType>>,
  options?: postgres.Options<Record<string, postgres.PostgresType>>,
): ParsedConnection {
  // postgres.js writes into the object it is given (`no_prepare` sets `prepare`): give it a copy.
  const base = (typeof url === 'string'
    ? postgres(url, { ...options })
    : postgres({ ...(url ?? options) })) as unknown as postgres.Sql
  const parsed = base.options as postgres.ParsedOptions & { pass: unknown }
  const secret = parsed.pass as unknown as PasswordSource
  maskOptions(parsed)
  const hosts = parsed.host.map((host, i) => ({
    host,
    port: Number(parsed.port[i] ?? parsed.port[0] ?? 5432),
  }))
  return {
    options: parsed,
    base,
    hosts,
    user: parsed.user,
    passwordIsFunction: typeof secret === 'function',
    async password() {
      return typeof secret === 'function' ? await secret() : secret || undefined
    },
  }
}

/** Hides the password of a parsed options object from enumeration, JSON and inspection. */
export function maskOptions(options: object): void {
  Object.defineProperty(options, 'pass', {
    value: null,
    enumerable: false,
    writable: true,
    configurable: true,
  })
  const view = () => ({ ...options, pass: MASK })
  Object.defineProperty(options, inspectSymbol, {
    value: (_depth: number, opts: unknown, inspect?: (v: unknown, o: unknown) => string) =>
      inspect ? inspect(view(), opts) : view(),
    enumerable: false,
    configurable: true,
  })
  Object.defineProperty(options, denoInspectSymbol, {
    value: (inspect: (v: unknown, o?: unknown) => string, opts: unknown) => inspect(view(), opts),
    enumerable: false,
    configurable: true,
  })
}
