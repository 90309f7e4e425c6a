/**
 * Ports for lab servers and endpoints, chosen below the kernel's range of ephemeral ports.
 *
 * Why: a lab stops and restarts servers on purpose, and a restarted server must get its old port
 * back (the standbys' `primary_conninfo` and the endpoints name it). A port the OS handed out
 * (`listen(0)`) lies in the ephemeral range, which every outgoing connection on the machine also
 * draws its local port from: while the server was down, a client connection could take that port
 * as its own end, and the restart failed with "could not bind ... Address already in use" (seen
 * in a loaded CI run). Below that range no outgoing connection ever gets a port by itself.
 *
 * A port handed out stays reserved machine-wide for the process that asked (port-reservations.ts):
 * while a lab's server is down, another lab's port search on the machine must not take its port.
 *
 * @module
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { releasePort, reservePort } from './port-reservations.ts'

/** Used where the kernel's range cannot be read (not Linux): Linux's default range starts at 32768. */
const DEFAULT_EPHEMERAL_START = 32768
/** The lowest port handed out: clear of the well-known and most registered service ports. */
const LOWEST = 20000
const TRIES = 200

/** The first port of the kernel's ephemeral range. */
export function ephemeralStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)
    const n = Number(low)
    return Number.isInteger(n) && n > 1024 ? n : DEFAULT_EPHEMERAL_START
  } catch {
    return DEFAULT_EPHEMERAL_START
  }
}

/** A range of ports: `low` included, `high` excluded. */
export interface PortRange {
  low: number
  high: number
}

/**
 * A TCP port free on `host` and reserved for this process until it exits or calls `releasePort`,
 * chosen at random in `range` (default: below the ephemeral range, see the module doc); falls
 * back to one the OS picks (not reserved) when that range is too small or full.
 */
export async function freePort(host = '127.0.0.1', range?: PortRange): Promise<number> {
  const high = range?.high ?? ephemeralStart()
  const low = range?.low ?? Math.min(LOWEST, Math.max(1025, high - 10_000))
  if (range ? high > low : high - low >= 100)
    for (let i = 0; i < TRIES; i++) {
      const port = low + Math.floor(Math.random() * (high - low))
      if (!reservePort(port)) continue
      if (await canListen(host, port)) return port
      releasePort(port)
    }
  return osPort(host)
}

/** Whether a server can listen on `host:port` right now. */
export function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, host, () => server.close(() => resolve(true)))
  })
}

function osPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })
}
