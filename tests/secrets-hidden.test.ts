// TLS secrets given in `ssl` (a client key, its passphrase, a PKCS#12 bundle) never show in
// util.inspect(sql), sql.options or JSON of it, as passwords already don't.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { inspect } from 'node:util'
import { postgresHa } from '../mod.ts'

test('secrets: ssl.key, ssl.passphrase and ssl.pfx are hidden from inspect and sql.options', async () => {
  const sql = postgresHa('postgres://app:pw-SECRET-1@127.0.0.1:9/app', {
    ssl: { key: 'KEY-SECRET-2', passphrase: 'PASS-SECRET-3', pfx: 'PFX-SECRET-4', cert: 'CERT-PUBLIC' },
  })
  try {
    const shown = [
      inspect(sql, { depth: 10 }),
      inspect(sql.options, { depth: 10 }),
      JSON.stringify(sql.options),
      String((sql.options as { ssl?: { key?: unknown } }).ssl?.key),
    ].join('\n')
    for (const secret of ['SECRET-1', 'SECRET-2', 'SECRET-3', 'SECRET-4'])
      assert.ok(!shown.includes(secret), `${secret} shown`)
    // What is not secret stays visible.
    assert.ok(shown.includes('CERT-PUBLIC'))
  } finally {
    await sql.end()
  }
})
