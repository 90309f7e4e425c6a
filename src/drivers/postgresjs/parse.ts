/**
 * Parses the user's postgres.js arguments once, with postgres.js itself, into the options every
 * per-host instance is made from. The password is taken out of the options object and kept in a
 * closure so that nothing printing `sql.options` can reveal it.
 *
 * @module
 */
import type { Socket } from 'node:net'
import postgres from 'postgres'
import type { HostAddress } from '../../core/host.ts'
import type { SocketConnector } from './socket.ts'
import { socketPath } from './socket-path.ts'

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
  readonly hosts: readonly [HostAddress, ...HostAddress[]]
  /** The user to authenticate as. */
  readonly user: string
  /** Whether the password is a function (called for every connection, and may fail). */
  readonly passwordIsFunction: boolean
  /** Resolves the configured password (calls a password function each time). */
  password(): Promise<string | undefined>
  /** The user's postgres.js `socket` function, called per host with that host and port. */
  readonly connector: SocketConnector | undefined
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
  const given = { ...(typeof url === 'string' ? options : (url ?? options)) }
  const base = (typeof url === 'string'
    ? postgres(socketDirectoryUrl(url, given), given)
    : postgres(given)) as unknown as postgres.Sql
  const parsed = base.options as postgres.ParsedOptions & { pass: unknown; socket?: unknown }
  const secret = parsed.pass as unknown as PasswordSource
  maskOptions(parsed)
  // A `path` of its own (not derived from a host directory) is the one host: the socket file.
  const ownPath = typeof parsed.path === 'string' && !parsed.host.some((h) => h.startsWith('/'))
  const list = ownPath
    ? [{ host: parsed.path as unknown as string, port: Number(parsed.port[0] ?? 5432) }]
    : parsed.host.map((host, i) => ({
        host,
        port: Number(parsed.port[i] ?? parsed.port[0] ?? 5432),
      }))
  // postgres.js always gives at least one host (localhost by default).
  const hosts: ParsedConnection['hosts'] = [list[0] ?? { host: 'localhost', port: 5432 }, ...list.slice(1)]
  const userSocket = parsed.socket as ((o: object) => unknown) | undefined
  return {
    options: parsed,
    base,
    hosts,
    user: parsed.user,
    passwordIsFunction: typeof secret === 'function',
    async password() {
      return typeof secret === 'function' ? await secret() : secret || undefined
    },
    // As postgres.js calls it (with its options), but for the host and port postgres-ha chose.
    connector:
      typeof userSocket === 'function'
        ? (host, port) =>
            userSocket({ ...parsed, host: [host], port: [port], path: socketPath(host, port) ?? false }) as
              | Socket
              | Promise<Socket>
        : undefined,
  }
}

/**
 * libpq's `?host=/directory` (a Unix-domain socket directory in the query string, the URL's own
 * host empty or a placeholder, `&port=` beside it): postgres.js would send `host` and `port` to
 * the server as settings and fail. They become the `host` and `port` options instead; explicit
 * options still win.
 */
function socketDirectoryUrl(url: string, options: Record<string, unknown>): string {
  const query = url.indexOf('?')
  if (query < 0) return url
  const params = new URLSearchParams(url.slice(query + 1))
  const dir = params.get('host')
  if (!dir?.startsWith('/')) return url
  params.delete('host')
  options.host ??= dir
  // libpq's `port` parameter goes with it (postgres.js would send it as a setting too).
  const port = params.get('port')
  params.delete('port')
  if (port) options.port ??= Number(port)
  const rest = params.toString()
  // postgres://user@/db has no host for URL parsing: any placeholder does, the option wins.
  const head = url.slice(0, query).replace(/^(\w+:\/\/(?:[^@/]*@)?)(?=[/]|$)/, '$1localhost')
  return rest ? `${head}?${rest}` : head
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
