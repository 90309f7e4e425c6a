import assert from 'node:assert/strict'
import { test } from 'node:test'
import { hostKey, sameHost } from '../src/core/host.ts'
import { parseHostPattern } from '../src/core/host-pattern.ts'
import { parseRdsHost, rdsInstanceHostPattern, rdsRegion } from '../src/core/rds-hosts.ts'
import { readerPicker } from '../src/core/routing.ts'
import { makeTopology, sameShape } from '../src/core/topology.ts'

test('hosts: RDS endpoint shapes are recognised', () => {
  assert.equal(parseRdsHost('app.cluster-abc123.us-east-1.rds.amazonaws.com').kind, 'cluster-writer')
  assert.equal(parseRdsHost('app.cluster-ro-abc123.us-east-1.rds.amazonaws.com').kind, 'cluster-reader')
  assert.equal(parseRdsHost('app.cluster-custom-abc123.eu-west-2.rds.amazonaws.com').kind, 'cluster-custom')
  assert.equal(parseRdsHost('app.proxy-abc123.us-east-1.rds.amazonaws.com').kind, 'proxy')
  assert.equal(parseRdsHost('app-1.abc123.us-east-1.rds.amazonaws.com').kind, 'instance')
  assert.equal(parseRdsHost('app.cluster-abc123.rds.cn-north-1.amazonaws.com.cn').kind, 'cluster-writer')
  assert.equal(parseRdsHost('127.0.0.11').kind, 'ip')
  assert.equal(parseRdsHost('::1').kind, 'ip')
  assert.equal(parseRdsHost('db.internal.example.com').kind, 'other')
})

test('hosts: region and instance pattern come from RDS names', () => {
  assert.equal(rdsRegion('app.cluster-ro-abc123.ap-southeast-2.rds.amazonaws.com'), 'ap-southeast-2')
  assert.equal(rdsRegion('db.example.com'), undefined)
  assert.equal(
    rdsInstanceHostPattern('app.cluster-abc123.us-east-1.rds.amazonaws.com'),
    '?.abc123.us-east-1.rds.amazonaws.com',
  )
  assert.equal(rdsInstanceHostPattern('localhost'), undefined)
})

test('hosts: a pattern maps an instance id to its endpoint', () => {
  const p = parseHostPattern('?')
  assert.notEqual(typeof p, 'string')
  if (typeof p === 'string') return
  assert.deepEqual(p.toAddress('127.0.0.12', 6543), { host: '127.0.0.12', port: 6543 })
  const withPort = parseHostPattern('?.db.internal:7000')
  if (typeof withPort === 'string') assert.fail(withPort)
  assert.deepEqual(withPort.toAddress('a', 5432), { host: 'a.db.internal', port: 7000 })
})

test('hosts: keys and equality ignore host name case', () => {
  assert.equal(hostKey({ host: '127.0.0.1', port: 5432 }), '127.0.0.1:5432')
  assert.equal(hostKey({ host: '::1', port: 5432 }), '[::1]:5432')
  assert.ok(sameHost({ host: 'DB', port: 1 }, { host: 'db', port: 1 }))
  assert.ok(!sameHost({ host: 'db', port: 1 }, { host: 'db', port: 2 }))
  assert.ok(!sameHost(undefined, { host: 'db', port: 2 }))
})

test('hosts: topology puts the writer first and compares shapes', () => {
  const a = makeTopology(
    'c',
    [
      { host: 'r1', port: 1, role: 'reader' },
      { host: 'w', port: 1, role: 'writer' },
    ],
    0,
    'x',
  )
  assert.equal(a.hosts[0]!.host, 'w')
  assert.equal(a.readers.length, 1)
  const b = makeTopology(
    'c',
    [
      { host: 'w', port: 1, role: 'reader' },
      { host: 'r1', port: 1, role: 'writer' },
    ],
    1,
    'x',
  )
  assert.ok(!sameShape(a, b))
  assert.ok(sameShape(a, makeTopology('c', [...a.hosts], 5, 'y')))
})

test('hosts: reader strategies pick as documented', () => {
  const readers = [
    { host: 'a', port: 1, role: 'reader' as const },
    { host: 'b', port: 1, role: 'reader' as const },
    { host: 'c', port: 1, role: 'reader' as const },
  ]
  const rr = readerPicker('roundRobin', () => 0)
  assert.deepEqual(
    [rr(readers), rr([...readers].reverse()), rr(readers), rr(readers)].map((h) => h?.host),
    ['a', 'b', 'c', 'a'],
  )
  const counts: Record<string, number> = { a: 5, b: 1, c: 3 }
  assert.equal(readerPicker('leastConnections', (h) => counts[h.host]!)(readers)?.host, 'b')
  const random = readerPicker('random', () => 0)
  const seen = new Set<string>()
  for (let i = 0; i < 200; i++) seen.add(random(readers)!.host)
  assert.equal(seen.size, 3)
  assert.equal(random([]), undefined)
})
