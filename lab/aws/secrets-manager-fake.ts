/**
 * A local stand-in for AWS Secrets Manager that the real `@aws-sdk/client-secrets-manager`
 * talks to through its `endpoint` option. It speaks the service's JSON 1.1 protocol
 * (`POST /`, `X-Amz-Target: secretsmanager.GetSecretValue`) and refuses any request whose SigV4
 * signature does not verify with the test credentials, as AWS would. Only `GetSecretValue` is
 * implemented: it is all a database driver needs.
 *
 * @example
 * ```ts
 * const fake = await startSecretsManagerFake()
 * fake.setSecret('app/db', { username: 'app', password: 'first' })
 * const client = new SecretsManagerClient({ region: fake.region, endpoint: fake.endpoint, credentials: fake.credentials })
 * await client.send(new GetSecretValueCommand({ SecretId: 'app/db' }))
 * fake.setSecret('app/db', { username: 'app', password: 'second' }) // rotation
 * await fake.close()
 * ```
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  LAB_AWS_CREDENTIALS,
  type LabAwsCredentials,
  parseAmzDate,
  sameSignature,
  sha256Hex,
  sigv4Signature,
} from './sigv4.ts'

/** Options of {@link startSecretsManagerFake}. */
export interface SecretsManagerFakeOptions {
  /** The region requests must be signed for (default `us-east-1`). */
  region?: string
  /** The account id in secret ARNs (default `123456789012`). */
  accountId?: string
  /** The only credentials accepted (default {@link LAB_AWS_CREDENTIALS}). */
  credentials?: LabAwsCredentials
}

/** A refused request, as the fake saw it (for tests asserting why). */
export interface RejectedRequest {
  readonly type: string
  readonly reason: string
}

/** A running fake; see {@link startSecretsManagerFake}. */
export interface SecretsManagerFake {
  /** `http://127.0.0.1:<port>`, for the SDK's `endpoint` option. */
  readonly endpoint: string
  readonly region: string
  readonly credentials: LabAwsCredentials
  /** Creates a secret, or rotates it: the new value becomes `AWSCURRENT`, the old `AWSPREVIOUS`. */
  setSecret(name: string, value: string | Record<string, unknown>): { arn: string; versionId: string }
  /** The ARN of an existing secret. */
  arnOf(name: string): string
  /** How many `GetSecretValue` calls passed authentication, for one secret (name or ARN) or all. */
  getSecretValueCount(secretId?: string): number
  /** Requests refused (bad signature, unknown key, unknown secret...), oldest first. */
  readonly rejected: readonly RejectedRequest[]
  /** Delays every answer by `ms` (to make concurrent callers overlap). */
  setResponseDelay(ms: number): void
  /**
   * Rotation step createSecret: a new version labelled `AWSPENDING` (AWSCURRENT unchanged).
   * The caller then changes the database password (setSecret) and later calls {@link finishRotation}.
   */
  createPending(name: string, value: string | Record<string, unknown>): { versionId: string }
  /** Rotation step finishSecret: AWSCURRENT moves to the AWSPENDING version (the old one becomes AWSPREVIOUS, AWSPENDING is removed). */
  finishRotation(name: string): void
  /** The `GetSecretValue` requests that passed authentication, oldest first: the stage asked for. */
  readonly requests: readonly { readonly stage: string; readonly atMs: number }[]
  /**
   * Makes every `GetSecretValue` fail: `throttle` answers `ThrottlingException` (HTTP 400, as AWS
   * does over its request quota), `hang` never answers; `undefined` switches the fault off.
   */
  setFault(fault: 'throttle' | 'hang' | undefined): void
  close(): Promise<void>
}

interface SecretVersion {
  versionId: string
  value: string
  created: number
  stages: string[]
}
interface StoredSecret {
  name: string
  arn: string
  versions: SecretVersion[]
  calls: number
}

class AwsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message)
  }
}

/** Starts the fake on 127.0.0.1 at a random port. */
export async function startSecretsManagerFake(
  options: SecretsManagerFakeOptions = {},
): Promise<SecretsManagerFake> {
  const region = options.region ?? 'us-east-1'
  const accountId = options.accountId ?? '123456789012'
  const credentials = options.credentials ?? LAB_AWS_CREDENTIALS
  const secrets = new Map<string, StoredSecret>()
  const rejected: RejectedRequest[] = []
  const requests: { stage: string; atMs: number }[] = []
  let delayMs = 0
  let fault: 'throttle' | 'hang' | undefined
  const hanging = new Set<ServerResponse>()

  const find = (id: string): StoredSecret | undefined =>
    secrets.get(id) ?? [...secrets.values()].find((s) => s.arn === id)

  function verify(req: IncomingMessage, body: Buffer): void {
    const auth = req.headers.authorization
    if (!auth) throw new AwsError('MissingAuthenticationTokenException', 'Missing Authentication Token')
    const m =
      /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(
        auth,
      )
    if (!m) throw new AwsError('IncompleteSignatureException', 'The Authorization header is malformed.')
    const [, akid, date, scopeRegion, service, signedHeaders, signature] = m as unknown as string[]
    if (akid !== credentials.accessKeyId)
      throw new AwsError(
        'UnrecognizedClientException',
        'The security token included in the request is invalid.',
      )
    if (credentials.sessionToken && req.headers['x-amz-security-token'] !== credentials.sessionToken)
      throw new AwsError(
        'UnrecognizedClientException',
        'The security token included in the request is invalid.',
      )
    if (service !== 'secretsmanager' || scopeRegion !== region)
      throw new AwsError(
        'InvalidSignatureException',
        `Credential should be scoped to a valid region and service: expected ${region}/secretsmanager, got ${scopeRegion}/${service}.`,
      )
    const amzDate = String(req.headers['x-amz-date'] ?? '')
    const signedAt = parseAmzDate(amzDate)
    if (!amzDate.startsWith(date!) || Number.isNaN(signedAt))
      throw new AwsError(
        'IncompleteSignatureException',
        'X-Amz-Date is missing or does not match the credential scope.',
      )
    if (Math.abs(Date.now() - signedAt) > 5 * 60_000)
      throw new AwsError('InvalidSignatureException', 'Signature expired: the request time is too skewed.')
    const names = signedHeaders!.split(';')
    if (!names.includes('host'))
      throw new AwsError('InvalidSignatureException', 'The host header must be signed.')
    const canonicalHeaders = names
      .map((name) => {
        const raw = req.headers[name]
        const value = Array.isArray(raw) ? raw.join(',') : (raw ?? '')
        return `${name}:${String(value).trim().replace(/\s+/g, ' ')}\n`
      })
      .join('')
    const payloadHash = String(req.headers['x-amz-content-sha256'] ?? sha256Hex(body))
    const url = new URL(req.url ?? '/', 'http://fake')
    const canonicalRequest = `${req.method}\n${url.pathname}\n\n${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`
    const expected = sigv4Signature(
      credentials.secretAccessKey,
      amzDate,
      { date: date!, region, service: 'secretsmanager' },
      canonicalRequest,
    )
    if (!sameSignature(expected, signature!))
      throw new AwsError(
        'InvalidSignatureException',
        'The request signature we calculated does not match the signature you provided. ' +
          'Check your AWS Secret Access Key and signing method.',
      )
  }

  function getSecretValue(input: Record<string, unknown>): Record<string, unknown> {
    const id = input.SecretId
    if (typeof id !== 'string' || !id)
      throw new AwsError('InvalidParameterException', 'SecretId is required.')
    const secret = find(id)
    if (!secret)
      throw new AwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.")
    secret.calls++
    const stage = typeof input.VersionStage === 'string' ? input.VersionStage : undefined
    requests.push({ stage: stage ?? 'AWSCURRENT', atMs: Date.now() })
    const versionId = typeof input.VersionId === 'string' ? input.VersionId : undefined
    const version = secret.versions.find((v) =>
      versionId ? v.versionId === versionId : v.stages.includes(stage ?? 'AWSCURRENT'),
    )
    if (!version)
      throw new AwsError(
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret value for VersionId or VersionStage.",
      )
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      SecretString: version.value,
      VersionStages: [...version.stages],
      CreatedDate: version.created / 1000,
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const body = Buffer.concat(chunks)
    const send = (status: number, payload: unknown, errorType?: string) => {
      const text = JSON.stringify(payload)
      const headers: Record<string, string | number> = {
        'content-type': 'application/x-amz-json-1.1',
        'content-length': Buffer.byteLength(text),
        'x-amzn-requestid': randomUUID(),
      }
      if (errorType) headers['x-amzn-errortype'] = `${errorType}:`
      res.writeHead(status, headers).end(text)
    }
    try {
      if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/')
        throw new AwsError('UnknownOperationException', 'Only POST / is served.', 404)
      verify(req, body)
      const target = String(req.headers['x-amz-target'] ?? '')
      if (!String(req.headers['content-type'] ?? '').startsWith('application/x-amz-json-1.1'))
        throw new AwsError('SerializationException', 'Content-Type must be application/x-amz-json-1.1.')
      if (target !== 'secretsmanager.GetSecretValue')
        throw new AwsError('UnknownOperationException', `Operation ${target || '(none)'} is not supported.`)
      let input: Record<string, unknown>
      try {
        input = body.length ? JSON.parse(body.toString('utf8')) : {}
      } catch {
        throw new AwsError('SerializationException', 'The request body is not valid JSON.')
      }
      if (fault === 'hang') {
        hanging.add(res)
        res.once('close', () => hanging.delete(res))
        return
      }
      if (fault === 'throttle') throw new AwsError('ThrottlingException', 'Rate exceeded')
      const output = getSecretValue(input)
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
      send(200, output)
    } catch (e) {
      const err = e instanceof AwsError ? e : new AwsError('InternalServiceError', 'Internal error.', 500)
      rejected.push({ type: err.type, reason: err.message })
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
      send(err.status, { __type: err.type, message: err.message }, err.type)
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy())
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    credentials,
    rejected,
    setSecret(name, value) {
      const text = typeof value === 'string' ? value : JSON.stringify(value)
      let secret = secrets.get(name)
      if (!secret) {
        const suffix = randomBytes(4).toString('base64url').replace(/[-_]/g, 'x').slice(0, 6)
        secret = {
          name,
          arn: `arn:aws:secretsmanager:${region}:${accountId}:secret:${name}-${suffix}`,
          versions: [],
          calls: 0,
        }
        secrets.set(name, secret)
      }
      for (const v of secret.versions) {
        v.stages = v.stages.filter((s) => s !== 'AWSPREVIOUS')
        if (v.stages.includes('AWSCURRENT'))
          v.stages = v.stages.map((s) => (s === 'AWSCURRENT' ? 'AWSPREVIOUS' : s))
      }
      const versionId = randomUUID()
      secret.versions.push({ versionId, value: text, created: Date.now(), stages: ['AWSCURRENT'] })
      return { arn: secret.arn, versionId }
    },
    arnOf(name) {
      const secret = secrets.get(name)
      if (!secret) throw new Error(`no secret named ${name}`)
      return secret.arn
    },
    getSecretValueCount(secretId) {
      if (secretId === undefined) return [...secrets.values()].reduce((n, s) => n + s.calls, 0)
      return find(secretId)?.calls ?? 0
    },
    setResponseDelay(ms) {
      delayMs = Math.max(0, ms)
    },
    requests,
    setFault(next) {
      fault = next
      if (next !== 'hang') for (const res of hanging) res.destroy()
    },
    createPending(name, value) {
      const secret = secrets.get(name)
      if (!secret) throw new Error(`no secret named ${name}`)
      for (const v of secret.versions) v.stages = v.stages.filter((s) => s !== 'AWSPENDING')
      const versionId = randomUUID()
      const text = typeof value === 'string' ? value : JSON.stringify(value)
      secret.versions.push({ versionId, value: text, created: Date.now(), stages: ['AWSPENDING'] })
      return { versionId }
    },
    finishRotation(name) {
      const secret = secrets.get(name)
      const pending = secret?.versions.find((v) => v.stages.includes('AWSPENDING'))
      if (!secret || !pending) throw new Error(`secret ${name} has no AWSPENDING version`)
      for (const v of secret.versions) {
        v.stages = v.stages.filter((s) => s !== 'AWSPREVIOUS')
        if (v.stages.includes('AWSCURRENT'))
          v.stages = v.stages.map((s) => (s === 'AWSCURRENT' ? 'AWSPREVIOUS' : s))
      }
      pending.stages = ['AWSCURRENT']
    },
    close() {
      for (const res of hanging) res.destroy()
      server.closeAllConnections?.()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
