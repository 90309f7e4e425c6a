// Plainly wrong values of postgres-ha's own options are refused at once with an
// InvalidOptionError naming the option, the value and the fix — instead of a client that probes
// 100 times a second, a timer that fires at once, or credentials sent in clear.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InvalidOptionError, postgresHa } from '../mod.ts'
import { parseOptions } from '../src/options.ts'

function refused(run: () => unknown, option: string, mentions: RegExp): void {
  try {
    run()
  } catch (error) {
    assert.ok(error instanceof InvalidOptionError, `expected InvalidOptionError, got ${error}`)
    assert.equal(error.option, option)
    assert.match(error.message, mentions)
    return
  }
  assert.fail(`expected ${option} to be refused`)
}

test('options: out-of-range numbers are refused', () => {
  refused(() => parseOptions({ failureDetectionInterval: 10 }), 'failureDetectionInterval', /10 .*from 100/)
  refused(() => parseOptions({ connect_timeout: 1e10 }), 'connect_timeout', /up to 2147483/)
  refused(() => parseOptions({ connect_timeout: Number.POSITIVE_INFINITY }), 'connect_timeout', /Infinity/)
  refused(() => parseOptions({ secretsManagerExpirationSec: 0 }), 'secretsManagerExpirationSec', /from 1/)
})

test('options: AWS endpoints must be https (plain http only to this machine)', () => {
  refused(
    () => parseOptions({ secretsManagerEndpoint: 'http://secrets.example.com' }),
    'secretsManagerEndpoint',
    /https/,
  )
  assert.equal(
    parseOptions({ secretsManagerEndpoint: 'http://127.0.0.1:4566' }).ha.secretsManagerEndpoint,
    'http://127.0.0.1:4566',
  )
  parseOptions({ secretsManagerEndpoint: 'https://vpce-1.secretsmanager.us-east-1.vpce.amazonaws.com' })
})

test('options: a clock must have now() and wallNow()', () => {
  refused(() => parseOptions({ clock: {} }), 'clock', /now/)
  refused(() => parseOptions({ clock: { now: () => 1 } }), 'clock', /wallNow/)
  parseOptions({ clock: { now: () => 1, wallNow: () => 1 } })
})

test('options: host array elements and ports must be usable', () => {
  refused(() => parseOptions({ host: ['db1', 5] }), 'host', /host names/)
  refused(() => parseOptions({ host: ['db1', ''] }), 'host', /host names/)
  refused(() => parseOptions({ port: 'fivefourthreetwo' }), 'port', /1 to 65535/)
  refused(() => parseOptions({ port: 70_000 }), 'port', /1 to 65535/)
  refused(() => parseOptions({ port: [5432, 'x'] }), 'port', /1 to 65535/)
  // What postgres.js accepts stays accepted.
  parseOptions({ host: ['db1', 'db2'], port: '5432' })
  parseOptions({ host: 'db1,db2', port: [5432, '5433'] })
})

test('options: postgres-ha options in the URL query are refused with where to put them', () => {
  refused(
    () => postgresHa('postgres://app@127.0.0.1:9/app?failoverTimeoutMs=1000'),
    'failoverTimeoutMs',
    /options object/,
  )
  refused(
    () => postgresHa('postgres://app@127.0.0.1:9/app?sslmode=require&plugins=failover'),
    'plugins',
    /options object/,
  )
})
