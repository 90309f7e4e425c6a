/**
 * A TCP relay in front of a real PostgreSQL server that shows a test each chunk a client sends
 * before passing it on, and lets the test hold a chunk back (it never reaches the server). Tests
 * use it to land an abort or an `end()` at an exact point of a connection's life, such as while
 * postgres.js's array-type fetch is in flight.
 *
 * @module
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { type LoopbackServer, listenOnLoopback } from './loopback-server.ts'

/** What the relay does with a chunk a client sent: pass it to the server, or hold it back. */
export type ChunkVerdict = 'pass' | 'hold'

/** A running relay: clients connect to `port`; `close()` ends every relayed connection. */
export type StatementRelay = LoopbackServer

/** Starts a relay to `127.0.0.1:port`; `onChunk` sees each client chunk as latin1 text. */
export async function statementRelay(
  port: number,
  onChunk: (text: string) => ChunkVerdict,
): Promise<StatementRelay> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((down) => {
    sockets.add(down)
    const up = connect(port, '127.0.0.1')
    sockets.add(up)
    down.on('error', () => {})
    up.on('error', () => down.destroy())
    down.on('close', () => up.destroy())
    up.on('close', () => down.destroy())
    up.pipe(down)
    down.on('data', (chunk: Buffer) => {
      if (onChunk(chunk.toString('latin1')) === 'hold') return
      if (!up.destroyed) up.write(chunk)
    })
  })
  return listenOnLoopback(server, sockets)
}
