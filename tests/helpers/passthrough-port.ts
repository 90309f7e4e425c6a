/**
 * A harness for cases ported from postgres.js's own test suite (porsager/postgres tests/index.js):
 * its `t(name, fn)` where `fn` resolves to `[expected, got, ...cleanup]`, run as a node:test test
 * against our `sql` on a pass-through executor and a throwaway PostgreSQL server.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import type postgres from 'postgres'
import type { HaSql } from '../../src/drivers/postgresjs/mod.ts'
import { driverClient } from './passthrough.ts'
import { type PgServer, startPgServer } from './pg-server.ts'

type AnyOptions = postgres.Options<Record<string, postgres.PostgresType>>

export interface PortHarness {
  /** Starts the server and returns the shared `sql` (postgres.js's suite uses `max: 1`). */
  start(): Promise<HaSql>
  server(): PgServer
  /** A new client on the test server with extra options (postgres.js's `postgres(options)`). */
  client(urlOrOptions?: string | AnyOptions, options?: AnyOptions): HaSql
  /** postgres.js's `t`: the test passes when `expected === got`. */
  t(name: string, options: unknown, fn?: () => Promise<unknown[]> | unknown[]): void
  /** A file in a temporary directory, for `sql.file`. */
  rel(name: string): string
  readonly options: AnyOptions
  readonly idle_timeout: number
  readonly login_scram: { user: string; pass: string }
  delay(ms: number): Promise<void>
}

/** Creates the harness for one test file; stops the server and every client after the file. */
export function portHarness(prefix = 'sql: ', serverSettings?: Record<string, string>): PortHarness {
  let pg: PgServer | undefined
  let dir: string | undefined
  const clients: HaSql[] = []
  const idle_timeout = 1
  const options: AnyOptions = { idle_timeout, connect_timeout: 2, max: 1 }

  after(async () => {
    await Promise.all(clients.map((c) => c.end({ timeout: 0 }).catch(() => {})))
    await pg?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  const harness: PortHarness = {
    options,
    idle_timeout,
    login_scram: { user: 'pgha', pass: 'pgha-test-secret' },
    async start() {
      pg ??= await startPgServer({ settings: serverSettings })
      dir ??= await mkdtemp(join(tmpdir(), 'postgres-ha-files-'))
      await writeFile(join(dir, 'select.sql'), 'select 1 as x')
      await writeFile(join(dir, 'select-param.sql'), 'select $1 as x')
      return harness.client(options)
    },
    server() {
      if (!pg) throw new Error('start() first')
      return pg
    },
    client(urlOrOptions = {}, extra = {}) {
      const url = typeof urlOrOptions === 'string' ? urlOrOptions : harness.server().url
      const { sql } = driverClient(url, typeof urlOrOptions === 'string' ? extra : urlOrOptions)
      clients.push(sql)
      return sql
    },
    rel(name) {
      return join(dir!, name)
    },
    delay: (ms) => new Promise((r) => setTimeout(r, ms)),
    t(name, opts, fn) {
      const body = (typeof opts === 'function' ? opts : fn) as () => Promise<unknown[]>
      const timeoutSec = (typeof opts === 'object' && (opts as { timeout?: number })?.timeout) || 10
      test(prefix + name, { timeout: timeoutSec * 1000 + 5000 }, async () => {
        const x = await body()
        assert.ok(Array.isArray(x), 'test should return a result array')
        const [expected, got] = await Promise.all(x)
        assert.equal(got, expected)
      })
    },
  }
  return harness
}
