/**
 * SCRAM-SHA-256's salted password, derived once per client. The derivation (PBKDF2-HMAC-SHA-256,
 * 4096 iterations by default) is the one expensive step of a SCRAM login and it runs
 * synchronously: after a failover every pool connection to the new writer logs in at once, and
 * each derivation blocks the event loop the statements are waiting on. Its result depends only on
 * the password, the role's salt and the iteration count, which the server repeats on every login
 * (and every instance of a cluster shares, the role being replicated), so a client derives it
 * once and reuses it, as pgjdbc's SCRAM client and Neon's proxy do.
 *
 * The remembered values are as sensitive as the password: they live in this closure only (never
 * logged, never in an error), keyed by a keyed hash of the password rather than the password, a
 * handful at most, and are zeroed by {@link SaltedPasswords.clear} when the client ends.
 *
 * @module
 */
import { createHmac, pbkdf2Sync, randomBytes } from 'node:crypto'

/** The salted passwords of one client. */
export interface SaltedPasswords {
  /** `Hi(password, salt, iterations)` of RFC 5802: derived on first use, then remembered. */
  get(password: string, salt: Buffer, iterations: number): Buffer
  /** Forgets (and zeroes) every remembered value. */
  clear(): void
}

/**
 * How many (password, salt, iterations) a client remembers: one per role it logs in as; a
 * rotated password or a new salt replaces the oldest.
 */
const LIMIT = 8

/**
 * Creates an empty cache; `derive` is the derivation (PBKDF2-HMAC-SHA-256 unless a test counts it).
 *
 * @example
 * ```ts
 * const salted = createSaltedPasswords()
 * const key = salted.get(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i)) // derived once
 * salted.clear() // sql.end()
 * ```
 */
export function createSaltedPasswords(
  derive: (password: string, salt: Buffer, iterations: number) => Buffer = (p, s, i) =>
    pbkdf2Sync(p, s, i, 32, 'sha256'),
): SaltedPasswords {
  // Keys hold no password: an HMAC under a key that never leaves this closure.
  const secret = randomBytes(32)
  const values = new Map<string, Buffer>()
  return {
    get(password, salt, iterations) {
      const key = `${createHmac('sha256', secret).update(password).digest('base64')}:${salt.toString('base64')}:${iterations}`
      const known = values.get(key)
      if (known) return known
      const value = derive(password, salt, iterations)
      if (values.size >= LIMIT) {
        const [oldest, old] = values.entries().next().value as [string, Buffer]
        old.fill(0)
        values.delete(oldest)
      }
      values.set(key, value)
      return value
    },
    clear() {
      for (const v of values.values()) v.fill(0)
      values.clear()
    },
  }
}
