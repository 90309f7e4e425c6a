/**
 * Small value checks shared by the option specs. Each returns `undefined` when the value is fine,
 * or a phrase saying what would be valid.
 *
 * @module
 */

/** A check of one option value: `undefined` when fine, else what would be valid. */
export type Check = (value: unknown) => string | undefined

/** A whole number of milliseconds in `[min, max]`. */
export const milliseconds =
  (min = 0, max = 24 * 3600_000): Check =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
      ? undefined
      : `a whole number of milliseconds from ${min} to ${max}`

/** A whole number in `[min, max]`. */
export const integer =
  (min: number, max: number): Check =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
      ? undefined
      : `a whole number from ${min} to ${max}`

/** One of the listed strings. */
export const oneOf =
  (...values: string[]): Check =>
  (v) =>
    typeof v === 'string' && values.includes(v)
      ? undefined
      : `one of ${values.map((x) => `"${x}"`).join(', ')}`

/** A non-empty string. */
export const nonEmptyString: Check = (v) =>
  typeof v === 'string' && v.trim() !== '' ? undefined : 'a non-empty string'

/** A boolean. */
export const boolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'true or false')

/** A function. */
export const fn: Check = (v) => (typeof v === 'function' ? undefined : 'a function')

/** A plain object. */
export const object: Check = (v) =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? undefined : 'an object'

/** Shows a value in an error message: secrets masked, long values cut. */
export function describeValue(value: unknown, secret = false): string {
  if (secret) return value === undefined || value === null || value === '' ? String(value) : '*** (hidden)'
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return `an array of ${value.length}`
  if (value !== null && typeof value === 'object') return 'an object'
  return `${String(value)} (${typeof value})`
}
