/**
 * How an option is declared: each part of postgres-ha (the core, the driver, every plugin) keeps a
 * table of its options next to its code, and `parseOptions` merges the tables in one place.
 *
 * @module
 */
import { InvalidOptionError } from './errors.ts'
import { type Check, describeValue } from './option-checks.ts'

/**
 * One option: how it is checked, its default, and what errors say about it.
 *
 * @example
 * ```ts
 * const specs = {
 *   retryLimit: { check: integer(0, 10), default: 3, example: '3' },
 * } satisfies OptionTable
 * ```
 */
export interface OptionSpec {
  /** Says what would be valid, or `undefined` when the value is fine. */
  readonly check: Check
  /** The value when the option is not given. */
  readonly default?: unknown
  /** Other names accepted for this option (the AWS drivers' spellings). */
  readonly aliases?: readonly string[]
  /** Mask the value in error messages. */
  readonly secret?: boolean
  /** Shown after "Example:" in an error. */
  readonly example?: string
  /**
   * A check against the other options once every default is in (e.g. "at most that timeout"):
   * says what would be valid, or `undefined`.
   */
  readonly relate?: (value: unknown, options: Readonly<Record<string, unknown>>) => string | undefined
}

/** The options of one part, by name. */
export type OptionTable = Readonly<Record<string, OptionSpec>>

/**
 * A part's own options, typed, from the client's validated options and any overrides (later
 * sources win). The client validated its options already; a plugin made by hand with overrides
 * has not, so every value is checked again here.
 *
 * @example
 * ```ts
 * init(services) {
 *   const { retryLimit } = readOptions<{ retryLimit: number }>(specs, [services.options])
 * }
 * ```
 */
export function readOptions<T>(
  table: OptionTable,
  sources: ReadonlyArray<Readonly<Record<string, unknown>> | undefined>,
): T {
  const out: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(table)) {
    let value: unknown
    for (const source of sources) {
      if (!source) continue
      for (const key of [...(spec.aliases ?? []), name]) if (source[key] !== undefined) value = source[key]
    }
    if (value === undefined) value = spec.default
    if (value !== undefined) {
      const problem = spec.check(value)
      if (problem) throw invalidOption(name, value, problem, spec)
    }
    out[name] = value
  }
  return Object.freeze(out) as T
}

/**
 * Options whose values must never be shown. A declared option is secret when its spec says so
 * (`iamTokenExpiration` or `secretsManagerRegion` are not, and an error must show their value);
 * an undeclared one (a misspelled name) is masked when named like a credential.
 */
export function isSecretOption(name: string, spec: OptionSpec | undefined): boolean {
  return spec ? spec.secret === true : /pass|secret|token|credential/i.test(name)
}

/**
 * The one error for a bad option value, wherever it is checked: names the option, shows the value
 * (masked for a secret), says what would be valid and gives the spec's example.
 */
export function invalidOption(
  name: string,
  value: unknown,
  valid: string,
  spec?: OptionSpec,
): InvalidOptionError {
  const example = spec?.example ? ` Example: ${name}: ${spec.example}.` : ''
  return new InvalidOptionError(
    name,
    `Invalid option ${name}: got ${describeValue(value, isSecretOption(name, spec))}; expected ${valid}.${example}`,
  )
}
