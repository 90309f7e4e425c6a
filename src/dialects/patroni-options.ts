/**
 * The options of the Patroni topology source: where each member's REST API is (`patroniRestPort`
 * on every member's host, or `patroniUrls`), and how to reach it (TLS, basic authentication).
 * The dialect declares them here ({@link patroniOptionSpecs}); `parseOptions` checks them with the
 * rest, and the dialect reads them from the client's options ({@link patroniSettingsOf}).
 *
 * @module
 */
import { type Check, integer } from '../core/option-checks.ts'
import type { OptionSpec, OptionTable } from '../core/option-spec.ts'

/** TLS settings for Patroni's REST API (`restapi.certfile`, `verify_client`), PEM strings. */
export interface PatroniTlsOptions {
  /** CA the REST API's certificate chains to (default: the system's). */
  readonly ca?: string
  /** Client certificate, when Patroni verifies clients (`restapi.verify_client`). */
  readonly cert?: string
  /** The client certificate's key. */
  readonly key?: string
  /** Verify the REST API's certificate (default true; not available on Deno). */
  readonly rejectUnauthorized?: boolean
}

/** Basic authentication for Patroni's REST API (`restapi.authentication`). */
export interface PatroniAuthOptions {
  /** The REST API user (`restapi.authentication.username`). */
  readonly username: string
  /** Its password; masked wherever options are shown. */
  readonly password: string
}

/**
 * The Patroni dialect's options, accepted beside every other option of `postgresHa()`.
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { dialect: 'patroni', patroniRestPort: 8443, patroniTls: { ca } })
 * ```
 */
export interface PatroniOptions {
  /** Patroni: the REST API port on each member's host (default 8008). */
  patroniRestPort?: number
  /** Patroni: REST API base URLs to ask instead (array or comma-separated), e.g. `http://db1:8008`. */
  patroniUrls?: string | readonly string[]
  /** Patroni: TLS for the REST API (`https`); PEM `ca`, client `cert` + `key`, `rejectUnauthorized`. */
  patroniTls?: PatroniTlsOptions
  /** Patroni: basic authentication sent to the REST API (`restapi.authentication`). */
  patroniAuth?: PatroniAuthOptions
}

/** How the Patroni source reaches the REST API, resolved from the options. */
export interface PatroniSettings {
  /** Base URLs given with `patroniUrls` (no trailing slash), or undefined: each host's `restPort`. */
  readonly urls: readonly string[] | undefined
  readonly restPort: number
  /** `https` when TLS options are given, else `http` (for URLs built from host names). */
  readonly scheme: 'http' | 'https'
  readonly tls: PatroniTlsOptions | undefined
  readonly headers: Readonly<Record<string, string>>
}

const urlProblem = (u: unknown): string | undefined => {
  if (typeof u !== 'string') return 'a URL string'
  try {
    const url = new URL(u)
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      return `an http:// or https:// URL (got ${url.protocol})`
    if (url.username || url.password) return 'a URL without credentials (use patroniAuth)'
    if (url.search || url.hash) return 'a base URL without query or fragment'
    return undefined
  } catch {
    return `a URL such as "http://db1:8008" (got "${u}")`
  }
}

/** `patroniUrls`: one or more REST API base URLs, as an array or a comma-separated string. */
export const patroniUrlsCheck: Check = (v) => {
  const list = typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v
  if (!Array.isArray(list) || list.length === 0)
    return 'REST API base URLs, e.g. ["http://db1:8008", "http://db2:8008"]'
  for (const u of list) {
    const problem = urlProblem(u)
    if (problem) return `REST API base URLs, each ${problem}`
  }
  return undefined
}

/** `patroniTls`: PEM strings and a flag. */
export const patroniTlsCheck: Check = (v) => {
  const valid = '{ ca?, cert?, key? (PEM strings), rejectUnauthorized? (boolean) }'
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return valid
  for (const [k, x] of Object.entries(v)) {
    if (['ca', 'cert', 'key'].includes(k) && typeof x === 'string' && x.includes('-----BEGIN')) continue
    if (k === 'rejectUnauthorized' && typeof x === 'boolean') continue
    return `${valid}; "${k}" is not valid`
  }
  const o = v as PatroniTlsOptions
  if (!!o.cert !== !!o.key) return `${valid}, with cert and key together`
  return undefined
}

/** `patroniAuth`: a user name and a password. */
export const patroniAuthCheck: Check = (v) => {
  const o = v as Partial<PatroniAuthOptions> | null
  return o !== null &&
    typeof o === 'object' &&
    typeof o.username === 'string' &&
    o.username !== '' &&
    typeof o.password === 'string' &&
    Object.keys(o).length === 2
    ? undefined
    : '{ username, password } (strings)'
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text)
  let binary = ''
  for (const b of bytes) binary += String.fromCharCode(b)
  return btoa(binary)
}

/** Resolves the checked option values (see {@link patroniSettingsOf} for a client's). */
export function resolvePatroniSettings(o: {
  patroniUrls?: unknown
  patroniRestPort?: unknown
  patroniTls?: unknown
  patroniAuth?: unknown
}): PatroniSettings {
  const list =
    typeof o.patroniUrls === 'string' ? o.patroniUrls.split(',').map((s) => s.trim()) : o.patroniUrls
  const tls = o.patroniTls as PatroniTlsOptions | undefined
  const auth = o.patroniAuth as PatroniAuthOptions | undefined
  return Object.freeze({
    urls: Array.isArray(list) ? Object.freeze(list.map((u: string) => u.replace(/\/+$/, ''))) : undefined,
    restPort: (o.patroniRestPort as number | undefined) ?? 8008,
    scheme: tls ? 'https' : 'http',
    tls: tls ? Object.freeze({ ...tls }) : undefined,
    headers: Object.freeze<Record<string, string>>(
      auth ? { authorization: `Basic ${base64(`${auth.username}:${auth.password}`)}` } : {},
    ),
  })
}

/** Specs of the Patroni dialect's options (the composition hands them to `parseOptions`). */
export const patroniOptionSpecs: Readonly<Record<keyof PatroniOptions, OptionSpec>> = Object.freeze({
  patroniRestPort: { check: integer(1, 65535), example: '8008' },
  patroniUrls: { check: patroniUrlsCheck, example: "['http://db1:8008', 'http://db2:8008']" },
  patroniTls: { check: patroniTlsCheck, example: '{ ca: readFileSync("patroni-ca.pem", "utf8") }' },
  patroniAuth: { check: patroniAuthCheck, secret: true, example: "{ username: 'patroni', password: '...' }" },
}) satisfies OptionTable

const resolved = new WeakMap<object, PatroniSettings>()

/** The Patroni settings of a client's validated options, resolved once per options object. */
export function patroniSettingsOf(options: Readonly<Record<string, unknown>>): PatroniSettings {
  let settings = resolved.get(options)
  if (!settings) {
    settings = resolvePatroniSettings(options)
    resolved.set(options, settings)
  }
  return settings
}
