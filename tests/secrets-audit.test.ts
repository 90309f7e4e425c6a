// No password of the connection string and no value of a `password` function shows anywhere a
// user may print: error messages and stacks, util.inspect and JSON of errors (and of their
// causes), events, and log lines at every level — through a refused login, an unreachable host and
// a failover. (Tokens and Secrets Manager values: tests/aws-e2e-iam, tests/aws-e2e-secrets.)
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { inspect } from 'node:util'
import { type HaEventName, postgresHa } from '../mod.ts'
import { describeCrashes, watchCrashes } from './helpers/crash-watch.ts'
import { eventually, labClientOptions, settle } from './helpers/ha.ts'
import { sharedLab } from './helpers/shared-lab.ts'

const EVENTS: HaEventName[] = ['failoverStart', 'failover', 'hostDown', 'hostUp', 'writerChanged', 'topology']

/** Everything a user could print about `error`: message, stack, inspect and JSON, causes included. */
function printed(error: unknown): string {
  const out: string[] = [inspect(error, { depth: 10, showHidden: true })]
  for (
    let e = error as { message?: unknown; stack?: unknown; cause?: unknown } | undefined, n = 0;
    e && n < 10;
    n++
  ) {
    out.push(String(e.message), String(e.stack))
    try {
      out.push(JSON.stringify(e))
    } catch {}
    e = e.cause as typeof e
  }
  return out.join('\n')
}

function capture() {
  const lines: string[] = []
  const at =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      lines.push(`${level} ${message} ${inspect(fields, { depth: 10 })} ${JSON.stringify(fields ?? {})}`)
    }
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } }
}

test('secrets audit: the URL password and a password function value never show', async () => {
  const crashes = watchCrashes()
  await using lab = await sharedLab({ nodes: 2, promoteAfterMs: 200, endpointLagMs: 60_000 })
  const url = new URL(lab.url('cluster'))
  const password = decodeURIComponent(url.password)
  const seen: string[] = []
  const log = capture()

  // A wrong password in the URL: the login is refused.
  const wrong = new URL(url)
  wrong.password = 'wrong-Pw-SECRET-1'
  const refused = postgresHa(wrong.href, labClientOptions({ logger: log.logger }))
  seen.push(printed(await settle(refused`select 1`).then((r) => (r.ok ? 'ran' : r.error))))
  seen.push(inspect(refused, { depth: 10, showHidden: true }), JSON.stringify(refused.options))
  await refused.end()

  // Nobody listening: a connect error names the host, not the password.
  const nowhere = postgresHa(
    `postgres://app:nowhere-Pw-SECRET-2@127.0.0.1:9/app`,
    labClientOptions({ logger: log.logger, connectTimeoutMs: 1_000 }),
  )
  seen.push(printed(await settle(nowhere`select 1`).then((r) => (r.ok ? 'ran' : r.error))))
  await nowhere.end()

  // A password function and a failover: every event, log line and error of the way.
  url.password = ''
  const sql = postgresHa(
    url.href,
    labClientOptions({ logger: log.logger, password: async () => password, max: 2 }),
  )
  for (const name of EVENTS) sql.ha.on(name, (e) => seen.push(`${name} ${inspect(e, { depth: 10 })}`))
  try {
    await sql`select 1`
    seen.push(printed(await settle(sql`select * from no_such_table`).then((r) => (r.ok ? 'ran' : r.error))))
    const old = (await lab.status()).writer!
    const running = settle(sql`select pg_sleep(10)`)
    await lab.kill(old)
    seen.push(printed(await running.then((r) => (r.ok ? 'ran' : r.error))))
    await eventually(async () => (await settle(sql`select 1`)).ok, 20_000, 'the new writer')
    seen.push(inspect(sql, { depth: 10, showHidden: true }), JSON.stringify(sql.options))
  } finally {
    await sql.end()
    crashes.stop()
  }
  const haystack = [...seen, ...log.lines].join('\n')
  assert.ok(log.lines.length > 0 && seen.length > 5, 'something was printed')
  for (const secret of [password, 'wrong-Pw-SECRET-1', 'nowhere-Pw-SECRET-2'])
    assert.ok(
      !haystack.includes(secret),
      `${JSON.stringify(secret.slice(0, 6))}... shown:\n${context(haystack, secret)}`,
    )
  assert.equal(crashes.seen.length, 0, describeCrashes(crashes.seen))
})

/** The lines around where `secret` shows, masked, for the failure message. */
function context(haystack: string, secret: string): string {
  return haystack
    .split('\n')
    .filter((l) => l.includes(secret))
    .slice(0, 5)
    .map((l) => l.replaceAll(secret, '<SECRET>').slice(0, 400))
    .join('\n')
}
