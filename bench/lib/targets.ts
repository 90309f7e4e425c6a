/**
 * The targets as every benchmark part reports them: one shape per target and one way to
 * fold them into the `targetsMet` / `targetMissed` fields that `bench/summary.ts` and CI read.
 *
 * @module
 */

/** One target and how the run did; a `null` value (nothing measured) never meets it. */
export interface Target {
  name: string
  op: '≤' | '≥'
  limit: number
  value: number | null
  met: boolean
}

/**
 * A target: `value` must be `op` `limit`.
 *
 * @example
 * ```ts
 * target('lost writes', '≤', 0, 0) // { name: 'lost writes', op: '≤', limit: 0, value: 0, met: true }
 * ```
 */
export function target(name: string, op: Target['op'], limit: number, value: number | null): Target {
  const met = value !== null && Number.isFinite(value) && (op === '≥' ? value >= limit : value <= limit)
  return { name, op, limit, value, met }
}

/**
 * The JSON fields of a part's verdict: whether every target was met, and one line per missed one.
 *
 * @example
 * ```ts
 * verdict([target('lost writes', '≤', 0, 2)])
 * // { targetsMet: false, targetMissed: ['lost writes = 2 (target ≤ 0)'] }
 * ```
 */
export function verdict(targets: readonly Target[]): { targetsMet: boolean; targetMissed: string[] } {
  const missed = targets.filter((t) => !t.met)
  return {
    targetsMet: missed.length === 0,
    targetMissed: missed.map((t) => `${t.name} = ${t.value} (target ${t.op} ${t.limit})`),
  }
}
