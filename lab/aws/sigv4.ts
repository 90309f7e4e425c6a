/**
 * The pieces of AWS Signature Version 4 the lab's AWS stand-ins need to check a signature the
 * way AWS does: recompute it from the request and the secret key, compare in constant time.
 *
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

/** Static credentials the lab's AWS stand-ins accept. Test-only values, never real ones. */
export interface LabAwsCredentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  /** Set for temporary credentials; requests must then carry the same session token. */
  readonly sessionToken?: string
}

/**
 * Clearly fake credentials shared by the lab and the tests. Their shape follows AWS's (an `AKID`
 * prefix, a 40-character secret) so that the SDKs accept them, but they open nothing anywhere.
 */
export const LAB_AWS_CREDENTIALS: LabAwsCredentials = Object.freeze({
  accessKeyId: 'AKIDTESTLABONLY00000',
  secretAccessKey: 'test-only-lab-secret-key-not-a-real-one0',
})

/** Lowercase hex SHA-256 of a string or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** URI-encodes per RFC 3986, as SigV4 canonicalisation requires (`encodeURIComponent` leaves `!'()*`). */
export function awsUriEscape(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  )
}

/** The SigV4 signature (hex) of `canonicalRequest` under the given scope and secret key. */
export function sigv4Signature(
  secretAccessKey: string,
  amzDate: string,
  scope: { date: string; region: string; service: string },
  canonicalRequest: string,
): string {
  const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest()
  const kDate = hmac(`AWS4${secretAccessKey}`, scope.date)
  const kRegion = hmac(kDate, scope.region)
  const kService = hmac(kRegion, scope.service)
  const kSigning = hmac(kService, 'aws4_request')
  const credentialScope = `${scope.date}/${scope.region}/${scope.service}/aws4_request`
  const stringToSign = `AWS4-HMAC-SHA256\n${amzDate}\n${credentialScope}\n${sha256Hex(canonicalRequest)}`
  return createHmac('sha256', kSigning).update(stringToSign).digest('hex')
}

/** Compares two hex signatures without leaking where they differ. */
export function sameSignature(expected: string, given: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(given)) return false
  return timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(given, 'hex'))
}

/** Epoch milliseconds of an `X-Amz-Date` (`20240131T235959Z`), or `NaN` if malformed. */
export function parseAmzDate(value: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value)
  if (!m) return Number.NaN
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!)
}
