/**
 * A failover lab whose every endpoint (instances, cluster, reader) is an RDS IAM endpoint, with an
 * IAM login role ready in the lab database, for end-to-end tests of the `iam` plugin.
 *
 * The lab's own API has no way to run setup SQL as an administrator, so {@link labAdminSql} logs
 * in as the lab's internal administrator through the writer's instance endpoint (that role is not
 * an IAM role, so the endpoint passes it to the server's own password check, as RDS would).
 *
 * @example
 * ```ts
 * await using iam = await startIamLab({ nodes: 3, promoteAfterMs: 200 })
 * const sql = postgresHa(iam.lab.url('cluster'), {
 *   plugins: 'connectionTracker,failover,hostMonitoring,iam',
 *   iamRegion: iam.region, ssl: { rejectUnauthorized: false }, credentials: LAB_AWS_CREDENTIALS,
 *   user: iam.role,
 * })
 * assert.deepEqual(iam.refusals(), [])
 * ```
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import { ADMIN_PASSWORD, ADMIN_USER, DATABASE } from '../instance.ts'
import { type Lab, type LabOptions, startLab } from '../mod.ts'
import type { LabIamConfig } from './iam-lab-startup.ts'
import type { TlsMaterial } from './test-tls.ts'

/** The `proxyStartupModule` that turns lab endpoints into IAM endpoints. */
export const IAM_LAB_STARTUP_MODULE = join(dirname(fileURLToPath(import.meta.url)), 'iam-lab-startup.ts')

/** One IAM login refused by a lab endpoint: the reason RDS would log, never the token. */
export interface IamRefusal {
  readonly atMs: number
  readonly user: string
  readonly reason: string
}

/** Options of {@link startIamLab}: the lab's, plus the IAM setup. */
export interface IamLabOptions extends Omit<LabOptions, 'proxyStartupModule'> {
  /** The region the endpoints are in (default `us-east-1`). */
  readonly region?: string
  /** The IAM login role to create (default `app_iam`). */
  readonly role?: string
  /** The certificate each endpoint address presents (default: the lab certificate for all). */
  readonly certificates?: Record<string, TlsMaterial>
}

/** A running IAM lab; `await using` (or `down()`) tears down the lab and the refusal log. */
export interface IamLab extends AsyncDisposable {
  readonly lab: Lab
  readonly region: string
  /** The IAM role: LOGIN, granted `rds_iam`, CONNECT and `public` schema use; only tokens open it. */
  readonly role: string
  /** IAM logins the endpoints refused so far, oldest first. */
  refusals(): IamRefusal[]
  down(): Promise<void>
}

/**
 * A postgres.js client logged in as the lab's administrator on `host` (default: the writer's
 * instance endpoint). Test-only: the lab's administrator and its password are fixed lab values.
 *
 * @example
 * ```ts
 * const admin = await labAdminSql(lab)
 * try { await admin`alter role app password 'x'` } finally { await admin.end() }
 * ```
 */
export async function labAdminSql(lab: Lab, host?: string): Promise<postgres.Sql> {
  const status = await lab.status()
  const target = host ?? status.writer
  if (!target) throw new Error('the lab has no writer right now')
  return postgres({
    host: target,
    port: status.port,
    user: ADMIN_USER,
    password: ADMIN_PASSWORD,
    database: DATABASE,
    max: 1,
    connect_timeout: 5,
    idle_timeout: 0,
    onnotice: () => {},
  })
}

/**
 * Starts a lab with IAM endpoints and creates the IAM role in it. The lab daemon reads its IAM
 * configuration from `POSTGRES_HA_LAB_IAM` in the environment it inherits; the variable is set
 * only while the daemon starts.
 */
export async function startIamLab(options: IamLabOptions = {}): Promise<IamLab> {
  const { region = 'us-east-1', role = 'app_iam', certificates, ...labOptions } = options
  if (!/^[a-z_][a-z0-9_]*$/.test(role)) throw new Error(`role must be a plain SQL identifier, got ${role}`)
  // The role's real password: known to the endpoints (which log in upstream with it), never to clients.
  const rolePassword = randomBytes(18).toString('base64url')
  const dir = mkdtempSync(join(tmpdir(), 'postgres-ha-iam-lab-'))
  const refusalLog = join(dir, 'refusals.jsonl')
  const config: LabIamConfig = {
    region,
    users: { [role]: rolePassword },
    refusalLog,
    ...(certificates ? { certificates } : {}),
  }
  const previous = process.env.POSTGRES_HA_LAB_IAM
  let lab: Lab
  process.env.POSTGRES_HA_LAB_IAM = JSON.stringify(config)
  try {
    lab = await startLab({ ...labOptions, proxyStartupModule: IAM_LAB_STARTUP_MODULE })
  } catch (e) {
    rmSync(dir, { recursive: true, force: true })
    throw e
  } finally {
    if (previous === undefined) delete process.env.POSTGRES_HA_LAB_IAM
    else process.env.POSTGRES_HA_LAB_IAM = previous
  }
  const down = async () => {
    try {
      await lab.down()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
  try {
    const admin = await labAdminSql(lab)
    try {
      await admin.unsafe(`
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN CREATE ROLE rds_iam NOLOGIN; END IF;
        END $$;
        CREATE ROLE ${role} LOGIN PASSWORD '${rolePassword}';
        GRANT rds_iam TO ${role};
        GRANT CONNECT ON DATABASE ${DATABASE} TO ${role};
        GRANT USAGE, CREATE ON SCHEMA public TO ${role};
      `)
    } finally {
      await admin.end({ timeout: 1 })
    }
  } catch (e) {
    await down()
    throw e
  }
  return {
    lab,
    region,
    role,
    refusals() {
      if (!existsSync(refusalLog)) return []
      return readFileSync(refusalLog, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as IamRefusal)
    },
    down,
    [Symbol.asyncDispose]: down,
  }
}
