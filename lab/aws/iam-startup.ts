/**
 * The IAM endpoint shaped as the lab proxy's per-connection startup hook
 * (`(client, connectUpstream) => Promise<upstream socket>`), so that the proxy keeps relaying
 * the client's raw bytes itself and its faults (blackhole, latency, kill) apply unchanged.
 *
 * The hook runs the IAM handshake on one end of an in-memory duplex pair and returns the other
 * end as the "upstream": the proxy relays the client's (TLS-encrypted) bytes into it; behind it
 * the TLS session is decrypted and piped to the real server, logged in with the role's password.
 * A refused login is not a rejection: the client receives RDS's FATAL error, then a clean end.
 *
 * @example
 * ```ts
 * const gate = new Gate(id, () => port, createIamStartupHandler({ tls: labTlsCertificate(), upstreamPassword }))
 * ```
 *
 * @module
 */
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { createIamHandshake, type IamEndpointOptions, IamRefusedError } from './iam-handshake.ts'

/** Two connected in-memory streams: what is written to one is read from the other. */
function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = []
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _encoding, callback) {
        peer().push(chunk)
        callback()
      },
      final(callback) {
        peer().push(null)
        callback()
      },
      destroy(error, callback) {
        if (!peer().destroyed) peer().destroy()
        callback(error)
      },
    })
  sides.push(
    make(() => sides[1]!),
    make(() => sides[0]!),
  )
  return [sides[0]!, sides[1]!]
}

/** Gives a stream the two `net.Socket` methods the proxy calls on an upstream besides the stream API. */
function socketLike(stream: Duplex): Socket {
  return Object.assign(stream, {
    setNoDelay: () => stream,
    resetAndDestroy: () => stream.destroy(),
  }) as unknown as Socket
}

/** Builds the lab proxy's startup hook for an IAM endpoint; see the module doc. */
export function createIamStartupHandler(
  options: Omit<IamEndpointOptions, 'pipe'>,
): (client: Socket, connectUpstream: () => Promise<Socket>) => Promise<Socket> {
  const handshake = createIamHandshake({ ...options, pipe: true })
  return async (client, connectUpstream) => {
    const [outer, inner] = duplexPair()
    const toInner = (d: Buffer) => outer.write(d)
    const toClient = (d: Buffer) => client.write(d)
    const endInner = () => outer.end()
    client.on('data', toInner).on('end', endInner)
    outer.on('data', toClient)
    client.resume()
    const detach = () => {
      client.pause()
      outer.pause()
      client.off('data', toInner).off('end', endInner)
      outer.off('data', toClient)
    }
    try {
      await handshake(socketLike(inner), connectUpstream, client)
    } catch (e) {
      client.pause()
      client.off('data', toInner).off('end', endInner)
      if (!(e instanceof IamRefusedError)) {
        outer.destroy()
        throw e
      }
      // RDS's error is still flowing out through the TLS session: let it reach the client, then
      // end cleanly (a rejection would make the proxy reset the client and could drop the error).
      const refused = new Duplex({ read() {}, write: (_c, _e, cb) => cb() })
      const finish = () => refused.push(null)
      outer.once('end', finish).once('close', finish)
      outer.resume()
      return socketLike(refused)
    }
    detach()
    return socketLike(outer)
  }
}
