/**
 * The high-availability options of `postgresHa()`: parsed and validated in one place into a frozen,
 * fully-defaulted object. postgres.js's own options are checked for name and type here and passed
 * through to the driver untouched.
 *
 * @module
 */
import type { Clock } from '../runtime/clock.ts'
import { systemClock } from '../runtime/clock.ts'
import { type Runtime, runtimeWithClock, systemRuntime } from '../runtime/runtime.ts'
import { InvalidOptionError } from './errors.ts'
import type { TargetRole } from './host.ts'
import { type HostPattern, parseHostPattern } from './host-pattern.ts'
import type { Logger } from './logger.ts'
import {
  boolean,
  type Check,
  describeValue,
  fn,
  integer,
  milliseconds,
  nonEmptyString,
  object,
  oneOf,
} from './option-checks.ts'
import {
  type PatroniAuthOptions,
  type PatroniSettings,
  type PatroniTlsOptions,
  patroniAuthCheck,
  patroniTlsCheck,
  patroniUrlsCheck,
  resolvePatroniSettings,
} from './patroni-options.ts'
import type { HaPlugin } from './plugin.ts'

/** Topology dialects; `auto` detects on first connect. */
export type DialectName = 'aurora-pg' | 'rds-multi-az-pg' | 'pg' | 'patroni'

/** How a reader is chosen when several fit. */
export type ReaderStrategy = 'random' | 'roundRobin' | 'leastConnections' | 'lowestLag'

/** Where reads for the readers go when no reader fits: the writer, or an error. */
export type ReaderFallback = 'writer' | 'error'

/** The plugins enabled when `plugins` is not given, in order (outermost first). */
export const DEFAULT_PLUGINS = 'connectionTracker,failover,hostMonitoring'

/**
 * High-availability options, accepted beside every postgres.js option.
 *
 * @example
 * ```ts
 * const sql = postgresHa('postgres://app@db.cluster-abc.us-east-1.rds.amazonaws.com/app', {
 *   failoverTimeoutMs: 60_000,
 *   plugins: 'connectionTracker,failover,hostMonitoring,iam',
 * })
 * ```
 */
export interface HaOptions {
  /** Plugins in order, as names, plugin objects, or a comma-separated string. Default `connectionTracker,failover,hostMonitoring`. */
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
  /** Give up failover after this long with `FailoverFailedError` (default 300000 ms, as the AWS drivers; 30000-60000 recommended). */
  failoverTimeoutMs?: number
  /** Interval between rounds of writer probes during failover (default 20 ms). */
  failoverProbeIntervalMs?: number
  /** Timeout of one user connection attempt (default: postgres.js `connect_timeout`, else 10000 ms). */
  connectTimeoutMs?: number
  /** Timeout of the driver's own probe and topology connections and statements (default 2000 ms). */
  probeTimeoutMs?: number
  /** Host monitoring: start probing a host once a statement has run this long on it (default 200 ms; AWS: 30000). */
  failureDetectionTime?: number
  /** Host monitoring: interval between probes, and each probe's timeout (default 500 ms; AWS: 5000). */
  failureDetectionInterval?: number
  /** Host monitoring: failed probes in a row before the host is declared down (default 2; AWS: 3). */
  failureDetectionCount?: number
  /** Patroni: the REST API port on each member's host (default 8008). */
  patroniRestPort?: number
  /** Patroni: REST API base URLs to ask instead (array or comma-separated), e.g. `http://db1:8008`. */
  patroniUrls?: string | readonly string[]
  /** Patroni: TLS for the REST API (`https`); PEM `ca`, client `cert` + `key`, `rejectUnauthorized`. */
  patroniTls?: PatroniTlsOptions
  /** Patroni: basic authentication sent to the REST API (`restapi.authentication`). */
  patroniAuth?: PatroniAuthOptions
  /** Receives log lines; silent by default. `console` works. */
  logger?: Partial<Logger>
  /** Source of time, for tests. */
  clock?: Clock
}

/** Options after validation: every field present. */
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
  readonly failoverTimeoutMs: number
  readonly failoverProbeIntervalMs: number
  readonly connectTimeoutMs: number
  readonly probeTimeoutMs: number
  readonly failureDetectionTime: number
  readonly failureDetectionInterval: number
  readonly failureDetectionCount: number
  readonly patroni: PatroniSettings
  readonly logger: Partial<Logger> | undefined
  readonly clock: Clock
  /** Time and timers for everything that waits: the real timers, time from `clock` when one is given. */
  readonly runtime: Runtime
  /** Options that plugins declared (iam*, secretsManager*, ...), validated by their specs. */
  readonly pluginOptions: Readonly<Record<string, unknown>>
}

/** How one option is checked and defaulted. */
export interface OptionSpec {
  readonly check: Check
  readonly default?: unknown
  /** Other names accepted for this option (the AWS drivers' spellings). */
  readonly aliases?: readonly string[]
  /** Mask the value in error messages. */
  readonly secret?: boolean
  /** Shown after "Example:" in an error. */
  readonly example?: string
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

const HA_SPECS: Record<keyof HaOptions, OptionSpec> = {
  plugins: { check: pluginsCheck, default: DEFAULT_PLUGINS, example: `'${DEFAULT_PLUGINS}'` },
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
  failoverTimeoutMs: { check: milliseconds(1), default: 300_000, example: '60000' },
  failoverProbeIntervalMs: { check: milliseconds(1, 60_000), default: 20, example: '20' },
  connectTimeoutMs: { check: milliseconds(1), example: '5000' },
  probeTimeoutMs: { check: milliseconds(10, 600_000), default: 2_000, example: '2000' },
  failureDetectionTime: { check: milliseconds(0), default: 200, example: '200' },
  // Below 100 ms a probe would count scheduling hiccups as a dead host, and probe 10+ times a second.
  failureDetectionInterval: { check: milliseconds(100), default: 500, example: '500' },
  failureDetectionCount: { check: integer(1, 100), default: 2, example: '2' },
  patroniRestPort: { check: integer(1, 65535), example: '8008' },
  patroniUrls: { check: patroniUrlsCheck, example: "['http://db1:8008', 'http://db2:8008']" },
  patroniTls: { check: patroniTlsCheck, example: '{ ca: readFileSync("patroni-ca.pem", "utf8") }' },
  patroniAuth: { check: patroniAuthCheck, secret: true, example: "{ username: 'patroni', password: '...' }" },
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

/** The longest timer the runtimes keep (2^31 - 1 ms): a longer one fires at once. */
const MAX_TIMER_SECONDS = Math.floor(2_147_483_647 / 1000)

/** A port, as postgres.js takes it: a number or a numeric string, 1 to 65535. */
const isPort = (v: unknown): boolean => {
  const n = typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65_535
}

/**
 * A duration in seconds as postgres.js takes it: a number, a numeric string (as from a URL or the
 * environment), a function (called once per connection), or an object with its own `valueOf`
 * (read each time a timer starts). 0 means no timeout.
 */
const seconds: Check = (v) => {
  if ((typeof v === 'number' && v >= 0) || typeof v === 'function') return undefined
  if (typeof v === 'string' && v.trim() !== '' && Number(v) >= 0) return undefined
  if (v !== null && typeof v === 'object' && (v as object).valueOf !== Object.prototype.valueOf)
    return undefined
  return 'a number of seconds (or a function or an object with valueOf giving one)'
}

const userName: Check = (v) =>
  nonEmptyString(v) === undefined || (v !== null && typeof v === 'object' && !Array.isArray(v))
    ? undefined
    : 'a non-empty string'

/** postgres.js options postgres-ha passes through, with the type each must have. */
const POSTGRES_JS_SPECS: Record<string, OptionSpec> = {
  host: {
    check: (v) =>
      typeof v === 'string' || (Array.isArray(v) && v.every((h) => typeof h === 'string' && h.trim() !== ''))
        ? undefined
        : 'a host name, or an array of non-empty host names',
  },
  hostname: { check: nonEmptyString },
  port: {
    check: (v) =>
      isPort(v) || (Array.isArray(v) && v.every(isPort))
        ? undefined
        : 'a port from 1 to 65535 (a number or a numeric string), or an array of them',
  },
  path: { check: nonEmptyString },
  database: { check: nonEmptyString },
  db: { check: nonEmptyString },
  // postgres.js turns the user into text only when it logs in: an object with toString is accepted.
  user: { check: userName },
  username: { check: userName },
  password: {
    check: (v) => (typeof v === 'string' || typeof v === 'function' ? undefined : 'a string or a function'),
    secret: true,
  },
  pass: {
    check: (v) => (typeof v === 'string' || typeof v === 'function' ? undefined : 'a string or a function'),
    secret: true,
  },
  ssl: {
    check: (v) =>
      typeof v === 'boolean' || typeof v === 'string' || (v !== null && typeof v === 'object')
        ? undefined
        : "true, false, 'require', 'prefer', 'verify-full' or a TLS options object",
  },
  sslnegotiation: { check: oneOf('direct', 'postgres') },
  max: { check: integer(1, 10_000) },
  idle_timeout: { check: (v) => (v === null ? undefined : seconds(v)) },
  connect_timeout: {
    check: (v) =>
      typeof v === 'number' && v > MAX_TIMER_SECONDS
        ? `a number of seconds up to ${MAX_TIMER_SECONDS} (a longer timer fires at once)`
        : seconds(v),
  },
  max_lifetime: {
    check: (v) =>
      v === null || typeof v === 'number' || typeof v === 'function' ? undefined : 'seconds, or null',
  },
  max_pipeline: { check: integer(1, 100_000) },
  backoff: {
    check: (v) => (typeof v === 'number' || typeof v === 'function' ? undefined : 'seconds or a function'),
  },
  keep_alive: { check: (v) => (v === null ? undefined : seconds(v)) },
  prepare: { check: boolean },
  no_prepare: { check: boolean },
  types: { check: object },
  onnotice: { check: fn },
  onnotify: { check: fn },
  onparameter: { check: fn },
  onclose: { check: fn },
  debug: {
    check: (v) =>
      typeof v === 'boolean' || typeof v === 'function' ? undefined : 'true, false or a function',
  },
  // postgres.camel, postgres.toCamel... are functions carrying `column`/`value` properties.
  transform: {
    check: (v) =>
      typeof v === 'function' || object(v) === undefined
        ? undefined
        : 'an object or a postgres.js transform function',
  },
  connection: { check: object },
  fetch_types: { check: boolean },
  publications: { check: nonEmptyString },
  target_session_attrs: {
    check: oneOf('any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'),
  },
  load_balance_hosts: { check: oneOf('disable', 'random') },
  no_subscribe: { check: boolean },
  // Called per host with that host and port; postgres-ha still tracks and aborts what it returns.
  socket: { check: fn },
}

const pluginSpecs = new Map<string, OptionSpec>()

/**
 * Lets a plugin declare its options (`iamRegion`, `secretsManagerSecretId`, ...) so that they are
 * validated here with the rest and reach it in `pluginOptions`.
 */
export function registerPluginOptions(specs: Record<string, OptionSpec>): void {
  for (const [name, spec] of Object.entries(specs)) pluginSpecs.set(name, spec)
}

/** Options whose values must never be shown. */
export function isSecretOption(name: string): boolean {
  return (
    POSTGRES_JS_SPECS[name]?.secret === true ||
    pluginSpecs.get(name)?.secret === true ||
    /pass|secret|token|credential/i.test(name)
  )
}

function fail(name: string, value: unknown, valid: string, spec?: OptionSpec): never {
  const example = spec?.example ? ` Example: ${name}: ${spec.example}.` : ''
  throw new InvalidOptionError(
    name,
    `Invalid option ${name}: got ${describeValue(value, spec?.secret || isSecretOption(name))}; expected ${valid}.${example}`,
  )
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
 * refuseHaOptionsInUrl('postgres://app@db/app?failoverTimeoutMs=1000') // throws InvalidOptionError
 * ```
 */
export function refuseHaOptionsInUrl(url: string): void {
  const query = url.split('#')[0]!.split('?')[1]
  if (!query) return
  const names = new Set<string>([...Object.keys(HA_SPECS), ...pluginSpecs.keys()])
  for (const spec of [...Object.values(HA_SPECS), ...pluginSpecs.values()])
    for (const alias of spec.aliases ?? []) names.add(alias)
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
      `Invalid option ${name} in the connection URL (got ${describeValue(value, isSecretOption(name))}): ` +
        `postgres-ha options go in the options object, e.g. postgresHa(url, { ${name}: ... }); ` +
        'in the URL postgres.js would send it to the server as a setting.',
    )
  }
}

/** The split of the user's options: postgres.js's own, and ours resolved. */
export interface ParsedOptions {
  /** postgres.js options to pass to the driver, unchanged. */
  readonly postgresJs: Readonly<Record<string, unknown>>
  readonly ha: ResolvedHaOptions
}

/**
 * Validates the options given to `postgresHa()` and fills in every default.
 * Throws {@link InvalidOptionError} naming the first option at fault.
 *
 * @example
 * ```ts
 * const { ha } = parseOptions({ failoverTimeoutMs: 60_000 })
 * ha.topologyRefreshMs // 30000
 * ```
 */
export function parseOptions(input: Record<string, unknown> | undefined): ParsedOptions {
  if (input !== undefined && (input === null || typeof input !== 'object' || Array.isArray(input)))
    throw new InvalidOptionError(
      'options',
      `Invalid options: got ${describeValue(input)}; expected an object.`,
    )
  const given = input ?? {}
  const aliasOf = new Map<string, string>()
  for (const [name, spec] of [...Object.entries(HA_SPECS), ...pluginSpecs])
    for (const alias of spec.aliases ?? []) aliasOf.set(alias, name)

  const postgresJs: Record<string, unknown> = {}
  const ha: Record<string, unknown> = {}
  const pluginOptions: Record<string, unknown> = {}
  for (const [rawName, value] of Object.entries(given)) {
    if (value === undefined) continue
    const name = aliasOf.get(rawName) ?? rawName
    const haSpec = HA_SPECS[name as keyof HaOptions]
    const pluginSpec = pluginSpecs.get(name)
    const pgSpec = POSTGRES_JS_SPECS[name]
    const spec = haSpec ?? pluginSpec ?? pgSpec
    // Never implemented, so refused rather than silently ignored: the server's own timeout cancels
    // the statement, keeps the connection and aborts a transaction, which is what it promised.
    if (!spec && rawName === 'queryTimeoutMs')
      throw new InvalidOptionError(
        rawName,
        `Invalid option queryTimeoutMs: got ${String(value)}; postgres-ha has no client-side statement timeout. ` +
          `Use PostgreSQL's: connection: { statement_timeout: ${String(value)} } (milliseconds; the statement is ` +
          'cancelled on the server with 57014, the connection stays usable, a transaction is aborted).',
      )
    if (!spec) {
      const known = [...Object.keys(HA_SPECS), ...pluginSpecs.keys(), ...Object.keys(POSTGRES_JS_SPECS)]
      const hint = closest(rawName, known)
      throw new InvalidOptionError(
        rawName,
        `Unknown option ${rawName}${hint ? `; did you mean ${hint}?` : ''}. ` +
          'postgres-ha accepts the postgres.js options and its own (see the README option table).',
      )
    }
    const problem = spec.check(value)
    if (problem) fail(rawName, value, problem, spec)
    if (haSpec) ha[name] = value
    else if (pluginSpec) pluginOptions[name] = value
    else postgresJs[name] = value
  }

  for (const [name, spec] of Object.entries(HA_SPECS))
    if (!(name in ha) && 'default' in spec) ha[name] = spec.default
  for (const [name, spec] of pluginSpecs)
    if (!(name in pluginOptions) && 'default' in spec) pluginOptions[name] = spec.default

  const pattern = ha.clusterInstanceHostPattern
  let hostPattern: HostPattern | undefined
  if (typeof pattern === 'string') {
    const parsed = parseHostPattern(pattern)
    if (typeof parsed === 'string')
      fail('clusterInstanceHostPattern', pattern, `a host pattern that ${parsed}`)
    hostPattern = parsed
  }

  // Only a plain number is read here: a function or `valueOf` is postgres.js's to call, per connect.
  const givenTimeout = postgresJs.connect_timeout
  const connectTimeoutMs =
    (ha.connectTimeoutMs as number | undefined) ??
    ((typeof givenTimeout === 'number' || typeof givenTimeout === 'string') && Number(givenTimeout) > 0
      ? Math.max(1, Math.round(Number(givenTimeout) * 1000))
      : 10_000)
  if ((ha.failureDetectionInterval as number) > (ha.failoverTimeoutMs as number))
    fail(
      'failureDetectionInterval',
      ha.failureDetectionInterval,
      `at most failoverTimeoutMs (${ha.failoverTimeoutMs} ms)`,
      HA_SPECS.failureDetectionInterval,
    )

  const resolved: ResolvedHaOptions = Object.freeze({
    plugins: normalisePlugins(ha.plugins as HaOptions['plugins']),
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
    failoverTimeoutMs: ha.failoverTimeoutMs as number,
    failoverProbeIntervalMs: ha.failoverProbeIntervalMs as number,
    connectTimeoutMs,
    probeTimeoutMs: ha.probeTimeoutMs as number,
    failureDetectionTime: ha.failureDetectionTime as number,
    failureDetectionInterval: ha.failureDetectionInterval as number,
    failureDetectionCount: ha.failureDetectionCount as number,
    patroni: resolvePatroniSettings(ha),
    logger: ha.logger as Partial<Logger> | undefined,
    clock: (ha.clock as Clock | undefined) ?? systemClock,
    runtime: ha.clock ? runtimeWithClock(systemRuntime, ha.clock as Clock) : systemRuntime,
    pluginOptions: Object.freeze(pluginOptions),
  })
  return Object.freeze({ postgresJs: Object.freeze(postgresJs), ha: resolved })
}

function normalisePlugins(value: HaOptions['plugins']): ReadonlyArray<string | HaPlugin> {
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
    if (seen.has(name))
      fail('plugins', value, `each plugin at most once ("${name}" is listed twice)`, HA_SPECS.plugins)
    seen.add(name)
  }
  return Object.freeze(list)
}
