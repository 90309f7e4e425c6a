/**
 * A test's own TCP server on 127.0.0.1, on a free port, whose `close()` also destroys the
 * connections it tracked: an open server or socket keeps the process alive, and a failed
 * assertion must fail the file, not hang it.
 *
 * @module
 */
import type { Server, Socket } from 'node:net'

/** A listening test server: clients connect to `port`; `close()` ends it and its connections. */
export interface LoopbackServer {
  readonly port: number
  close(): void
}

/**
 * Listens with `server` on 127.0.0.1 (a free port); `close()` destroys every socket in `sockets`
 * (the server's connection handler adds them) and closes the server.
 *
 * @example
 * ```ts
 * const sockets = new Set<Socket>()
 * const { port, close } = await listenOnLoopback(createServer((s) => sockets.add(s)), sockets)
 * ```
 */
export async function listenOnLoopback(server: Server, sockets: Set<Socket>): Promise<LoopbackServer> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as { port: number }).port,
    close() {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}
