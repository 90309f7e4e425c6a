/**
 * `parseOptions`: the options of `postgresHa()` validated in one place into one frozen,
 * fully-defaulted object. The core declares its own options here; the driver's table (checked for
 * name and type, passed to the driver untouched) and the plugins' tables come from the composition,
 * so the core names neither.
 *
 * @module
 */
import type { Clock } from '../runtime/clock.ts'
import { type Runtime, runtimeWithClock, systemRuntime } from '../runtime/runtime.ts'
import type { DialectName } from './dialect.ts'
import { InvalidOptionError } from './errors.ts'
import type { TargetRole } from './host.ts'
import { type HostPattern, parseHostPattern } from './host-pattern.ts'
import type { Logger } from './logger.ts'
import {
  boolean,
  type Check,
  describeValue,
  milliseconds,
  nonEmptyString,
  object,
  oneOf,
} from './option-checks.ts'
import { invalidOption, isSecretOption, type OptionSpec, type OptionTable } from './option-spec.ts'
import type { HaPlugin } from './plugin.ts'
import type { PluginCatalog } from './plugin-catalog.ts'

export type { DialectName }

/** How a reader is chosen when several fit. */
export type ReaderStrategy = 'random' | 'roundRobin' | 'leastConnections' | 'lowestLag'

/** Where reads for the readers go when no reader fits: the writer, or an error. */
export type ReaderFallback = 'writer' | 'error'

/**
 * The core's own options, accepted beside every postgres.js option and the plugins' own.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app@db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   topologyRefreshMs: 10_000,
 *   targetRole: 'any',
 * })
 * ```
 */
export interface CoreOptions {
  /** Plugins in order, as names, plugin objects, or a comma-separated string. Default: the plugin catalog's defaults (the README's plugin table lists them). */
  plugins?: string | ReadonlyArray<string | HaPlugin>
  /** Topology dialect, or `auto` (default) to detect it on first connect. */
  dialect?: DialectName | 'auto'
  /** Instance id → endpoint, `?` standing for the id (e.g. `?.abc123.us-east-1.rds.amazonaws.com`). Derived from RDS host names; `?` otherwise. */
  clusterInstanceHostPattern?: string
  /** Id under which clients of one cluster share a topology monitor. Derived from the hosts by default. */
  clusterId?: string
  /** Which hosts statements go to: `writer` (default), `reader` or `any`. */
  targetRole?: TargetRole
  /** How a reader is picked: `random` (default), `roundRobin`, `leastConnections` or `lowestLag`. */
  readerHostSelectorStrategy?: ReaderStrategy
  /** With no reader up (or within `maxReplicaLagMs`), reads run on the `writer` (default) or reject (`error`, `NoReaderAvailableError`). */
  readerFallback?: ReaderFallback
  /** A reader whose replication lag exceeds this gets no reads until it catches up (default: no limit). */
  maxReplicaLagMs?: number
  /** A read through `sql.ha.reader` after a committed write of this client waits until the reader has replayed it (default false). */
  readYourWrites?: boolean
  /** How long such a read waits for the reader before it runs on the writer instead (default 200 ms). */
  readYourWritesTimeoutMs?: number
  /** Topology poll interval when all is calm (default 30000 ms). */
  topologyRefreshMs?: number
  /** Topology poll interval after a sign of trouble, until the topology settles (default 100 ms). */
  topologyFastRefreshMs?: number
  /** Timeout of one user connection attempt (default: postgres.js `connect_timeout`, else 10000 ms). */
  connectTimeoutMs?: number
  /** Timeout of the driver's own probe and topology connections and statements (default 2000 ms). */
  probeTimeoutMs?: number
  /** Receives log lines; silent by default. `console` works. */
  logger?: Partial<Logger>
  /** Source of time, for tests. */
  clock?: Clock
}

/**
 * Options after validation: the core's, every field present, and the enabled plugins' own by name
 * (each plugin reads its part typed with `readOptions`).
 */
export interface ResolvedHaOptions {
  readonly plugins: ReadonlyArray<string | HaPlugin>
  readonly dialect: DialectName | 'auto'
  readonly clusterInstanceHostPattern: HostPattern | undefined
  readonly clusterId: string | undefined
  readonly targetRole: TargetRole
  readonly readerHostSelectorStrategy: ReaderStrategy
  readonly readerFallback: ReaderFallback
  /** `undefined`: no limit. */
  readonly maxReplicaLagMs: number | undefined
  readonly readYourWrites: boolean
  readonly readYourWritesTimeoutMs: number
  readonly topologyRefreshMs: number
  readonly topologyFastRefreshMs: number
  readonly connectTimeoutMs: number
  readonly probeTimeoutMs: number
  readonly logger: Partial<Logger> | undefined
  /** Time and timers for everything that waits: the real timers, time from the `clock` option when one is given. */
  readonly runtime: Runtime
  /** The plugins' options, by name, validated by their tables. */
  readonly [pluginOption: string]: unknown
}

/**
 * The driver's part of the options: its table (checked here, passed to the driver untouched) and
 * the connect timeout its options imply.
 */
export interface DriverOptionPart {
  readonly options: OptionTable
  /** The connect timeout the driver's options set, in ms, used unless `connectTimeoutMs` is given. */
  connectTimeoutMs(options: Readonly<Record<string, unknown>>): number | undefined
}

/** What `parseOptions` merges with the core's table: the driver's options, the dialects' and the plugin catalog. */
export interface OptionParts {
  readonly driver: DriverOptionPart
  /** The dialects' own options (where Patroni's REST API is), read by the dialects from the client's options. */
  readonly dialects: OptionTable
  readonly plugins: PluginCatalog
}

const pluginsCheck: Check = (v) => {
  if (typeof v === 'string') return undefined
  if (
    Array.isArray(v) &&
    v.every((p) => typeof p === 'string' || (p && typeof p === 'object' && 'name' in p))
  )
    return undefined
  return 'a comma-separated string of plugin names, or an array of names and plugin objects'
}

const CORE_SPECS: Record<keyof CoreOptions, OptionSpec> = {
  // Its default and example are the catalog's (see tablesOf).
  plugins: { check: pluginsCheck },
  dialect: { check: oneOf('auto', 'aurora-pg', 'rds-multi-az-pg', 'pg', 'patroni'), default: 'auto' },
  clusterInstanceHostPattern: { check: nonEmptyString, example: "'?.abc123.us-east-1.rds.amazonaws.com'" },
  clusterId: { check: nonEmptyString },
  targetRole: { check: oneOf('writer', 'reader', 'any'), default: 'writer' },
  readerHostSelectorStrategy: {
    check: oneOf('random', 'roundRobin', 'leastConnections', 'lowestLag'),
    default: 'random',
  },
  readerFallback: { check: oneOf('writer', 'error'), default: 'writer' },
  maxReplicaLagMs: { check: milliseconds(1), example: '1000' },
  readYourWrites: { check: boolean, default: false },
  readYourWritesTimeoutMs: { check: milliseconds(0, 60_000), default: 200, example: '200' },
  topologyRefreshMs: {
    check: milliseconds(100),
    default: 30_000,
    aliases: ['clusterTopologyRefreshRateMs'],
    example: '30000',
  },
  topologyFastRefreshMs: {
    check: milliseconds(10),
    default: 100,
    aliases: ['clusterTopologyHighRefreshRateMs'],
    example: '100',
  },
  connectTimeoutMs: { check: milliseconds(1), example: '5000' },
  probeTimeoutMs: { check: milliseconds(10, 600_000), default: 2_000, example: '2000' },
  logger: { check: object, example: 'console' },
  clock: {
    check: (v) => {
      const c = v as { now?: unknown; wallNow?: unknown } | null
      if (c === null || typeof c !== 'object') return 'an object with now() and wallNow()'
      if (typeof c.now !== 'function') return 'an object with a now() function (monotonic milliseconds)'
      if (typeof c.wallNow !== 'function') return 'an object with a wallNow() function (epoch milliseconds)'
      return undefined
    },
    example: '{ now: () => performance.now(), wallNow: () => Date.now() }',
  },
}

/** Every option table of a client: the core's, the driver's and every catalog plugin's, by name. */
function tablesOf(parts: OptionParts): Map<string, { spec: OptionSpec; part: 'core' | 'driver' | 'plugin' }> {
  const all = new Map<string, { spec: OptionSpec; part: 'core' | 'driver' | 'plugin' }>()
  for (const [name, spec] of Object.entries(parts.driver.options)) all.set(name, { spec, part: 'driver' })
  for (const [name, spec] of Object.entries(parts.dialects)) all.set(name, { spec, part: 'plugin' })
  // Every catalog plugin's options are checked, enabled or not, so that a typo is caught early.
  for (const entry of Object.values(parts.plugins.entries))
    for (const [name, spec] of Object.entries(entry.options ?? {})) all.set(name, { spec, part: 'plugin' })
  for (const [name, spec] of Object.entries(CORE_SPECS)) all.set(name, { spec, part: 'core' })
  const defaults = parts.plugins.defaults
  all.set('plugins', {
    spec: { ...CORE_SPECS.plugins, default: defaults, example: `'${defaults}'` },
    part: 'core',
  })
  return all
}

function fail(name: string, value: unknown, valid: string, spec?: OptionSpec): never {
  throw invalidOption(name, value, valid, spec)
}

function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestScore = Number.POSITIVE_INFINITY
  const a = name.toLowerCase()
  for (const c of candidates) {
    const d = editDistance(a, c.toLowerCase())
    if (d < bestScore) {
      best = c
      bestScore = d
    }
  }
  return bestScore <= Math.max(2, Math.floor(name.length / 4)) ? best : undefined
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length]!
}

/**
 * Refuses postgres-ha options written as query parameters of the connection URL: postgres.js
 * would send an unknown parameter to the server as a setting, and the login would fail with
 * "unrecognized configuration parameter".
 *
 * @example
 * ```ts
 * refuseHaOptionsInUrl('postgres://app@db/app?topologyRefreshMs=1000', parts) // throws InvalidOptionError
 * ```
 */
export function refuseHaOptionsInUrl(url: string, parts: OptionParts): void {
  const query = url.split('#')[0]!.split('?')[1]
  if (!query) return
  const names = new Map<string, OptionSpec>()
  for (const [name, { spec, part }] of tablesOf(parts)) {
    if (part === 'driver') continue
    names.set(name, spec)
    for (const alias of spec.aliases ?? []) names.set(alias, spec)
  }
  for (const pair of query.split('&')) {
    let name = pair.split('=')[0]!
    try {
      name = decodeURIComponent(name)
    } catch {
      // Not ours to judge: postgres.js reads it.
    }
    if (!names.has(name)) continue
    const value = pair.includes('=') ? pair.slice(pair.indexOf('=') + 1) : ''
    throw new InvalidOptionError(
      name,
      `Invalid option ${name} in the connection URL (got ${describeValue(value, isSecretOption(name, names.get(name)))}): ` +
        `postgres-ha options go in the options object, e.g. postgresHa(url, { ${name}: ... }); ` +
        'in the URL postgres.js would send it to the server as a setting.',
    )
  }
}

/** The split of the user's options: the driver's own, and ours resolved. */
export interface ParsedOptions {
  /** The driver's options, to pass to it unchanged. */
  readonly driver: Readonly<Record<string, unknown>>
  readonly ha: ResolvedHaOptions
}

/**
 * Validates the options given to `postgresHa()` against the core's, the driver's and the plugins'
 * tables, and fills in every default. Throws {@link InvalidOptionError} naming the first option
 * at fault.
 *
 * @example
 * ```ts
 * const { ha } = parseOptions({ targetRole: 'any' }, { driver: postgresJsOptions, plugins: builtInPlugins })
 * ha.topologyRefreshMs // 30000
 * ```
 */
export function parseOptions(input: Record<string, unknown> | undefined, parts: OptionParts): ParsedOptions {
  if (input !== undefined && (input === null || typeof input !== 'object' || Array.isArray(input)))
    throw new InvalidOptionError(
      'options',
      `Invalid options: got ${describeValue(input)}; expected an object.`,
    )
  const given = input ?? {}
  const tables = tablesOf(parts)
  const aliasOf = new Map<string, string>()
  for (const [name, { spec }] of tables) for (const alias of spec.aliases ?? []) aliasOf.set(alias, name)

  const driver: Record<string, unknown> = {}
  const ha: Record<string, unknown> = {}
  for (const [rawName, value] of Object.entries(given)) {
    if (value === undefined) continue
    const name = aliasOf.get(rawName) ?? rawName
    const found = tables.get(name)
    // Never implemented, so refused rather than silently ignored: the server's own timeout cancels
    // the statement, keeps the connection and aborts a transaction, which is what it promised.
    if (!found && rawName === 'queryTimeoutMs')
      throw new InvalidOptionError(
        rawName,
        `Invalid option queryTimeoutMs: got ${String(value)}; postgres-ha has no client-side statement timeout. ` +
          `Use PostgreSQL's: connection: { statement_timeout: ${String(value)} } (milliseconds; the statement is ` +
          'cancelled on the server with 57014, the connection stays usable, a transaction is aborted).',
      )
    if (!found) {
      const hint = closest(rawName, tables.keys())
      throw new InvalidOptionError(
        rawName,
        `Unknown option ${rawName}${hint ? `; did you mean ${hint}?` : ''}. ` +
          'postgres-ha accepts the postgres.js options and its own (see the README option table).',
      )
    }
    const problem = found.spec.check(value)
    if (problem) fail(rawName, value, problem, found.spec)
    if (found.part === 'driver') driver[name] = value
    else ha[name] = value
  }
  for (const [name, { spec, part }] of tables)
    if (part !== 'driver' && !(name in ha) && 'default' in spec) ha[name] = spec.default
  for (const [name, { spec, part }] of tables)
    if (part !== 'driver' && spec.relate && ha[name] !== undefined) {
      const problem = spec.relate(ha[name], ha)
      if (problem) fail(name, ha[name], problem, spec)
    }

  const pattern = ha.clusterInstanceHostPattern
  let hostPattern: HostPattern | undefined
  if (typeof pattern === 'string') {
    const parsed = parseHostPattern(pattern)
    if (typeof parsed === 'string')
      fail('clusterInstanceHostPattern', pattern, `a host pattern that ${parsed}`)
    hostPattern = parsed
  }

  const connectTimeoutMs =
    (ha.connectTimeoutMs as number | undefined) ?? parts.driver.connectTimeoutMs(driver) ?? 10_000

  const resolved: ResolvedHaOptions = Object.freeze({
    ...ha,
    plugins: normalisePlugins(ha.plugins as CoreOptions['plugins'], tables.get('plugins')?.spec),
    dialect: ha.dialect as ResolvedHaOptions['dialect'],
    clusterInstanceHostPattern: hostPattern,
    clusterId: ha.clusterId as string | undefined,
    targetRole: ha.targetRole as TargetRole,
    readerHostSelectorStrategy: ha.readerHostSelectorStrategy as ReaderStrategy,
    readerFallback: ha.readerFallback as ReaderFallback,
    maxReplicaLagMs: ha.maxReplicaLagMs as number | undefined,
    readYourWrites: ha.readYourWrites as boolean,
    readYourWritesTimeoutMs: ha.readYourWritesTimeoutMs as number,
    topologyRefreshMs: ha.topologyRefreshMs as number,
    topologyFastRefreshMs: ha.topologyFastRefreshMs as number,
    connectTimeoutMs,
    probeTimeoutMs: ha.probeTimeoutMs as number,
    logger: ha.logger as Partial<Logger> | undefined,
    runtime: ha.clock ? runtimeWithClock(systemRuntime, ha.clock as Clock) : systemRuntime,
  })
  return Object.freeze({ driver: Object.freeze(driver), ha: resolved })
}

function normalisePlugins(
  value: CoreOptions['plugins'],
  spec: OptionSpec | undefined,
): ReadonlyArray<string | HaPlugin> {
  const list =
    typeof value === 'string'
      ? value
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : [...(value ?? [])]
  const seen = new Set<string>()
  for (const p of list) {
    const name = typeof p === 'string' ? p : p.name
    if (seen.has(name)) fail('plugins', value, `each plugin at most once ("${name}" is listed twice)`, spec)
    seen.add(name)
  }
  return Object.freeze(list)
}
