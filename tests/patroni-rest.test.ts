// The Patroni source without Patroni: its options, and its REST client against a local HTTPS
// server that checks what Patroni can check (server TLS, client certificates, basic auth).
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { InvalidOptionError } from '../src/core/errors.ts'
import { clusterUrls, readPatroniCluster } from '../src/dialects/patroni.ts'
import { patroniSettingsOf } from '../src/dialects/patroni-options.ts'
import { parseOptions } from '../src/options.ts'

/**
 * A CA and one leaf certificate it signed, for both the server (127.0.0.1) and the client: Deno
 * (rustls) refuses a self-signed CA certificate used as the server's own.
 */
function caAndLeaf(): { ca: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-patroni-tls-'))
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  try {
    openssl(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=pgha-test-ca',
    )
    openssl('req', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=127.0.0.1')
    writeFileSync(
      join(dir, 'ext'),
      'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n',
    )
    openssl(
      'x509',
      '-req',
      '-in',
      'leaf.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'leaf.pem',
      '-days',
      '2',
      '-extfile',
      'ext',
    )
    const read = (f: string) => readFileSync(join(dir, f), 'utf8')
    return { ca: read('ca.pem'), cert: read('leaf.pem'), key: read('leaf.key') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const tls = caAndLeaf()
const members = [
  { name: 'n1', host: '127.0.0.1', port: 5432, role: 'leader', state: 'running' },
  { name: 'n2', host: '127.0.0.2', port: 5432, role: 'sync_standby', state: 'running', lag: 0 },
]
let server: Server
let base: string

before(async () => {
  server = createServer(
    { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const expected = `Basic ${btoa('patroni:s3cret')}`
      if (req.headers.authorization !== expected) {
        res.writeHead(401).end('{}')
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ members }))
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
})

after(async () => {
  server?.closeAllConnections?.()
  await new Promise((resolve) => server?.close(resolve))
})

function invalid(options: Record<string, unknown>): InvalidOptionError {
  try {
    parseOptions(options)
  } catch (error) {
    assert.ok(error instanceof InvalidOptionError, `expected InvalidOptionError, got ${error}`)
    return error
  }
  assert.fail('accepted')
}

test('patroni options: bad values name the option and what is valid; the password never shows', () => {
  assert.match(invalid({ patroniUrls: 'ftp://db1:8008' }).message, /patroniUrls.*http:\/\/ or https:\/\//)
  assert.match(invalid({ patroniUrls: [] }).message, /patroniUrls/)
  assert.match(invalid({ patroniUrls: ['http://u:p@db1:8008'] }).message, /without credentials/)
  assert.match(invalid({ patroniRestPort: 0 }).message, /patroniRestPort.*1 to 65535/)
  assert.match(invalid({ patroniTls: { ca: 'not a pem' } }).message, /patroniTls/)
  assert.match(invalid({ patroniTls: { cert: tls.cert } }).message, /cert and key together/)
  const auth = invalid({ patroniAuth: { username: 'patroni', password: 'hunter2', extra: 1 } })
  assert.match(auth.message, /patroniAuth/)
  assert.doesNotMatch(auth.message, /hunter2/)
  assert.match(invalid({ dialect: 'patroni2' }).message, /"patroni"/)
})

test('patroni options: URLs from patroniUrls or each host and patroniRestPort; https once TLS is given', () => {
  const hosts = [
    { host: 'db1', port: 5432 },
    { host: 'db1', port: 5433 },
    { host: '::1', port: 5432 },
  ]
  assert.deepEqual(clusterUrls(patroniSettingsOf(parseOptions({}).ha), hosts), [
    'http://db1:8008/cluster',
    'http://[::1]:8008/cluster',
  ])
  const tlsSettings = patroniSettingsOf(
    parseOptions({ patroniRestPort: 8443, patroniTls: { ca: tls.ca } }).ha,
  )
  assert.deepEqual(clusterUrls(tlsSettings, hosts.slice(0, 1)), ['https://db1:8443/cluster'])
  const given = patroniSettingsOf(parseOptions({ patroniUrls: 'http://a:1/, https://b:2/api' }).ha)
  assert.deepEqual(clusterUrls(given, hosts), ['http://a:1/cluster', 'https://b:2/api/cluster'])
})

test('patroni REST: TLS with a CA and a client certificate, basic auth; a dead member is skipped', async () => {
  const { ha } = parseOptions({
    patroniTls: { ca: tls.ca, cert: tls.cert, key: tls.key },
    patroniAuth: { username: 'patroni', password: 's3cret' },
  })
  const dead = 'https://127.0.0.1:1/cluster'
  const read = await readPatroniCluster([dead, `${base}/cluster`], patroniSettingsOf(ha), 2000)
  assert.deepEqual(
    read.map((m) => [m.name, m.role]),
    [
      ['n1', 'leader'],
      ['n2', 'sync_standby'],
    ],
  )
  // Wrong password: 401, no member list, an error (not a topology of nobody).
  const { ha: wrong } = parseOptions({
    patroniTls: { ca: tls.ca, cert: tls.cert, key: tls.key },
    patroniAuth: { username: 'patroni', password: 'nope' },
  })
  await assert.rejects(readPatroniCluster([`${base}/cluster`], patroniSettingsOf(wrong), 2000), /401/)
  // No CA: the self-signed certificate is refused.
  const { ha: noCa } = parseOptions({ patroniAuth: { username: 'patroni', password: 's3cret' } })
  await assert.rejects(readPatroniCluster([`${base}/cluster`], patroniSettingsOf(noCa), 2000))
})
