/** TLS helpers shared by the certificate-verification tests. */

/**
 * The certificate error (`ERR_TLS_CERT_*`) somewhere in `error`'s cause chain, or undefined:
 * postgres-ha may wrap the TLS failure (a failed connect, a failover), so the tests look through
 * a few levels of `cause`.
 */
export function certificateError(error: unknown): { code: string; message: string } | undefined {
  for (
    let e = error as { code?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 6;
    e = e.cause as never, i++
  )
    if (typeof e.code === 'string' && e.code.startsWith('ERR_TLS_CERT')) return e as never
  return undefined
}
