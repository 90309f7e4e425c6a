/**
 * Whether a host answers at all — the one question behind re-checking a host marked down, telling
 * an unreachable instance address, and verifying the other readers after a reader loss. Any
 * answer counts, an error answer included (refused credentials, too many connections): that is a
 * live server, judged by its statements. Only silence or a refused or broken connection is none.
 *
 * @module
 */
import type { ConnectionFactory, ErrorKind } from './connection-factory.ts'
import type { HostAddress } from './host.ts'

/** Whether an error of this kind came from a live server (anything but silence or a refused or broken connection). */
export function isAnswer(kind: ErrorKind): boolean {
  return kind !== 'connect-failed' && kind !== 'connection-lost'
}

/**
 * Opens a probe connection to `host` and drops it. Resolves `undefined` when the host answered,
 * else the kind of failure (`connect-failed` or `connection-lost`).
 *
 * @example
 * ```ts
 * if ((await noAnswerFrom(factory, host, probeTimeoutMs)) === undefined) marks.markUp(host)
 * ```
 */
export async function noAnswerFrom(
  factory: ConnectionFactory,
  host: HostAddress,
  timeoutMs: number,
): Promise<ErrorKind | undefined> {
  try {
    const conn = await factory.connect({ host, purpose: 'probe', timeoutMs })
    conn.abort()
    return undefined
  } catch (error) {
    const kind = factory.classify(error)
    return isAnswer(kind) ? undefined : kind
  }
}
