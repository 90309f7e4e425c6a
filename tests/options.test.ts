import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InvalidOptionError } from '../src/core/errors.ts'
import { nonEmptyString } from '../src/core/option-checks.ts'
import { readOptions } from '../src/core/option-spec.ts'
import { parseOptions } from '../src/options.ts'
import { DEFAULT_PLUGINS, resolvePlugins } from '../src/plugins/mod.ts'

function invalid(options: Record<string, unknown>): InvalidOptionError {
  try {
    parseOptions(options)
  } catch (error) {
    assert.ok(error instanceof InvalidOptionError, `expected InvalidOptionError, got ${error}`)
    assert.equal(error.code, 'INVALID_OPTION')
    return error
  }
  assert.fail(`expected ${JSON.stringify(Object.keys(options))} to be rejected`)
}

test('options: defaults are complete and frozen', () => {
  const { ha, driver } = parseOptions(undefined)
  assert.equal(ha.failoverTimeoutMs, 300_000)
  assert.equal(ha.topologyRefreshMs, 30_000)
  assert.equal(ha.topologyFastRefreshMs, 100)
  assert.equal(ha.targetRole, 'writer')
  assert.equal(ha.dialect, 'auto')
  assert.equal(ha.connectTimeoutMs, 10_000)
  assert.deepEqual([...ha.plugins], DEFAULT_PLUGINS.split(','))
  assert.ok(Object.isFrozen(ha))
  assert.ok(Object.isFrozen(driver))
  assert.throws(() => {
    ;(ha as any).failoverTimeoutMs = 1
  }, TypeError)
})

test('options: postgres.js options pass through untouched, HA options are split off', () => {
  const transform = { undefined: null }
  const { ha, driver } = parseOptions({
    max: 5,
    transform,
    failoverTimeoutMs: 60_000,
    connect_timeout: 3,
  })
  assert.equal(driver.max, 5)
  assert.equal(driver.transform, transform)
  assert.equal('failoverTimeoutMs' in driver, false)
  assert.equal(ha.failoverTimeoutMs, 60_000)
  assert.equal(ha.connectTimeoutMs, 3000, 'connect_timeout (seconds) sets the default connect timeout')
})

test('options: the AWS drivers spellings are accepted as aliases', () => {
  const { ha } = parseOptions({ clusterTopologyRefreshRateMs: 5000, clusterTopologyHighRefreshRateMs: 50 })
  assert.equal(ha.topologyRefreshMs, 5000)
  assert.equal(ha.topologyFastRefreshMs, 50)
})

test('options: a negative timeout names the option, the value and what is valid', () => {
  const e = invalid({ failoverTimeoutMs: -1 })
  assert.equal(e.option, 'failoverTimeoutMs')
  assert.match(e.message, /failoverTimeoutMs/)
  assert.match(e.message, /-1/)
  assert.match(e.message, /whole number of milliseconds/)
  assert.match(e.message, /Example: failoverTimeoutMs: 60000/)
})

test('options: wrong types and values are refused', () => {
  assert.match(invalid({ targetRole: 'primary' }).message, /"writer", "reader", "any"/)
  assert.match(invalid({ dialect: 'mysql' }).message, /aurora-pg/)
  assert.match(invalid({ failureDetectionCount: 0 }).message, /from 1 to 100/)
  assert.match(invalid({ topologyRefreshMs: '30000' }).message, /"30000"/)
  assert.match(invalid({ max: 'ten' }).message, /max/)
  assert.match(invalid({ readerHostSelectorStrategy: 'fastest' }).message, /roundRobin/)
})

test('options: failoverLoginsAhead is a boolean, true by default; anything else is refused naming it', () => {
  assert.equal(parseOptions(undefined).ha.failoverLoginsAhead, true)
  assert.equal(parseOptions({ failoverLoginsAhead: false }).ha.failoverLoginsAhead, false)
  const e = invalid({ failoverLoginsAhead: 'no' })
  assert.equal(e.option, 'failoverLoginsAhead')
  assert.match(e.message, /Invalid option failoverLoginsAhead: got "no"; expected true or false\./)
  assert.match(e.message, /Example: failoverLoginsAhead: false/)
  assert.equal(invalid({ failoverLoginsAhead: 0 }).option, 'failoverLoginsAhead')
})

test('options: an unknown option suggests the closest known one', () => {
  const e = invalid({ failoverTimeoutMS: 1000 })
  assert.equal(e.option, 'failoverTimeoutMS')
  assert.match(e.message, /Unknown option failoverTimeoutMS; did you mean failoverTimeoutMs\?/)
  assert.match(invalid({ totallyMadeUp: 1 }).message, /Unknown option totallyMadeUp\./)
})

test('options: a bad host pattern is explained', () => {
  assert.match(invalid({ clusterInstanceHostPattern: 'db.example.com' }).message, /exactly one "\?"/)
  assert.match(invalid({ clusterInstanceHostPattern: '??.x' }).message, /exactly one/)
  assert.match(invalid({ clusterInstanceHostPattern: '?.x:99999' }).message, /out of range/)
  const { ha } = parseOptions({ clusterInstanceHostPattern: '?.abc.us-east-1.rds.amazonaws.com:6432' })
  assert.deepEqual(ha.clusterInstanceHostPattern?.toAddress('db-1', 5432), {
    host: 'db-1.abc.us-east-1.rds.amazonaws.com',
    port: 6432,
  })
})

test('options: the socket option is taken as postgres.js takes it (a function), nothing else', () => {
  assert.equal(parseOptions({ socket: () => null }).driver.socket instanceof Function, true)
  assert.match(invalid({ socket: 'tunnel' }).message, /socket: got "tunnel"; expected a function/)
})

test('options: a password never appears in an error', () => {
  const secret = 'hunter2-super-secret'
  const e = invalid({ password: 42 as unknown as string, user: 'app' })
  assert.doesNotMatch(e.message, /42/)
  assert.match(e.message, /hidden/)
  const e2 = invalid({ pass: { value: secret } })
  assert.doesNotMatch(e2.message, new RegExp(secret))
})

test('options: a refused value is shown unless the option is secret, also when its name sounds like one', () => {
  // iamTokenExpiration and secretsManagerExpirationSec hold no secret: hiding their value hides
  // the mistake. A plugin's overrides (readOptions) are refused in the same words as parseOptions.
  assert.match(
    invalid({ iamTokenExpiration: -1 }).message,
    /Invalid option iamTokenExpiration: got -1 \(number\)/,
  )
  assert.match(invalid({ secretsManagerRegion: 7 }).message, /got 7 \(number\)/)
  const table = {
    apiToken: { check: nonEmptyString, example: "'t-123'" },
    apiKey: { check: nonEmptyString, secret: true },
  }
  const refusal = (options: Record<string, unknown>) => {
    try {
      readOptions(table, [options])
    } catch (error) {
      assert.ok(error instanceof InvalidOptionError)
      return error.message
    }
    assert.fail('expected a refusal')
  }
  assert.equal(
    refusal({ apiToken: ' ' }),
    `Invalid option apiToken: got " "; expected a non-empty string. Example: apiToken: 't-123'.`,
  )
  assert.equal(
    refusal({ apiKey: ' ' }),
    'Invalid option apiKey: got *** (hidden); expected a non-empty string.',
  )
})

test('options: plugins as a string, an array, with unknown names and duplicates', () => {
  assert.deepEqual(
    [...parseOptions({ plugins: 'failover, hostMonitoring' }).ha.plugins],
    ['failover', 'hostMonitoring'],
  )
  assert.match(invalid({ plugins: 'failover,failover' }).message, /at most once/)
  assert.match(invalid({ plugins: 42 }).message, /comma-separated/)
  const custom = { name: 'mine' }
  const plugins = resolvePlugins(['failover', custom, 'efm2', 'auroraConnectionTracker'])
  assert.deepEqual(
    plugins.map((p) => p.name),
    ['failover', 'mine', 'hostMonitoring', 'connectionTracker'],
  )
  assert.throws(
    () => resolvePlugins(['failover', 'nope']),
    (e: unknown) =>
      e instanceof InvalidOptionError &&
      /unknown plugin "nope"/.test(e.message) &&
      /connectionTracker/.test(e.message),
  )
})

test('options: failureDetectionInterval may not exceed failoverTimeoutMs', () => {
  assert.match(
    invalid({ failureDetectionInterval: 5000, failoverTimeoutMs: 1000 }).message,
    /at most failoverTimeoutMs/,
  )
})

test('options: queryTimeoutMs is refused and points to statement_timeout (postgres-ha has no client-side statement timeout)', () => {
  const e = invalid({ queryTimeoutMs: 30_000 })
  assert.equal(e.option, 'queryTimeoutMs')
  assert.match(e.message, /30000/)
  assert.match(e.message, /connection: \{ statement_timeout: 30000 \}/)
})
