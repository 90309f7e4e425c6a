/**
 * A ready `proxyStartupModule` for the lab (`startLab({ proxyStartupModule })`): every endpoint
 * becomes an IAM endpoint like RDS's. Configured by the environment of the lab daemon, because a
 * startup module takes no arguments:
 *
 * `POSTGRES_HA_LAB_IAM='{"region":"us-east-1","users":{"iam_user":"<real password>"}}'`
 *
 * Roles listed in `users` must log in with an RDS IAM token signed with the lab's test credentials
 * (`LAB_AWS_CREDENTIALS`) for the endpoint connected to; other roles log in with their password.
 *
 * @module
 */
import { createIamStartupHandler } from './iam-startup.ts'
import { labTlsCertificate } from './test-tls.ts'

interface LabIamConfig {
  region?: string
  users?: Record<string, string>
}

const config: LabIamConfig = JSON.parse(process.env.POSTGRES_HA_LAB_IAM || '{}')
const users = new Map(Object.entries(config.users ?? {}))

/** The lab proxy's startup hook for IAM endpoints. */
export const startupHandler = createIamStartupHandler({
  tls: labTlsCertificate(),
  region: config.region ?? 'us-east-1',
  upstreamPassword: (user) => users.get(user),
})
