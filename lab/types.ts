/**
 * The lab's public shapes: options, node and status documents, events. Shared by the API
 * (`mod.ts`), the CLI and the background control plane, which exchange them as JSON.
 *
 * @module
 */

/** Which managed service the lab impersonates in SQL. */
export type LabDialect = 'aurora-pg' | 'rds-multi-az-pg' | 'pg'

/**
 * Who manages the cluster: the lab's own control plane (`lab`, Aurora-like, with endpoints and
 * every fault), or Patroni with etcd (`patroni`: real Patroni decides; plain `pg` SQL, no
 * endpoints; kill, stop, start, switchover).
 */
export type LabManager = 'lab' | 'patroni'

/**
 * Options of `startLab` and `npm run lab -- up`. Every field is optional.
 *
 * @example
 * ```ts
 * await using lab = await startLab({ nodes: 3, promoteAfterMs: 200, endpointLagMs: 0 })
 * ```
 */
export interface LabOptions {
  /** Total instances, writer included: 1 to 9 (default 3). */
  nodes?: number
  /** The cluster manager (default `lab`). `patroni` needs the Debian packages `patroni etcd-server etcd-client`. */
  manager?: LabManager
  /** SQL surface to emulate (default `aurora-pg`). */
  dialect?: LabDialect
  /** Delay between detecting the writer's loss and promoting a reader (default 1000). */
  promoteAfterMs?: number
  /** Delay before the cluster and reader endpoints follow a topology change (default 30000). */
  endpointLagMs?: number
  /** A writer that answers no probe for this long is lost (default 1000). */
  probeTimeoutMs?: number
  /** Asynchronous replication instead of `ANY 1 (...)` synchronous replication. */
  async?: boolean
  /** Lab folder (default: a fresh folder under `<repo>/.lab/`, removed by `down`). */
  dir?: string
  /** The TCP port every endpoint listens on (default: a free one). */
  port?: number
  /**
   * Path of a module exporting `startupHandler` (see `lab/proxy.ts`), run by every endpoint proxy
   * for each new client connection, e.g. to check an auth token before connecting upstream.
   */
  proxyStartupModule?: string
}

/** One instance as the control plane sees it. */
export interface LabNode {
  /** The instance id, also its endpoint address (e.g. `127.0.0.11`). */
  id: string
  role: 'writer' | 'reader' | 'down'
  host: string
  port: number
  state: 'running' | 'stopped' | 'killed' | 'frozen'
  fault: 'none' | 'blackhole' | 'latency'
  latencyMs?: number
}

/** A timestamped control-plane event; `atMs` is epoch milliseconds with a fraction. */
export interface LabEvent {
  type:
    | 'up'
    | 'writer-lost'
    | 'writer-recovered'
    | 'promoted'
    | 'writer-ready'
    | 'endpoint-moved'
    | 'reader-rejoined'
    | 'reader-added'
    | 'reader-removed'
    | 'fault'
    | 'heal'
    | 'switchover'
    | 'fenced'
    | 'failover-failed'
    | (string & {})
  atMs: number
  node?: string
  detail?: Record<string, unknown>
}

/** Measured against the targets when the lab came up. */
export interface LabTargets {
  upMs: number
  upTargetMs: number
  killToWriterReadyTargetMs: number
}

/** How to reach a Patroni lab's Patroni (`status().patroni`). */
export interface PatroniLabInfo {
  /** Patroni's `scope` (the cluster name in etcd). */
  scope: string
  /** The REST API port, the same on every member's address. */
  restPort: number
  /** etcd's client URL. */
  etcd: string
  ttl: number
  loop_wait: number
  retry_timeout: number
  synchronousMode: boolean
  /** Each member: its id (address), Patroni name and REST API URL. */
  members: { id: string; name: string; restUrl: string }[]
}

/** The document printed by `up`, `status` and returned by `lab.status()`. */
export interface LabStatus {
  dir: string
  dialect: LabDialect
  manager: LabManager
  port: number
  database: string
  user: string
  password: string
  nodes: LabNode[]
  writer: string | null
  clusterEndpoint: { host: string; port: number }
  readerEndpoint: { host: string; port: number }
  /**
   * Maps an instance name to its endpoint: `?` (the id is the address) for `aurora-pg` and `pg`;
   * `127.0.0.?` for `rds-multi-az-pg`, whose drivers take the first DNS label of
   * `rds_tools.show_topology().endpoint` (e.g. `11` of `11.lab-instance`).
   */
  instanceHostPattern: string
  events: LabEvent[]
  options: Required<Omit<LabOptions, 'dir' | 'port' | 'proxyStartupModule'>>
  /** Present when `manager` is `patroni`. */
  patroni?: PatroniLabInfo
  pgVersion: string
  pgBin: string
  targets: LabTargets
}
