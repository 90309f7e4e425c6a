/**
 * What a Patroni lab runs: the binaries it needs (with the install hint when missing), the etcd
 * command line, and each member's Patroni configuration. Patroni reads YAML; JSON is YAML, so the
 * configuration is written with `JSON.stringify`.
 *
 * @module
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ADMIN_PASSWORD, ADMIN_USER } from '../instance.ts'
import type { PgBin } from '../pg-bin.ts'

/** The Debian packages a Patroni lab needs. */
export const PATRONI_PACKAGES = 'patroni etcd-server etcd-client'

/**
 * Patroni's timings: `loop_wait + 2 × retry_timeout ≤ ttl`; a killed leader's key expires after
 * `ttl`, so a kill is replaced ~`ttl` later. 7 s rather than 10: each Patroni test file waits for
 * one kill per runtime; a DCS or PostgreSQL call may still take 3 s (`retry_timeout`) before the
 * leader gives up its key on a loaded machine. Patroni 3.0.2 enforces no minimum.
 */
export const TIMINGS = { ttl: 7, loop_wait: 1, retry_timeout: 3 } as const

/** The executables of a Patroni lab, from PATH. */
export interface PatroniBins {
  patroni: string
  patronictl: string
  etcd: string
}

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (dir && existsSync(join(dir, name))) return join(dir, name)
  }
  return undefined
}

/** The Patroni and etcd executables, or undefined when any is missing. */
export function findPatroniBins(): PatroniBins | undefined {
  const patroni = which('patroni')
  const patronictl = which('patronictl')
  const etcd = which('etcd')
  return patroni && patronictl && etcd ? { patroni, patronictl, etcd } : undefined
}

/** The same, or an error that says what to install. */
export function requirePatroniBins(): PatroniBins {
  const bins = findPatroniBins()
  if (!bins) {
    throw new Error(
      `a Patroni lab needs patroni, patronictl and etcd on PATH: ` +
        `apt-get update && apt-get install -y ${PATRONI_PACKAGES}`,
    )
  }
  return bins
}

/** One member's addresses and folders. */
export interface MemberLayout {
  /** The member's address, also its lab id (`127.0.0.31`). */
  id: string
  /** Its Patroni name, also its `application_name` on the leader (`n31`). */
  name: string
  pgPort: number
  restPort: number
  /** PostgreSQL's data directory (`<lab>/data/<id>`, where the crash-safe `down` looks). */
  dataDir: string
  /** Patroni's own folder: configuration, pgpass, the Unix socket. */
  home: string
}

/** The etcd arguments of a single-member etcd on loopback. */
export function etcdArgs(dataDir: string, clientPort: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${clientPort}`
  const peer = `http://127.0.0.1:${peerPort}`
  return [
    '--name',
    'lab',
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    client,
    '--advertise-client-urls',
    client,
    '--listen-peer-urls',
    peer,
    '--initial-advertise-peer-urls',
    peer,
    '--initial-cluster',
    `lab=${peer}`,
    '--log-level',
    'warn',
  ]
}

/** One member's Patroni configuration. */
export function memberConfig(
  m: MemberLayout,
  o: { scope: string; etcdPort: number; bin: PgBin; synchronous: boolean },
) {
  const hba = [
    'local all all trust',
    `host replication ${ADMIN_USER} 127.0.0.0/8 scram-sha-256`,
    'host all all 127.0.0.0/8 scram-sha-256',
  ]
  return {
    scope: o.scope,
    name: m.name,
    log: { level: 'INFO' },
    restapi: { listen: `${m.id}:${m.restPort}`, connect_address: `${m.id}:${m.restPort}` },
    etcd3: { hosts: `127.0.0.1:${o.etcdPort}` },
    bootstrap: {
      dcs: {
        ...TIMINGS,
        maximum_lag_on_failover: 1048576,
        synchronous_mode: o.synchronous,
        postgresql: {
          use_pg_rewind: true,
          use_slots: true,
          // The template's values: anything else would leave every member "pending restart".
          parameters: {
            max_connections: 200,
            max_wal_senders: 16,
            wal_log_hints: 'on',
            wal_keep_size: '512MB',
            hot_standby: 'on',
          },
        },
      },
    },
    postgresql: {
      listen: `${m.id}:${m.pgPort}`,
      connect_address: `${m.id}:${m.pgPort}`,
      data_dir: m.dataDir,
      bin_dir: o.bin.dir,
      pgpass: join(m.home, 'pgpass'),
      // Patroni's own connections use the socket: its bootstrap pg_hba trusts only the member's
      // address, and on loopback every connection comes from 127.0.0.1.
      use_unix_socket: true,
      authentication: {
        superuser: { username: ADMIN_USER, password: ADMIN_PASSWORD },
        replication: { username: ADMIN_USER, password: ADMIN_PASSWORD },
        rewind: { username: ADMIN_USER, password: ADMIN_PASSWORD },
      },
      pg_hba: hba,
      parameters: {
        unix_socket_directories: m.home,
        // The lab loses processes, never the OS (see lab/instance.ts).
        fsync: 'off',
        // Its pg_rewind's file listing was JIT-compiled on each rewind (see lab/instance.ts).
        jit: 'off',
        wal_receiver_status_interval: '1s',
        wal_retrieve_retry_interval: '50ms',
        log_min_messages: 'warning',
        // Segments in the data folder, not /dev/shm: a killed member leaks none (lab/shared-memory.ts).
        dynamic_shared_memory_type: 'mmap',
      },
    },
  }
}
