/**
 * Names an error the way a caller would branch on it: postgres-ha's classes by name,
 * `PostgresError` with its SQLSTATE, anything else by name and code (e.g. `Error ECONNREFUSED`).
 *
 * @module
 */

/**
 * The class of `error` for the benchmarks' "errors seen by the caller" counts.
 *
 * @example
 * ```ts
 * errorClass(new FailoverSuccessError('a:1', 'b:1')) // 'FailoverSuccessError'
 * ```
 */
export function errorClass(error: unknown): string {
  if (isHaError(error)) return (error as object).constructor.name
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    return code === undefined ? error.name : `${error.name} ${String(code)}`
  }
  return typeof error
}

/** Adds the counts of `more` into `into`. */
export function addCounts(
  into: Record<string, number>,
  more: Record<string, number>,
): Record<string, number> {
  for (const [k, v] of Object.entries(more)) into[k] = (into[k] ?? 0) + v
  return into
}

/**
 * By the class's name, not `instanceof`: the error may come from the built package (`dist/`),
 * whose `HaError` is another class object than the sources'.
 */
function isHaError(error: unknown): boolean {
  for (let p = error; p !== null && typeof p === 'object'; p = Object.getPrototypeOf(p))
    if ((p as object).constructor?.name === 'HaError') return true
  return false
}
