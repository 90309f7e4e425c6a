/**
 * The fault proxy in front of every instance. Each instance has a `Gate` (its fault state and its
 * live connections); each endpoint address is a `net.Server` that hands a new client to the gate
 * it routes to (an instance endpoint to its own gate, the cluster and reader endpoints to the
 * gate their emulated DNS points at). Faults:
 *
 * - `blackhole`: a silent partition. Connections (new ones too) are accepted, then nothing moves
 *   in either direction and nothing is closed: bytes wait in socket buffers, no RST, no FIN.
 *   `heal` delivers what waited, like TCP retransmission after a partition heals; a server that
 *   died meanwhile is then seen closing.
 * - `latency`: every chunk is delivered `ms` later, in order, both directions.
 *
 * @module
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

/**
 * Runs once per new client connection before bytes are relayed, e.g. to check a token in the
 * startup message. It must return the upstream socket (from `connectUpstream()`), having
 * consumed or replayed whatever it read; reject to refuse the client (it is reset).
 *
 * @example
 * ```ts
 * export const startupHandler: StartupHandler = async (client, connectUpstream) => connectUpstream()
 * ```
 */
export type StartupHandler = (client: Socket, connectUpstream: () => Promise<Socket>) => Promise<Socket>

export const defaultStartup: StartupHandler = (_client, connectUpstream) => connectUpstream()

type Item = Buffer | 'end' | 'reset'

/** One direction of a relayed connection: ordered, optionally delayed delivery. */
class Lane {
  private queue: { due: number; item: Item }[] = []
  private timer?: ReturnType<typeof setTimeout>
  blocked = false

  constructor(
    private readonly conn: Conn,
    private readonly dest: () => Socket | undefined,
  ) {}

  push(item: Item, delayMs: number): void {
    const last = this.queue.at(-1)?.due ?? 0
    if (delayMs <= 0 && this.queue.length === 0 && !this.conn.held) {
      this.deliver(item)
      return
    }
    this.queue.push({ due: Math.max(performance.now() + delayMs, last), item })
    this.schedule()
  }

  schedule(): void {
    if (this.timer || this.conn.held || this.queue.length === 0) return
    const wait = Math.max(0, this.queue[0]!.due - performance.now())
    this.timer = setTimeout(() => {
      this.timer = undefined
      while (this.queue.length && !this.conn.held && this.queue[0]!.due <= performance.now() + 0.5) {
        this.deliver(this.queue.shift()!.item)
      }
      this.schedule()
    }, wait)
  }

  private deliver(item: Item): void {
    const dest = this.dest()
    if (!dest || dest.destroyed) return
    if (item === 'end') dest.end()
    else if (item === 'reset') dest.resetAndDestroy()
    else if (!dest.write(item)) {
      this.blocked = true
      this.conn.updateFlow()
      dest.once('drain', () => {
        this.blocked = false
        this.conn.updateFlow()
      })
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.queue = []
  }
}

/** A client connection relayed to its instance. */
class Conn {
  upstream?: Socket
  held: boolean
  private started = false
  private closed = false
  private pendingClose?: 'end' | 'reset'
  private gone = false
  private readonly toUpstream = new Lane(this, () => this.upstream)
  private readonly toClient = new Lane(this, () => this.client)

  constructor(
    readonly gate: Gate,
    readonly client: Socket,
  ) {
    this.held = gate.fault === 'blackhole'
    client.setNoDelay(true)
    client.pause()
    client.on('error', () => {})
    client.on('close', () => this.close())
    if (!this.held) void this.start()
  }

  private async start(): Promise<void> {
    this.started = true
    let upstream: Socket
    try {
      upstream = await this.gate.startup(this.client, () => this.gate.connectUpstream())
    } catch {
      if (!this.client.destroyed) this.client.resetAndDestroy()
      return
    }
    if (this.closed) return void upstream.destroy()
    this.upstream = upstream
    upstream.setNoDelay(true)
    upstream.on('error', () => this.upstreamGone('reset'))
    upstream.on('end', () => this.upstreamGone('end'))
    upstream.on('close', () => this.upstreamGone('reset'))
    upstream.on('data', (d: Buffer) => this.toClient.push(d, this.gate.latencyMs))
    this.client.on('data', (d: Buffer) => this.toUpstream.push(d, this.gate.latencyMs))
    this.client.on('end', () => this.toUpstream.push('end', this.gate.latencyMs))
    this.updateFlow()
  }

  private upstreamGone(how: 'end' | 'reset'): void {
    if (this.closed || this.gone) return
    this.gone = true
    if (this.held) {
      this.pendingClose ??= how
      return
    }
    this.toClient.push(how, this.gate.latencyMs)
  }

  updateFlow(): void {
    if (this.closed) return
    const pauseClient = this.held || this.toUpstream.blocked || !this.upstream
    const pauseUpstream = this.held || this.toClient.blocked
    if (pauseClient) this.client.pause()
    else this.client.resume()
    if (this.upstream) {
      if (pauseUpstream) this.upstream.pause()
      else this.upstream.resume()
    }
  }

  hold(): void {
    this.held = true
    this.updateFlow()
  }

  release(): void {
    this.held = false
    if (!this.started) return void this.start()
    this.updateFlow()
    this.toUpstream.schedule()
    this.toClient.schedule()
    if (this.pendingClose) this.toClient.push(this.pendingClose, this.gate.latencyMs)
    this.pendingClose = undefined
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.toUpstream.stop()
    this.toClient.stop()
    this.upstream?.destroy()
    if (!this.client.destroyed) this.client.destroy()
    this.gate.conns.delete(this)
  }
}

/** An instance's fault state and its relayed connections. */
export class Gate {
  fault: 'none' | 'blackhole' | 'latency' = 'none'
  latencyMs = 0
  readonly conns = new Set<Conn>()

  constructor(
    readonly id: string,
    /** The server's internal port, or undefined while it is not running. */
    private readonly upstreamPort: () => number | undefined,
    readonly startup: StartupHandler = defaultStartup,
  ) {}

  accept(client: Socket): void {
    this.conns.add(new Conn(this, client))
  }

  connectUpstream(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const port = this.upstreamPort()
      if (!port) return reject(new Error(`${this.id} is not running`))
      const socket = connect({ host: '127.0.0.1', port })
      socket.once('connect', () => {
        socket.removeListener('error', reject)
        resolve(socket)
      })
      socket.once('error', reject)
    })
  }

  blackhole(): void {
    this.fault = 'blackhole'
    this.latencyMs = 0
    for (const c of this.conns) c.hold()
  }

  latency(ms: number): void {
    const wasHeld = this.fault === 'blackhole'
    this.fault = ms > 0 ? 'latency' : 'none'
    this.latencyMs = ms
    if (wasHeld) for (const c of this.conns) c.release()
  }

  heal(): void {
    this.latency(0)
  }

  closeAll(): void {
    for (const c of this.conns) c.close()
  }
}

/** A listening endpoint address; `route` picks the gate for each new client. */
export function listen(host: string, port: number, route: () => Gate | undefined): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ noDelay: true }, (client) => {
      const gate = route()
      if (gate) gate.accept(client)
      else client.resetAndDestroy()
    })
    server.once('error', reject)
    server.listen(port, host, () => {
      server.removeListener('error', reject)
      server.on('error', () => {})
      resolve(server)
    })
  })
}
