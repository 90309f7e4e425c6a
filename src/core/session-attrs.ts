/**
 * libpq's `target_session_attrs` and `load_balance_hosts` for postgres.js users who already set
 * them (as an option, a URL parameter or `PGTARGETSESSIONATTRS` / `PGLOADBALANCEHOSTS`): they
 * decide the role of the client's own `sql`, as `targetRole` does. Resolved once, here; a value
 * that cannot be honoured is an {@link InvalidOptionError}, never dropped.
 *
 * @module
 */
import { InvalidOptionError } from './errors.ts'
import type { TargetRole } from './host.ts'
import type { ReaderFallback } from './options.ts'

/** The values of libpq's `target_session_attrs` (PostgreSQL 14+). */
export type TargetSessionAttrs = 'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby'

/** libpq's `load_balance_hosts` (PostgreSQL 16+). */
export type LoadBalanceHosts = 'disable' | 'random'

const ATTRS: readonly TargetSessionAttrs[] = [
  'any',
  'read-write',
  'read-only',
  'primary',
  'standby',
  'prefer-standby',
]
const BALANCE: readonly LoadBalanceHosts[] = ['disable', 'random']

/** What the client's own `sql` targets. */
export interface SessionRouting {
  readonly targetRole: TargetRole
  /** Where a statement of `sql` meant for readers goes when none fits. */
  readonly fallback: ReaderFallback
  /** `read-write`/`read-only`: a host's `default_transaction_read_only` counts as libpq counts it. */
  readonly checkDefaultReadOnly: 'read-write' | 'read-only' | undefined
  readonly targetSessionAttrs: TargetSessionAttrs | undefined
  readonly loadBalanceHosts: LoadBalanceHosts
}

/** The inputs of {@link resolveSessionRouting}; each value as the user gave it (or `undefined`). */
export interface SessionRoutingInput {
  /** `targetRole` if the user gave it. */
  readonly targetRole: TargetRole | undefined
  readonly readerFallback: ReaderFallback
  readonly option: string | undefined
  readonly urlParam: string | undefined
  readonly env: string | undefined
  readonly loadBalanceOption: string | undefined
  readonly loadBalanceUrlParam: string | undefined
  readonly loadBalanceEnv: string | undefined
  /** The first host is an Aurora/RDS reader endpoint (`cluster-ro-`). */
  readonly readerEndpoint: boolean
}

/** The role a `target_session_attrs` value asks for. */
function roleOf(attrs: TargetSessionAttrs): TargetRole {
  if (attrs === 'any') return 'any'
  return attrs === 'primary' || attrs === 'read-write' ? 'writer' : 'reader'
}

function pick<T extends string>(
  name: string,
  valid: readonly T[],
  sources: ReadonlyArray<[string, string | undefined]>,
): T | undefined {
  // The first source given wins, as in libpq and postgres.js: option, then URL, then environment.
  for (const [where, value] of sources) {
    if (value === undefined || value === '') continue
    if ((valid as readonly string[]).includes(value)) return value as T
    throw new InvalidOptionError(
      name,
      `Invalid ${name} ${where}: got ${JSON.stringify(value)}; expected one of ${valid.map((v) => `"${v}"`).join(', ')}.`,
    )
  }
  return undefined
}

/**
 * Resolves the client's role from `targetRole`, `target_session_attrs` and the endpoint.
 *
 * @example
 * ```ts
 * resolveSessionRouting({ targetRole: undefined, readerFallback: 'writer', option: 'prefer-standby',
 *   urlParam: undefined, env: undefined, loadBalanceOption: undefined, loadBalanceUrlParam: undefined,
 *   loadBalanceEnv: undefined, readerEndpoint: false }).targetRole // 'reader'
 * ```
 */
export function resolveSessionRouting(input: SessionRoutingInput): SessionRouting {
  const attrs = pick('target_session_attrs', ATTRS, [
    ['option', input.option],
    ['in the URL', input.urlParam],
    ['in PGTARGETSESSIONATTRS', input.env],
  ])
  const loadBalanceHosts =
    pick('load_balance_hosts', BALANCE, [
      ['option', input.loadBalanceOption],
      ['in the URL', input.loadBalanceUrlParam],
      ['in PGLOADBALANCEHOSTS', input.loadBalanceEnv],
    ]) ?? 'disable'
  if (attrs === undefined) {
    const targetRole = input.targetRole ?? (input.readerEndpoint ? 'reader' : 'writer')
    return {
      targetRole,
      fallback: input.readerFallback,
      checkDefaultReadOnly: undefined,
      targetSessionAttrs: undefined,
      loadBalanceHosts,
    }
  }
  const role = roleOf(attrs)
  if (input.targetRole !== undefined && input.targetRole !== role)
    throw new InvalidOptionError(
      'target_session_attrs',
      `Conflicting options: targetRole "${input.targetRole}" and target_session_attrs "${attrs}" (which means ` +
        `targetRole "${role}"). Give one of them.`,
    )
  return {
    targetRole: role,
    // libpq fails a `standby`/`read-only` connection when no host qualifies; `prefer-standby` falls back.
    fallback: attrs === 'standby' || attrs === 'read-only' ? 'error' : 'writer',
    checkDefaultReadOnly: attrs === 'read-write' || attrs === 'read-only' ? attrs : undefined,
    targetSessionAttrs: attrs,
    loadBalanceHosts,
  }
}

/**
 * Takes `target_session_attrs` and `load_balance_hosts` out of a connection URL's query: postgres.js
 * would send `load_balance_hosts` to the server as a setting (which fails) and refuses `any`.
 *
 * @example
 * ```ts
 * splitSessionParams('postgres://h/db?target_session_attrs=any&sslmode=require')
 * // { url: 'postgres://h/db?sslmode=require', targetSessionAttrs: 'any', loadBalanceHosts: undefined }
 * ```
 */
export function splitSessionParams(url: string): {
  url: string
  targetSessionAttrs: string | undefined
  loadBalanceHosts: string | undefined
} {
  const q = url.indexOf('?')
  if (q < 0) return { url, targetSessionAttrs: undefined, loadBalanceHosts: undefined }
  const params = new URLSearchParams(url.slice(q + 1))
  const targetSessionAttrs = params.get('target_session_attrs') ?? undefined
  const loadBalanceHosts = params.get('load_balance_hosts') ?? undefined
  if (targetSessionAttrs === undefined && loadBalanceHosts === undefined)
    return { url, targetSessionAttrs, loadBalanceHosts }
  params.delete('target_session_attrs')
  params.delete('load_balance_hosts')
  const rest = params.toString()
  return { url: url.slice(0, q) + (rest ? `?${rest}` : ''), targetSessionAttrs, loadBalanceHosts }
}
