/**
 * A ready `proxyStartupModule` for the lab (`startLab({ proxyStartupModule })`): every endpoint
 * becomes an IAM endpoint like RDS's. Configured by the environment of the lab daemon, because a
 * startup module takes no arguments:
 *
 * `POSTGRES_HA_LAB_IAM='{"region":"us-east-1","users":{"iam_user":"<real password>"},"refusalLog":"/tmp/x.jsonl"}'`
 *
 * Roles listed in `users` must log in with an RDS IAM token signed with the lab's test credentials
 * (`LAB_AWS_CREDENTIALS`) for the endpoint connected to; other roles log in with their password.
 * With `refusalLog`, every refused IAM login is appended to that file as one JSON line
 * `{ atMs, user, reason }` (the reason RDS would log; never the token). `startIamLab()` in
 * `lab-iam.ts` sets all of this up.
 *
 * @module
 */
import { appendFileSync } from 'node:fs'
import type { StartupHandler } from '../proxy.ts'
import { createIamStartupHandler } from './iam-startup.ts'
import { labTlsCertificate, type TlsMaterial } from './test-tls.ts'

/** What `POSTGRES_HA_LAB_IAM` holds. */
export interface LabIamConfig {
  region?: string
  users?: Record<string, string>
  refusalLog?: string
  /** The certificate each endpoint address presents (default: the lab certificate for all). */
  certificates?: Record<string, TlsMaterial>
}

const config: LabIamConfig = JSON.parse(process.env.POSTGRES_HA_LAB_IAM || '{}')
const users = new Map(Object.entries(config.users ?? {}))
const refusalLog = config.refusalLog

const handlerFor = (tls: TlsMaterial) =>
  createIamStartupHandler({
    tls,
    region: config.region ?? 'us-east-1',
    upstreamPassword: (user) => users.get(user),
    ...(refusalLog
      ? {
          onRefused: (refusal) => {
            try {
              const line = { atMs: Date.now(), user: refusal.user, reason: refusal.reason }
              appendFileSync(refusalLog, `${JSON.stringify(line)}\n`)
            } catch {
              // A log that cannot be written must not break the endpoint.
            }
          },
        }
      : {}),
  })

const handlers = new Map<string, StartupHandler>()

/** The lab proxy's startup hook for IAM endpoints: each address presents its own certificate. */
export const startupHandler: StartupHandler = (client, connectUpstream) => {
  const address = (client.localAddress ?? '').replace(/^::ffff:/, '')
  let handler = handlers.get(address)
  if (!handler) {
    handler = handlerFor(config.certificates?.[address] ?? labTlsCertificate())
    handlers.set(address, handler)
  }
  return handler(client, connectUpstream)
}
