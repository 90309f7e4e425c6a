/**
 * The set-up shared by test files that run against one throwaway PostgreSQL server: the server
 * starts before the file's tests and stops after them, and every client and TCP server a test
 * registers is ended and closed, whatever the test did.
 */
import { after, before } from 'node:test'
import { type PgServer, startPgServer } from './pg-server.ts'

interface Endable {
  end(options?: { timeout?: number }): Promise<void>
}

export interface SinglePg {
  /** The server (only inside tests: it starts in a `before` hook). */
  readonly pg: PgServer
  /** Ends `sql` after the file's tests; returns it. */
  track<T extends Endable>(sql: T): T
  /** Closes `server` (a `net.Server`, a silent server...) after the file's tests; returns it. */
  closeAfter<T extends Closable>(server: T): T
}

/** What a test file may leave for the `after` hook to close. */
type Closable = { close(): unknown }

/** Registers the file's `before`/`after` hooks; call once at the top level of a test file. */
export function singlePg(): SinglePg {
  let pg: PgServer | undefined
  const clients: Endable[] = []
  const servers: Closable[] = []
  before(async () => {
    pg = await startPgServer()
  })
  after(async () => {
    await Promise.all(clients.map((c) => c.end({ timeout: 0 }).catch(() => {})))
    for (const s of servers) s.close()
    await pg?.stop()
  })
  return {
    get pg() {
      if (!pg) throw new Error('the test server did not start (see the before hook)')
      return pg
    },
    track(sql) {
      clients.push(sql)
      return sql
    },
    closeAfter(server) {
      servers.push(server)
      return server
    },
  }
}
