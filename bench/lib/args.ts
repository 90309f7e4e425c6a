/**
 * Command-line flags of a benchmark part: `--name value` pairs, numbers checked, and a usage
 * message with exit code 2 for anything unknown.
 *
 * @module
 */
import { parseArgs } from 'node:util'

/** One flag: its default, and a line for the usage message. */
export interface FlagSpec<T extends number | string | boolean> {
  default: T
  help: string
}

type Values<S extends Record<string, FlagSpec<any>>> = { [K in keyof S]: S[K]['default'] }

/**
 * Parses `argv` against `spec`; numbers must be finite and ≥ 0, strings are kept as given.
 *
 * @example
 * ```ts
 * const flags = parseFlags('failover', { trials: { default: 10, help: 'trials per scenario' } })
 * flags.trials // 10, or the value of --trials
 * ```
 */
export function parseFlags<S extends Record<string, FlagSpec<any>>>(
  part: string,
  spec: S,
  argv: string[] = process.argv.slice(2),
): Values<S> {
  const usage = () =>
    `usage: ${part} ${Object.entries(spec)
      .map(([k, s]) => (typeof s.default === 'boolean' ? `[--${k}]` : `[--${k} ${String(s.default)}]`))
      .join(' ')}\n${Object.entries(spec)
      .map(([k, s]) => `  --${k}: ${s.help}`)
      .join('\n')}`
  const fail = (message: string): never => {
    process.stderr.write(`${message}\n${usage()}\n`)
    process.exit(2)
  }
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(
        Object.entries(spec).map(([k, s]) => [
          k,
          { type: typeof s.default === 'boolean' ? 'boolean' : 'string' },
        ]),
      ) as any,
      strict: true,
      allowPositionals: false,
    })
  } catch (error) {
    return fail(String((error as Error).message))
  }
  const out: Record<string, unknown> = {}
  for (const [k, s] of Object.entries(spec)) {
    const given = parsed.values[k]
    if (given === undefined) out[k] = s.default
    else if (typeof s.default === 'number') {
      const n = Number(given)
      if (!Number.isFinite(n) || n < 0) fail(`--${k} must be a number ≥ 0, got ${String(given)}`)
      out[k] = n
    } else out[k] = given
  }
  return out as Values<S>
}

/** Splits a comma-separated flag and checks each item against `valid`. */
export function listFlag<T extends string>(name: string, value: string, valid: readonly T[]): T[] {
  const items = value.split(',').filter(Boolean)
  for (const item of items) {
    if (!valid.includes(item as T)) {
      process.stderr.write(`--${name}: unknown "${item}"; valid: ${valid.join(', ')}\n`)
      process.exit(2)
    }
  }
  return items as T[]
}
