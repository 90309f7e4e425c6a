// TLS verification checks each connection's certificate against the host that connection really
// goes to: an instance endpoint given as an address (or learned from the topology, which gives
// addresses or names the same way) with one `ssl` object for every host. Node and Deno checked a
// connection to an address against 'localhost' before: any certificate valid for localhost passed.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type TlsMaterial, tlsCertificateFor } from '../lab/aws/test-tls.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { type PgServer, startPgServer } from './helpers/pg-server.ts'
import { certificateError } from './helpers/tls.ts'

let localhostOnly: TlsMaterial
let second: TlsMaterial
let third: TlsMaterial
const servers: PgServer[] = []
const clients: PostgresHaSql[] = []

before(async () => {
  localhostOnly = tlsCertificateFor(['DNS:localhost'])
  second = tlsCertificateFor(['IP:127.0.0.2'])
  third = tlsCertificateFor(['IP:127.0.0.3'])
  // One server per certificate: 127.0.0.1 (and localhost), 127.0.0.2, and 127.0.0.3's
  // certificate presented at 127.0.0.2 (a host answering with another host's identity).
  servers.push(
    await startPgServer({ tls: localhostOnly }),
    await startPgServer({ tls: second, settings: { listen_addresses: '127.0.0.2' } }),
    await startPgServer({ tls: third, settings: { listen_addresses: '127.0.0.2' } }),
  )
})

after(async () => {
  await Promise.all(clients.map((c) => c.end({ timeout: 0 }).catch(() => {})))
  await Promise.all(servers.map((s) => s.stop()))
})

function client(server: PgServer, host: string, ca: string[]): PostgresHaSql {
  const url = `postgres://${server.user}:${encodeURIComponent(server.password)}@${host}:${server.port}/${server.database}`
  const sql = postgresHa(url, {
    dialect: 'pg',
    ssl: { ca, rejectUnauthorized: true },
    connectTimeoutMs: 5_000,
    max: 1,
  } as never) as PostgresHaSql
  clients.push(sql)
  return sql
}

const SSL_OF_BACKEND = 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'

test('tls: a host given as an address is verified against that address, not localhost', async () => {
  const [server] = servers
  const sql = client(server!, '127.0.0.1', [localhostOnly.cert])
  const error = await sql.unsafe('select 1').then(
    () => undefined,
    (e: unknown) => e,
  )
  assert.ok(error, 'a certificate valid only for localhost was accepted for 127.0.0.1')
  const cert = certificateError(error)
  assert.ok(cert, `not a certificate error: ${error}`)
  assert.equal(cert.code, 'ERR_TLS_CERT_ALTNAME_INVALID')
  assert.match(cert.message, /127\.0\.0\.1/)
})

test('tls: a host given as a name is verified against that name (SNI and identity)', async () => {
  const [server] = servers
  const sql = client(server!, 'localhost', [localhostOnly.cert])
  const [row] = await sql.unsafe(SSL_OF_BACKEND)
  assert.equal(row!.ssl, true)
})

test('tls: each host is verified against its own address with one ssl object for all', async () => {
  const [, atSecond, wrongAtSecond] = servers
  const ca = [second.cert, third.cert]
  const ok = client(atSecond!, '127.0.0.2', ca)
  const [row] = await ok.unsafe(SSL_OF_BACKEND)
  assert.equal(row!.ssl, true)
  // 127.0.0.3's certificate, trusted, but presented by the server at 127.0.0.2.
  const wrong = client(wrongAtSecond!, '127.0.0.2', ca)
  const error = await wrong.unsafe('select 1').then(
    () => undefined,
    (e: unknown) => e,
  )
  assert.ok(error, "127.0.0.3's certificate was accepted for 127.0.0.2")
  assert.equal(certificateError(error)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID', `got ${error}`)
})

test("tls: the user's own servername and checkServerIdentity still decide (as in postgres.js)", async () => {
  const [server] = servers
  const names: string[] = []
  const url = `postgres://${server!.user}:${encodeURIComponent(server!.password)}@127.0.0.1:${server!.port}/${server!.database}`
  const sql = postgresHa(url, {
    dialect: 'pg',
    ssl: {
      ca: [localhostOnly.cert],
      servername: 'localhost',
      checkServerIdentity: (name: string) => {
        names.push(name)
        return undefined
      },
    },
    connectTimeoutMs: 5_000,
    max: 1,
  } as never) as PostgresHaSql
  clients.push(sql)
  const [row] = await sql.unsafe(SSL_OF_BACKEND)
  assert.equal(row!.ssl, true)
  assert.ok(names.length > 0 && names.every((n) => n === 'localhost'), `checked against ${names}`)
})
