/**
 * Environment variables and runtime detection without depending on a runtime's globals.
 *
 * @module
 */

interface DenoEnv {
  env?: { get(name: string): string | undefined }
  version?: { deno: string }
}
interface ProcessLike {
  env?: Record<string, string | undefined>
  versions?: Record<string, string | undefined>
}

/** The JavaScript runtime the code runs on. */
export type RuntimeName = 'node' | 'deno' | 'bun' | 'unknown'

/**
 * Reads an environment variable, or `undefined` when it is unset or the runtime denies access
 * (Deno without `--allow-env`): a driver must not crash because it may not read its defaults.
 *
 * @example
 * ```ts
 * const host = readEnv('PGHOST') ?? 'localhost'
 * ```
 */
export function readEnv(name: string): string | undefined {
  const deno = (globalThis as { Deno?: DenoEnv }).Deno
  if (deno?.env) {
    try {
      return deno.env.get(name)
    } catch {
      return undefined
    }
  }
  const proc = (globalThis as { process?: ProcessLike }).process
  return proc?.env?.[name]
}

/** Which runtime this is: Bun and Deno are checked first because both also define `process`. */
export function runtimeName(): RuntimeName {
  const g = globalThis as { Bun?: unknown; Deno?: DenoEnv; process?: ProcessLike }
  if (g.Bun !== undefined) return 'bun'
  if (g.Deno?.version) return 'deno'
  if (g.process?.versions?.node) return 'node'
  return 'unknown'
}
