/**
 * A TCP server on 127.0.0.1 that accepts connections and never answers: a black-holed database.
 * Given `sslAnswer`, it answers the SSLRequest with it ('S': go ahead with TLS, 'N': no TLS) and is
 * silent from then on, so that a connect stalls in the TLS handshake or in the login instead.
 *
 * @module
 */
import { createServer, type Socket } from 'node:net'
import { type LoopbackServer, listenOnLoopback } from './loopback-server.ts'

/** A silent server; `close()` also destroys the connections it accepted. */
export type SilentServer = LoopbackServer

/**
 * Starts a silent server. Close it in a hook that runs when a test fails too: an open server
 * keeps the process alive, and a failed assertion must fail the file, not hang it.
 *
 * @example
 * ```ts
 * const silent = await silentServer()
 * after(() => silent.close())
 * ```
 */
export async function silentServer(sslAnswer?: 'S' | 'N'): Promise<SilentServer> {
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    if (sslAnswer) s.once('data', () => s.write(sslAnswer))
  })
  return listenOnLoopback(server, sockets)
}
