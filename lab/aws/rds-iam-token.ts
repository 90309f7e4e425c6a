/**
 * Checks an RDS IAM authentication token the way RDS does before it lets an IAM user in.
 *
 * The token `@aws-sdk/rds-signer` makes is a SigV4 presigned URL without its scheme:
 * `host:port/?Action=connect&DBUser=u&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID/20240131/us-east-1/rds-db/aws4_request&X-Amz-Date=...&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=...`
 * (plus `X-Amz-Security-Token` for temporary credentials). The check recomputes the signature with
 * the secret key, then compares what was signed with what this database is: region, service
 * `rds-db`, one of its endpoints, the user logging in, and the token's 15-minute lifetime.
 *
 * @example
 * ```ts
 * const verdict = verifyRdsIamToken({
 *   token, user: 'app', region: 'us-east-1', credentials: LAB_AWS_CREDENTIALS,
 *   endpoints: [{ host: '127.0.0.2', port: 5432 }],
 * })
 * if (!verdict.ok) console.log(verdict.reason)
 * ```
 *
 * @module
 */
import {
  awsUriEscape,
  type LabAwsCredentials,
  parseAmzDate,
  sameSignature,
  sha256Hex,
  sigv4Signature,
} from './sigv4.ts'

/** What a token must match to be accepted. */
export interface RdsIamTokenCheck {
  /** The password the client sent. */
  readonly token: string
  /** The user of the startup message: the token's `DBUser` must be this user. */
  readonly user: string
  /** The region this database is in. */
  readonly region: string
  /** The `host:port` names a token may be signed for (this instance's endpoint, maybe its cluster's). */
  readonly endpoints: readonly { readonly host: string; readonly port: number }[]
  /** The IAM identities allowed to connect (the lab knows their secret keys). */
  readonly credentials: LabAwsCredentials | readonly LabAwsCredentials[]
  /** Epoch milliseconds to check expiry against (default `Date.now()`); tests move it. */
  readonly now?: number
}

/** The outcome of {@link verifyRdsIamToken}: accepted, or refused with the reason RDS would log. */
export type RdsIamTokenVerdict =
  | { readonly ok: true; readonly accessKeyId: string; readonly expiresAt: number }
  | { readonly ok: false; readonly reason: string }

/** RDS accepts tokens for at most 15 minutes. */
const MAX_EXPIRES_SECONDS = 900
/** How far in the future a signing time may be before the token is refused (clock skew). */
const MAX_SKEW_MS = 5 * 60_000
const EMPTY_PAYLOAD_HASH = sha256Hex('')

/** Verifies an RDS IAM auth token; never throws. */
export function verifyRdsIamToken(check: RdsIamTokenCheck): RdsIamTokenVerdict {
  const refuse = (reason: string): RdsIamTokenVerdict => ({ ok: false, reason })
  const slash = check.token.indexOf('/?')
  if (slash <= 0) return refuse('malformed token: expected host:port/?Action=connect&...')
  const hostPort = check.token.slice(0, slash)
  const params = new Map<string, string>()
  for (const pair of check.token.slice(slash + 2).split('&')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) return refuse('malformed token: a query parameter has no value')
    let key: string
    let value: string
    try {
      key = decodeURIComponent(pair.slice(0, eq))
      value = decodeURIComponent(pair.slice(eq + 1))
    } catch {
      return refuse('malformed token: bad percent-encoding')
    }
    if (params.has(key)) return refuse(`malformed token: ${key} appears twice`)
    params.set(key, value)
  }
  const get = (key: string) => params.get(key)
  if (get('Action') !== 'connect') return refuse('token is not for Action=connect')
  if (get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256')
    return refuse('token is not signed with AWS4-HMAC-SHA256')
  if (get('X-Amz-SignedHeaders') !== 'host') return refuse('token must sign exactly the host header')
  const signature = get('X-Amz-Signature')
  const amzDate = get('X-Amz-Date')
  const expires = Number(get('X-Amz-Expires'))
  const dbUser = get('DBUser')
  const scope = /^([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request$/.exec(get('X-Amz-Credential') ?? '')
  if (!signature || !amzDate || !dbUser || !scope || !Number.isInteger(expires))
    return refuse('malformed token: a required X-Amz-* parameter or DBUser is missing')
  const [, accessKeyId, date, region, service] = scope as unknown as string[]
  const signedAt = parseAmzDate(amzDate)
  if (Number.isNaN(signedAt) || !amzDate.startsWith(date!))
    return refuse('malformed token: X-Amz-Date does not match the credential scope')

  const identities = Array.isArray(check.credentials)
    ? check.credentials
    : [check.credentials as LabAwsCredentials]
  const identity = identities.find((c) => c.accessKeyId === accessKeyId)
  if (!identity) return refuse(`token is signed by an unknown access key ${accessKeyId}`)

  const canonicalQuery = [...params]
    .filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => [awsUriEscape(k), awsUriEscape(v)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&')
  const canonicalRequest = `GET\n/\n${canonicalQuery}\nhost:${hostPort}\n\nhost\n${EMPTY_PAYLOAD_HASH}`
  const expected = sigv4Signature(
    identity.secretAccessKey,
    amzDate,
    { date: date!, region: region!, service: service! },
    canonicalRequest,
  )
  if (!sameSignature(expected, signature))
    return refuse('token signature does not match (tampered, or signed with another secret key)')

  if (identity.sessionToken !== undefined && get('X-Amz-Security-Token') !== identity.sessionToken)
    return refuse('token lacks the session token of the temporary credentials that signed it')
  if (service !== 'rds-db') return refuse(`token is signed for service ${service}, not rds-db`)
  if (region !== check.region)
    return refuse(`token is signed for region ${region}, but this database is in ${check.region}`)
  const endpoint = check.endpoints.find((e) => `${e.host}:${e.port}`.toLowerCase() === hostPort.toLowerCase())
  if (!endpoint)
    return refuse(
      `token is for host ${hostPort}, not for this endpoint (${check.endpoints.map((e) => `${e.host}:${e.port}`).join(', ')})`,
    )
  if (dbUser !== check.user) return refuse(`token is for user "${dbUser}", not "${check.user}"`)
  if (expires <= 0 || expires > MAX_EXPIRES_SECONDS)
    return refuse(`token lifetime X-Amz-Expires=${expires} s is outside 1..${MAX_EXPIRES_SECONDS}`)
  const now = check.now ?? Date.now()
  const expiresAt = signedAt + expires * 1000
  if (now > expiresAt) return refuse(`token expired at ${new Date(expiresAt).toISOString()}`)
  if (signedAt - now > MAX_SKEW_MS)
    return refuse(`token is signed in the future (${new Date(signedAt).toISOString()})`)
  return { ok: true, accessKeyId: accessKeyId!, expiresAt }
}
