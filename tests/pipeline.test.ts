import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createEvents } from '../src/core/events.ts'
import { maskSecrets, safeLogger } from '../src/core/logger.ts'
import { connectChain, executeChain } from '../src/core/pipeline.ts'
import type { ConnectContext, ExecuteContext, HaPlugin } from '../src/core/plugin.ts'

function ctx(): ExecuteContext {
  return {
    kind: 'statement',
    targetRole: 'writer',
    host: undefined,
    inTransaction: false,
    sent: false,
    delivered: false,
    attempt: 0,
    description: '',
  }
}

test('pipeline: execute hooks run outermost first and may retry', async () => {
  const order: string[] = []
  const outer: HaPlugin = {
    name: 'outer',
    async execute(c, next) {
      order.push('outer:before')
      try {
        return await next()
      } catch {
        order.push('outer:retry')
        c.attempt++
        return next()
      } finally {
        order.push('outer:after')
      }
    },
  }
  const inner: HaPlugin = {
    name: 'inner',
    async execute(_c, next) {
      order.push('inner')
      return next()
    },
  }
  const run = executeChain([outer, { name: 'no-hooks' }, inner])
  let calls = 0
  const result = await run(ctx(), async () => {
    calls++
    if (calls === 1) throw new Error('first try fails')
    return 'ok'
  })
  assert.equal(result, 'ok')
  assert.deepEqual(order, ['outer:before', 'inner', 'outer:retry', 'inner', 'outer:after'])
})

test('pipeline: connect hooks can set credentials before the connection opens', async () => {
  const plugin: HaPlugin = {
    name: 'token',
    async connect(c, next) {
      c.password = `token-for-${c.host.host}`
      await next()
    },
  }
  const c: ConnectContext = {
    host: { host: 'db1', port: 5432 },
    purpose: 'user',
    user: 'app',
    password: undefined,
    deadline: Number.POSITIVE_INFINITY,
  }
  let seen: string | undefined
  await connectChain([plugin])(c, async () => {
    seen = c.password
  })
  assert.equal(seen, 'token-for-db1')
})

test('pipeline: events reach listeners; a throwing listener does not break emit', () => {
  const errors: unknown[] = []
  const events = createEvents((e) => errors.push(e))
  const got: string[] = []
  const off = events.on('hostDown', (e) => got.push(e.reason))
  events.on('hostDown', () => {
    throw new Error('bad listener')
  })
  events.emit('hostDown', { host: { host: 'a', port: 1 }, reason: 'gone' })
  off()
  events.emit('hostDown', { host: { host: 'a', port: 1 }, reason: 'again' })
  assert.deepEqual(got, ['gone'])
  assert.equal(errors.length, 2)
})

test('pipeline: the logger masks secrets and survives a throwing logger', () => {
  assert.deepEqual(maskSecrets({ password: 'p', user: 'u', nested: { token: 't', host: 'h' } }), {
    password: '***',
    user: 'u',
    nested: { token: '***', host: 'h' },
  })
  const lines: unknown[][] = []
  const log = safeLogger({ warn: (...args: unknown[]) => lines.push(args) })
  log.warn('hello', { secretAccessKey: 'abc', host: 'h' })
  log.info('dropped: no info method')
  assert.deepEqual(lines, [['postgres-ha: hello', { secretAccessKey: '***', host: 'h' }]])
  const throwing = safeLogger({
    error: () => {
      throw new Error('x')
    },
  })
  throwing.error('does not throw')
})
