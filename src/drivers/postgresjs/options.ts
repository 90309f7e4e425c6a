/**
 * The options of the postgres.js driver: which postgres.js options postgres-ha accepts (checked for
 * name and type here, then passed to postgres.js untouched), and the connect timeout they imply.
 * `parseOptions` merges this table with the core's and the plugins'.
 *
 * @module
 */
import { boolean, type Check, fn, integer, nonEmptyString, object, oneOf } from '../../core/option-checks.ts'
import type { OptionTable } from '../../core/option-spec.ts'
import type { DriverOptionPart } from '../../core/options.ts'

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
const POSTGRES_JS_SPECS: OptionTable = Object.freeze({
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
})

/**
 * The postgres.js driver's part of the options.
 *
 * @example
 * ```ts
 * parseOptions({ max: 5 }, { driver: postgresJsOptions, plugins: builtInPlugins })
 * ```
 */
export const postgresJsOptions: DriverOptionPart = Object.freeze({
  options: POSTGRES_JS_SPECS,
  // Only a plain number is read here: a function or `valueOf` is postgres.js's to call, per connect.
  connectTimeoutMs(options: Readonly<Record<string, unknown>>): number | undefined {
    const given = options.connect_timeout
    return (typeof given === 'number' || typeof given === 'string') && Number(given) > 0
      ? Math.max(1, Math.round(Number(given) * 1000))
      : undefined
  },
})
