// Read routing without a server: target_session_attrs / load_balance_hosts resolution (option, URL,
// environment), their conflicts, the lowestLag strategy, the lag filter, LSN parsing.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InvalidOptionError, postgresHa } from '../mod.ts'
import { parseLsn } from '../src/core/read-your-writes.ts'
import { lagPollMs } from '../src/core/replica-lag.ts'
import { readerPicker, withinLag } from '../src/core/routing.ts'
import { resolveSessionRouting, splitSessionParams } from '../src/core/session-attrs.ts'

const none = {
  targetRole: undefined,
  readerFallback: 'writer' as const,
  option: undefined,
  urlParam: undefined,
  env: undefined,
  loadBalanceOption: undefined,
  loadBalanceUrlParam: undefined,
  loadBalanceEnv: undefined,
  readerEndpoint: false,
}

test('read-routing: each target_session_attrs value sets the role and the fallback of sql', () => {
  const cases = {
    primary: ['writer', 'writer', undefined],
    'read-write': ['writer', 'writer', 'read-write'],
    standby: ['reader', 'error', undefined],
    'read-only': ['reader', 'error', 'read-only'],
    'prefer-standby': ['reader', 'writer', undefined],
    any: ['any', 'writer', undefined],
  } as const
  for (const [attrs, [role, fallback, check]] of Object.entries(cases)) {
    const r = resolveSessionRouting({ ...none, option: attrs })
    assert.deepEqual([r.targetRole, r.fallback, r.checkDefaultReadOnly], [role, fallback, check], attrs)
  }
  assert.equal(resolveSessionRouting(none).targetRole, 'writer')
  assert.equal(resolveSessionRouting({ ...none, readerEndpoint: true }).targetRole, 'reader')
  assert.equal(
    resolveSessionRouting({ ...none, readerEndpoint: true, targetRole: 'writer' }).targetRole,
    'writer',
  )
})

test('read-routing: option beats URL beats environment; bad values and conflicts are InvalidOptionError', () => {
  assert.equal(resolveSessionRouting({ ...none, urlParam: 'standby', env: 'any' }).targetRole, 'reader')
  assert.equal(resolveSessionRouting({ ...none, env: 'any' }).targetRole, 'any')
  assert.equal(
    resolveSessionRouting({ ...none, option: 'primary', urlParam: 'standby' }).targetRole,
    'writer',
  )
  assert.equal(resolveSessionRouting({ ...none, loadBalanceEnv: 'random' }).loadBalanceHosts, 'random')
  assert.throws(() => resolveSessionRouting({ ...none, env: 'replica' }), /PGTARGETSESSIONATTRS.*"replica"/)
  assert.throws(() => resolveSessionRouting({ ...none, loadBalanceUrlParam: 'yes' }), InvalidOptionError)
  assert.throws(
    () => resolveSessionRouting({ ...none, targetRole: 'writer', option: 'standby' }),
    (e: unknown) => e instanceof InvalidOptionError && /targetRole "writer".*standby/.test(e.message),
  )
  assert.equal(
    resolveSessionRouting({ ...none, targetRole: 'reader', option: 'prefer-standby' }).fallback,
    'writer',
  )
  assert.throws(
    () => postgresHa('postgres://h/db', { target_session_attrs: 'nope' as never }),
    InvalidOptionError,
  )
  assert.throws(() => postgresHa('postgres://h/db?target_session_attrs=nope'), InvalidOptionError)
  assert.throws(
    () => postgresHa('postgres://h/db', { targetRole: 'writer', target_session_attrs: 'standby' }),
    InvalidOptionError,
  )
})

test('read-routing: the URL keeps its other parameters; postgres.js never sees ours', async () => {
  assert.deepEqual(
    splitSessionParams(
      'postgres://a:1,b:2/db?target_session_attrs=any&sslmode=disable&load_balance_hosts=random',
    ),
    {
      url: 'postgres://a:1,b:2/db?sslmode=disable',
      targetSessionAttrs: 'any',
      loadBalanceHosts: 'random',
    },
  )
  const sql = postgresHa('postgres://u@h1:5432,h2:5432/db?target_session_attrs=any&load_balance_hosts=random')
  assert.equal(sql.options.target_session_attrs, 'any')
  assert.equal((sql.options.connection as Record<string, unknown>).load_balance_hosts, undefined)
  await sql.end()
})

test('read-routing: lowestLag picks the least lag, sharing ties; the lag filter keeps unknown lag', () => {
  const a = { host: 'a', port: 1, role: 'reader' as const, lagMs: 30 }
  const b = { host: 'b', port: 1, role: 'reader' as const, lagMs: 5 }
  const c = { host: 'c', port: 1, role: 'reader' as const, lagMs: 18 }
  const u = { host: 'u', port: 1, role: 'reader' as const }
  const pick = readerPicker('lowestLag', () => 0)
  const seen = new Set<string>()
  for (let i = 0; i < 200; i++) seen.add(pick([a, b, c, u])!.host)
  assert.deepEqual([...seen].sort(), ['b', 'c'])
  assert.equal(pick([u, a])!.host, 'a')
  assert.equal(withinLag(a, 10), false)
  assert.equal(withinLag(b, 10), true)
  assert.equal(withinLag(u, 10), true)
  assert.equal(withinLag(a, undefined), true)
  assert.equal(lagPollMs(500), 250)
  assert.equal(lagPollMs(10_000), 500)
  assert.equal(lagPollMs(20), 50)
})

test('read-routing: pg_lsn values compare as WAL positions', () => {
  assert.equal(parseLsn('0/0'), 0n)
  assert.ok(parseLsn('1/0')! > parseLsn('0/FFFFFFFF')!)
  assert.ok(parseLsn('16/B374D848')! > parseLsn('16/B374D847')!)
  assert.equal(parseLsn(null), undefined)
})
