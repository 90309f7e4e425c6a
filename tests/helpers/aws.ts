/**
 * Set-up shared by the AWS authentication tests: database roles for the `secretsManager` tests on
 * the lab, and IAM endpoints (the lab's IAM handshake) in front of a scratch PostgreSQL.
 */
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { inspect } from 'node:util'
import { createIamHandshake, type IamEndpointOptions } from '../../lab/aws/iam-handshake.ts'
import { labAdminSql } from '../../lab/aws/lab-iam.ts'
import { type ScratchPostgres, scratchAdmin } from '../../lab/aws/scratch-postgres.ts'
import { labTlsCertificate } from '../../lab/aws/test-tls.ts'
import type { Lab } from '../../lab/mod.ts'
import { MissingDependencyError, type PostgresHaSql } from '../../mod.ts'

/** Runs `sql` as the lab's administrator on the writer (it replicates). */
export async function labAdmin(lab: Lab, sql: string): Promise<void> {
  const admin = await labAdminSql(lab)
  try {
    await admin.unsafe(sql)
  } finally {
    await admin.end({ timeout: 1 })
  }
}

/** A login role on the lab that may connect to its database and create tables in `public`. */
export function createLabRole(lab: Lab, role: string, password: string): Promise<void> {
  return labAdmin(
    lab,
    `CREATE ROLE ${role} LOGIN PASSWORD '${password}';
     GRANT CONNECT ON DATABASE lab TO ${role};
     GRANT USAGE, CREATE ON SCHEMA public TO ${role};`,
  )
}

/** What a rotation function's setSecret step does: the role's new password, on the writer. */
export function setLabRolePassword(lab: Lab, role: string, password: string): Promise<void> {
  return labAdmin(lab, `ALTER ROLE ${role} PASSWORD '${password}'`)
}

/** The lab URL of `target` (default the cluster endpoint) as `user`, without a password. */
export function labUrlAs(lab: Lab, user: string, target = 'cluster'): string {
  const url = new URL(lab.url(target))
  url.username = user
  url.password = ''
  return url.toString()
}

/** A login role on a scratch server (the real password an IAM endpoint logs in with). */
export async function createScratchRole(pg: ScratchPostgres, role: string, password: string): Promise<void> {
  const admin = scratchAdmin(pg)
  try {
    await admin.unsafe(`create role ${role} login password '${password}'`)
  } finally {
    await admin.end()
  }
}

/**
 * IAM endpoints like RDS's in front of a scratch server: one TCP listener per host (each an
 * "instance"), running the lab's IAM handshake with its TLS certificate for `role` (logging in
 * upstream with `password`). `options` adds to or overrides the handshake's options.
 */
export async function startIamFronts(
  pg: ScratchPostgres,
  role: string,
  password: string,
  hosts: readonly string[],
  options: Partial<IamEndpointOptions> = {},
): Promise<{ readonly ports: readonly number[]; close(): Promise<void> }> {
  const handshake = createIamHandshake({
    tls: labTlsCertificate(),
    upstreamPassword: (user) => (user === role ? password : undefined),
    ...options,
  })
  const upstream = () =>
    new Promise<Socket>((resolve, reject) => {
      const s = tcpConnect(pg.port, '127.0.0.1')
      s.once('connect', () => resolve(s))
      s.once('error', reject)
    })
  const servers: Server[] = []
  const ports: number[] = []
  for (const host of hosts) {
    const front = createServer((client) => void handshake(client, upstream).catch(() => {}))
    await new Promise<void>((resolve) => front.listen(0, host, resolve))
    servers.push(front)
    ports.push((front.address() as { port: number }).port)
  }
  return {
    ports,
    close: () => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))).then(() => {}),
  }
}

/**
 * Asserts that the first statement of `sql` (a client whose plugin's AWS package cannot be
 * imported) rejects with a `MissingDependencyError` naming `packageName` and how to install it;
 * ends `sql`.
 */
export async function assertMissingPackage(sql: PostgresHaSql, packageName: string): Promise<void> {
  try {
    const error = await sql`select 1`.catch((e: unknown) => e)
    assert.ok(error instanceof MissingDependencyError, `got ${inspect(error)}`)
    assert.equal(error.code, 'MISSING_DEPENDENCY')
    assert.equal(error.packageName, packageName)
    assert.ok(error.message.includes(`npm install ${packageName}`), error.message)
  } finally {
    await sql.end()
  }
}
