// Many IAM re-signs and Secrets Manager rotations leave nothing behind: the server never holds more
// sessions of those roles than the pools allow, none once the clients ended, and the process
// (tests/fixtures/aws-auth-churn.ts, on the same runtime) exits by itself right after its last line.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type ScratchPostgres, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { createScratchRole } from './helpers/aws.ts'
import { sameRuntimeProcess } from './helpers/spawn-runtime.ts'

const ROUNDS = 20
let pg: ScratchPostgres

before(async () => {
  pg = await startScratchPostgres()
  await createScratchRole(pg, 'churn_secret', 'churn-test-only-pw-0')
  await createScratchRole(pg, 'churn_iam', 'churn-iam-real-test-only-pw')
})

after(async () => {
  await pg?.stop()
})

test(`aws auth: ${ROUNDS} secret rotations and ${ROUNDS} IAM re-signs leave no session, timer or socket behind`, async () => {
  const script = fileURLToPath(new URL('./fixtures/aws-auth-churn.ts', import.meta.url))
  const { command, args, done } = await sameRuntimeProcess(script)
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PGHA_CHURN_PORT: String(pg.port),
      PGHA_CHURN_ADMIN_PASSWORD: pg.superuserPassword,
      PGHA_CHURN_ROUNDS: String(ROUNDS),
      PGHA_CHURN_SECRET_ROLE: 'churn_secret',
      PGHA_CHURN_SECRET_PASSWORD: 'churn-test-only-pw-0',
      PGHA_CHURN_IAM_ROLE: 'churn_iam',
      PGHA_CHURN_IAM_PASSWORD: 'churn-iam-real-test-only-pw',
    },
  })
  let stdout = ''
  let stderr = ''
  let doneAt: number | undefined
  child.stdout.on('data', (d) => {
    stdout += d
    if (doneAt === undefined && /\ndone \d+/.test(`\n${stdout}`)) doneAt = performance.now()
  })
  child.stderr.on('data', (d) => (stderr += d))
  let killed = false
  const killer = setTimeout(() => {
    killed = true
    child.kill('SIGKILL')
  }, 120_000)
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  clearTimeout(killer)
  done()
  const closedAt = performance.now()
  assert.equal(killed, false, `the churn did not end within 120 s; stdout: ${stdout}\nstderr: ${stderr}`)
  assert.equal(code, 0, `exit ${code}; stderr: ${stderr}`)
  assert.ok(doneAt !== undefined, `no 'done' line: ${stdout}`)
  const report = JSON.parse(stdout.split('\n').find((l) => l.startsWith('{'))!)
  console.log(
    `aws-auth-leaks: ${JSON.stringify({ ...report, exitAfterDoneMs: Math.round(closedAt - doneAt) })}`,
  )
  // Each round: the secret re-read after the refusal (plus one background refresh per second).
  assert.ok(report.secretReads > ROUNDS, `${report.secretReads} secret reads for ${ROUNDS} rotations`)
  assert.ok(report.signings >= ROUNDS + 1, `${report.signings} signings for ${ROUNDS} revoked keys`)
  // The pool (max 2), a reserved connection each, and the client's own topology connection.
  assert.ok(report.secretsPeak <= 4, `${report.secretsPeak} sessions of the secret's role at once`)
  assert.ok(report.iamPeak <= 4, `${report.iamPeak} sessions of the IAM role at once`)
  assert.deepEqual(report.left, { secrets: 0, iam: 0 }, 'sessions left after end()')
  // A process with nothing left open ends within moments of its last line.
  assert.ok(
    closedAt - doneAt! < 2_000,
    `the process lived ${Math.round(closedAt - doneAt!)} ms after its last line`,
  )
  assert.doesNotMatch(stderr, /unhandled|uncaught/i)
})
