/**
 * The set-up of the test files that end a connection under statements and check what became of
 * them: a shared two-node lab, a postgres-ha client, a raw postgres.js client of its own to look
 * from outside, a table of this run's own (the lab may be shared with other files), and a watch for
 * anything thrown outside the caller. {@link lossLab} registers its `before` and `after` hooks.
 *
 * @module
 */
import { after, before } from 'node:test'
import postgres from 'postgres'
import type { Lab } from '../../lab/mod.ts'
import { type PostgresHaSql, postgresHa } from '../../mod.ts'
import { type CrashWatch, watchCrashes } from './crash-watch.ts'
import { labClientOptions, settle, within } from './ha.ts'
import { sharedLab } from './shared-lab.ts'

export interface LossLab {
  /** Set in `before`. */
  readonly lab: Lab
  /** The postgres-ha client (default lab client options); set in `before`. */
  readonly sql: PostgresHaSql
  /** A raw postgres.js client (`max: 1`) on the cluster endpoint; set in `before`. */
  readonly admin: postgres.Sql
  /** `<prefix>_<pid>_<time>`, created in `before` with an `id int primary key` column. */
  readonly table: string
  readonly crashes: CrashWatch
}

/** Registers the hooks that open and close a {@link LossLab} around the file's tests. */
export function lossLab(prefix: string): LossLab {
  const table = `${prefix}_${process.pid}_${Date.now().toString(36)}`
  const crashes = watchCrashes()
  let lab: Lab | undefined
  let sql: PostgresHaSql | undefined
  let admin: postgres.Sql | undefined
  before(async () => {
    lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
    sql = postgresHa(lab.url('cluster'), labClientOptions())
    admin = postgres(lab.url('cluster'), { max: 1, onnotice: () => {} })
    await sql.unsafe(`create table ${table} (id int primary key)`)
  })
  after(async () => {
    try {
      await sql?.unsafe(`drop table if exists ${table}`)
    } finally {
      await sql?.end()
      await admin?.end()
      await lab?.down()
      crashes.stop()
    }
  })
  const opened = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is opened in before()`)
    return value
  }
  return {
    get lab() {
      return opened(lab, 'the lab')
    },
    get sql() {
      return opened(sql, 'the postgres-ha client')
    },
    get admin() {
      return opened(admin, 'the admin client')
    },
    table,
    crashes,
  }
}

/**
 * Runs `inScope` in a transaction of `sql` (`where`: in its own scope, or in a savepoint of it)
 * whose connection the test loses; resolves with how `sql.begin` settled, once the body has
 * returned (bounded) and 300 ms more, for anything postgres.js might still do with the dead
 * connection (a setImmediate write).
 */
export async function beginLosing(
  sql: PostgresHaSql,
  where: 'transaction' | 'savepoint',
  inScope: (scope: postgres.TransactionSql) => Promise<void>,
): Promise<Awaited<ReturnType<typeof settle>>> {
  let bodyDone!: () => void
  const body = new Promise<void>((resolve) => (bodyDone = resolve))
  const result = await settle(
    sql.begin(async (tx) => {
      try {
        if (where === 'transaction') await inScope(tx)
        else await tx.savepoint(inScope)
      } finally {
        bodyDone()
      }
    }),
  )
  await within(body, 'the transaction body', 30_000)
  await new Promise((r) => setTimeout(r, 300))
  return result
}
