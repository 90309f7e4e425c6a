// TLS with `verify-full` (trusted CA, rejectUnauthorized) on an Aurora-like lab whose endpoints each
// present a certificate naming only their own address, as RDS instance endpoints do. The client is
// given the cluster endpoint only; the writer's and the reader's instance addresses come from the
// topology, and each connection is verified against the address it goes to (no servername given).
// The reader endpoint presents the writer instance's certificate: a check against the wrong name
// (or none) would accept it.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type IamLab, startIamLab } from '../lab/aws/lab-iam.ts'
import { LAB_AWS_CREDENTIALS } from '../lab/aws/sigv4.ts'
import { type TlsMaterial, tlsCertificateFor } from '../lab/aws/test-tls.ts'
import { CLUSTER_HOST, READER_HOST } from '../lab/endpoints.ts'
import { type PostgresHaSql, postgresHa } from '../mod.ts'
import { labClientOptions } from './helpers/ha.ts'
import { certificateError } from './helpers/tls.ts'

// The lab's two instances (writer and reader) and its two DNS-like endpoints.
const INSTANCES = ['127.0.0.11', '127.0.0.12']
let iam: IamLab
let ca: string[]

before(async () => {
  const own: Record<string, TlsMaterial> = Object.fromEntries(
    [CLUSTER_HOST, READER_HOST, ...INSTANCES].map((a) => [a, tlsCertificateFor([`IP:${a}`])]),
  )
  ca = Object.values(own).map((m) => m.cert)
  iam = await startIamLab({
    nodes: INSTANCES.length,
    // A host answering with another host's (trusted) identity.
    certificates: { ...own, [READER_HOST]: own[INSTANCES[0]!]! },
  })
})

after(async () => {
  await iam?.down()
})

function client(url: string) {
  const events: string[] = []
  const sql = postgresHa(
    url,
    labClientOptions({
      plugins: 'connectionTracker,failover,hostMonitoring,iam',
      iamRegion: 'us-east-1',
      ssl: { ca, rejectUnauthorized: true },
      credentials: { ...LAB_AWS_CREDENTIALS },
      user: iam.role,
      max: 2,
    } as never),
  ) as PostgresHaSql
  sql.ha.on('failoverStart', (e) => events.push(`failoverStart ${e.reason}`))
  sql.ha.on('hostDown', (e) => events.push(`hostDown ${e.host.host}`))
  return { sql, events }
}

// The IAM endpoints terminate TLS (the server behind them sees a plain connection) and refuse an
// IAM login that did not come over TLS: the role logged in, so TLS was used and verified.
const WHERE_AND_WHO = 'select pg_catalog.aurora_db_instance_identifier() as id, current_user as who'

test('tls topology: instance endpoints learned from the topology are verified against their own addresses', async () => {
  const { sql, events } = client(iam.lab.url('cluster'))
  try {
    const writer = (await iam.lab.status()).writer!
    assert.ok(INSTANCES.includes(writer), `writer ${writer}`)
    const [w] = await sql.unsafe(WHERE_AND_WHO)
    assert.deepEqual({ ...w }, { id: writer, who: iam.role })
    const [r] = await sql.ha.reader.unsafe(WHERE_AND_WHO)
    const reader = INSTANCES.find((i) => i !== writer)
    assert.deepEqual({ ...r }, { id: reader, who: iam.role })
    assert.deepEqual(iam.refusals(), [])
    assert.deepEqual(events, [])
  } finally {
    await sql.end()
  }
})

test("tls topology: an endpoint presenting another host's trusted certificate is refused", async () => {
  const { sql } = client(iam.lab.url('reader'))
  try {
    const error = await sql.unsafe('select 1').then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.ok(error, `${READER_HOST} was accepted with the certificate of ${INSTANCES[0]}`)
    const cert = certificateError(error)
    assert.equal(cert?.code, 'ERR_TLS_CERT_ALTNAME_INVALID', `got ${error}`)
    assert.match(cert!.message, /127\.0\.0\.20/)
  } finally {
    await sql.end()
  }
})
