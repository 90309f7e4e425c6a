/**
 * A dialect knows how one kind of cluster describes itself: how to read its topology and how to
 * tell a writer from a reader. The core polls through it and never writes topology SQL itself.
 *
 * @module
 */
import type { DbConnection, StatementOptions } from './connection-factory.ts'
import type { HostAddress, HostInfo, HostRole } from './host.ts'
import type { HostPattern } from './host-pattern.ts'

/** Topology dialects; `auto` (the `dialect` option) detects one on first connect. */
export type DialectName = 'aurora-pg' | 'rds-multi-az-pg' | 'pg' | 'patroni'

/** What a dialect needs besides the connection it reads through. */
export interface TopologyContext {
  /** Maps instance ids to endpoints. */
  readonly hostPattern: HostPattern
  /** Port of instance endpoints when the pattern has none. */
  readonly defaultPort: number
  /** The hosts the user listed (the cluster endpoint, or every host of a self-managed cluster). */
  readonly initialHosts: readonly HostAddress[]
  /** The hosts of the latest topology reading (empty before the first). */
  readonly knownHosts: readonly HostAddress[]
  /** Bound of each request a dialect makes besides its statements (Patroni's REST API). */
  readonly probeTimeoutMs: number
  /** The client's validated options: a dialect reads its own there (the `patroni` dialect: where the REST API is). */
  readonly options: Readonly<Record<string, unknown>>
  /** Asks another host for its role (used where one host cannot describe the others). */
  probeRole(host: HostAddress): Promise<HostRole>
  /** Runs a read-only statement on another host, over the same probe connection (rejects if it cannot). */
  probe<Row>(host: HostAddress, text: string): Promise<Row[]>
  /** Reports a row the dialect ignored and why; the monitor logs each distinct one once. */
  ignoreRow(reason: string): void
}

/**
 * What an instance id must look like to become a host name: RDS identifiers (letters, digits,
 * hyphens) and the lab's addresses (dots). Anything else — empty, `$`, `/`, spaces — would make a
 * host name nobody can reach, or one that means something else.
 */
const INSTANCE_ID = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253})$/

/** Whether `id` can be an instance id; a `null` or non-string id cannot. */
export function isInstanceId(id: unknown): id is string {
  return typeof id === 'string' && INSTANCE_ID.test(id)
}

/**
 * How a kind of cluster reports its topology.
 *
 * @example
 * ```ts
 * const hosts = await auroraPgDialect.readTopology(conn, context)
 * ```
 */
export interface Dialect {
  readonly name: DialectName
  /** Reads every host of the cluster with its role, through `conn` (and `context.probeRole`). */
  readTopology(conn: DbConnection, context: TopologyContext): Promise<HostInfo[]>
}

/** The statement that tells a writable host, whatever the dialect: a standby is in recovery. */
export const ROLE_QUERY = 'select pg_catalog.pg_is_in_recovery() as is_reader'

/** Runs {@link ROLE_QUERY} on `conn` (bounded by `options.timeoutMs` when given). */
export async function readRole(conn: DbConnection, options?: StatementOptions): Promise<HostRole> {
  const [row] = await conn.query<{ is_reader: unknown }>(ROLE_QUERY, [], options)
  // No answer is no proof of being writable: never "writer" by default.
  if (typeof row?.is_reader !== 'boolean')
    throw new Error(`${ROLE_QUERY} gave no boolean (got ${row ? String(row.is_reader) : 'no row'})`)
  return row.is_reader ? 'reader' : 'writer'
}

/**
 * Tells a cluster's dialect from a connection to one of its hosts (the `dialect` option `auto`);
 * the composition hands it in, so the core names no dialect. `options` are the client's (a
 * dialect asked may read its own), `timeoutMs` bounds anything besides the connection's statements.
 */
export type DialectDetector = (
  conn: DbConnection,
  options: Readonly<Record<string, unknown>>,
  timeoutMs: number,
) => Promise<Dialect>
