import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { inspect } from 'node:util'
import type { IamRefusedError } from '../lab/aws/iam-handshake.ts'
import { type ScratchPostgres, startScratchPostgres } from '../lab/aws/scratch-postgres.ts'
import { LAB_AWS_CREDENTIALS } from '../lab/aws/sigv4.ts'
import { InvalidOptionError, MissingDependencyError } from '../src/core/errors.ts'
import type { HostAddress } from '../src/core/host.ts'
import { type IamPlugin, iamOptionSpecs, iamPlugin } from '../src/plugins/iam/mod.ts'
import { createScratchRole, startIamFronts } from './helpers/aws.ts'
import { type PluginHarness, pluginHarness } from './helpers/plugin-harness.ts'

// The real password of a throwaway role, known only to the lab's IAM endpoints.
const REAL_PASSWORD = 'iam-real-test-only-pw'
const TLS = { ssl: { rejectUnauthorized: false } }
let pg: ScratchPostgres
let fronts: Awaited<ReturnType<typeof startIamFronts>> | undefined
const endpoints: HostAddress[] = []
const refusals: IamRefusedError[] = []

before(async () => {
  pg = await startScratchPostgres()
  await createScratchRole(pg, 'iam_user', REAL_PASSWORD)
  // Two "instances": distinct endpoints in front of the same server.
  const hosts = ['127.0.0.2', '127.0.0.3']
  fronts = await startIamFronts(pg, 'iam_user', REAL_PASSWORD, hosts, { onRefused: (r) => refusals.push(r) })
  endpoints.push(...hosts.map((host, i) => ({ host, port: fronts!.ports[i]! })))
})

after(async () => {
  await fronts?.close()
  await pg?.stop()
})

/** A credential provider that counts how often the signer asks for credentials: once per token. */
function countingCredentials() {
  const counter = {
    calls: 0,
    provider: async () => {
      counter.calls++
      return { ...LAB_AWS_CREDENTIALS }
    },
  }
  return counter
}

async function setUp(options: Record<string, unknown> = {}) {
  const signings = countingCredentials()
  const h = pluginHarness({
    ssl: 'require',
    iamRegion: 'us-east-1',
    credentials: signings.provider,
    ...options,
  })
  const plugin = iamPlugin()
  await plugin.init!(h.services)
  return { h, plugin, signings }
}

function connect(h: PluginHarness, plugin: IamPlugin, host: HostAddress, user = 'iam_user') {
  const ctx = h.connectContext(host, user)
  let who = ''
  return plugin.connect!(ctx, async () => void (who = await h.login(ctx, TLS))).then(() => ({ who, ctx }))
}

test('iam: connects with a token for the host; 8 connects to one host sign once', async () => {
  const { h, plugin, signings } = await setUp()
  const first = await connect(h, plugin, endpoints[0]!)
  assert.equal(first.who, 'iam_user')
  assert.match(first.ctx.password!, /^127\.0\.0\.2:\d+\/\?Action=connect&DBUser=iam_user&/)
  await connect(h, plugin, endpoints[0]!)
  const all = await Promise.all(Array.from({ length: 6 }, () => connect(h, plugin, endpoints[0]!)))
  assert.ok(all.every((r) => r.who === 'iam_user'))
  assert.equal(signings.calls, 1)
  assert.deepEqual(plugin.stats(), { tokensSigned: 1, tokensReused: 7 })
})

test('iam: concurrent first connects to one host share one signing; different hosts sign once each', async () => {
  const { h, plugin, signings } = await setUp()
  await Promise.all([
    ...Array.from({ length: 4 }, () => connect(h, plugin, endpoints[0]!)),
    ...Array.from({ length: 4 }, () => connect(h, plugin, endpoints[1]!)),
  ])
  assert.equal(signings.calls, 2)
  await connect(h, plugin, endpoints[1]!)
  await connect(h, plugin, endpoints[0]!)
  assert.equal(plugin.stats().tokensSigned, 2)
})

test('iam: a token is reused for iamTokenExpiration and renewed ahead of expiry', async () => {
  const { h, plugin, signings } = await setUp()
  assert.equal(iamOptionSpecs.iamTokenExpiration.default, 900)
  await connect(h, plugin, endpoints[0]!)
  h.clock.advance(839_000)
  await connect(h, plugin, endpoints[0]!)
  assert.equal(signings.calls, 1, 'reused until 60 s before the 900 s expiry')
  h.clock.advance(2_000)
  await connect(h, plugin, endpoints[0]!)
  assert.equal(signings.calls, 2, 'renewed in the last 60 s')

  const short = await setUp({ iamTokenExpiration: 100 })
  await connect(short.h, short.plugin, endpoints[0]!)
  short.h.clock.advance(89_000)
  await connect(short.h, short.plugin, endpoints[0]!)
  short.h.clock.advance(2_000)
  await connect(short.h, short.plugin, endpoints[0]!)
  assert.equal(short.signings.calls, 2, 'a short lifetime renews in its last tenth')
})

test('iam: the region comes from an RDS host name, iamHost/iamDefaultPort override the signed host', async () => {
  const inspectToken = async (options: Record<string, unknown>, host: HostAddress) => {
    const h = pluginHarness({ ssl: true, credentials: LAB_AWS_CREDENTIALS, ...options })
    const plugin = iamPlugin()
    await plugin.init!(h.services)
    const ctx = h.connectContext(host, 'iam_user')
    await plugin.connect!(ctx, async () => {})
    return ctx.password!
  }
  const rds = { host: 'db-1.abc123xyz.eu-central-1.rds.amazonaws.com', port: 5432 }
  assert.match(
    await inspectToken({}, rds),
    /^db-1\.abc123xyz\.eu-central-1\.rds\.amazonaws\.com:5432\/\?.*%2Feu-central-1%2Frds-db%2F/,
  )
  const cluster = { host: 'app.cluster-abc123xyz.us-west-2.rds.amazonaws.com', port: 5432 }
  assert.match(await inspectToken({}, cluster), /%2Fus-west-2%2Frds-db%2F/)
  assert.match(await inspectToken({ iamRegion: 'ap-south-1' }, cluster), /%2Fap-south-1%2Frds-db%2F/)
  const overridden = await inspectToken(
    { iamHost: 'db-2.abc123xyz.us-east-2.rds.amazonaws.com', iamDefaultPort: 6543 },
    { host: '10.0.0.7', port: 5432 },
  )
  assert.match(overridden, /^db-2\.abc123xyz\.us-east-2\.rds\.amazonaws\.com:6543\/\?.*%2Fus-east-2%2F/)
  await assert.rejects(inspectToken({}, { host: '10.0.0.7', port: 5432 }), (e: any) => {
    assert.ok(e instanceof InvalidOptionError)
    assert.equal(e.option, 'iamRegion')
    assert.match(e.message, /region of host "10\.0\.0\.7" cannot be told from its name/)
    return true
  })
})

test('iam: TLS is required unless iamAllowInsecure (prefer and allow refused); bad options and a missing signer are clear errors', async () => {
  // prefer/allow would send the token in the clear to a server (or a man in the middle) that declines TLS.
  for (const ssl of [undefined, false, 'disable', 'allow', 'prefer']) {
    const h = pluginHarness({ ssl, iamRegion: 'us-east-1' })
    await assert.rejects(iamPlugin().init!(h.services) as Promise<void>, (e: any) => {
      assert.ok(e instanceof InvalidOptionError)
      assert.equal(e.option, 'ssl')
      assert.match(e.message, /needs TLS.*iamAllowInsecure: true/)
      return true
    })
  }
  await iamPlugin().init!(pluginHarness({ iamAllowInsecure: true }).services)
  await iamPlugin().init!(pluginHarness({ ssl: 'prefer', iamAllowInsecure: true }).services)
  for (const ssl of [true, 'require', 'verify-full', { rejectUnauthorized: false }])
    await iamPlugin().init!(pluginHarness({ ssl }).services)
  await assert.rejects(
    iamPlugin({ iamTokenExpiration: 3600 }).init!(pluginHarness({ ssl: true }).services) as Promise<void>,
    /Invalid option iamTokenExpiration: got 3600 \(number\); expected a whole number from 1 to 900/,
  )
  const absent = '@aws-sdk/package-that-is-not-installed'
  await assert.rejects(
    iamPlugin({ importSigner: () => import(absent) }).init!(
      pluginHarness({ ssl: true }).services,
    ) as Promise<void>,
    (e: any) => {
      assert.ok(e instanceof MissingDependencyError)
      assert.equal(e.packageName, '@aws-sdk/rds-signer')
      return true
    },
  )
})

test('iam: the default credential chain is used when no credentials are given', async () => {
  const env = process.env
  const saved = { id: env.AWS_ACCESS_KEY_ID, key: env.AWS_SECRET_ACCESS_KEY }
  env.AWS_ACCESS_KEY_ID = LAB_AWS_CREDENTIALS.accessKeyId
  env.AWS_SECRET_ACCESS_KEY = LAB_AWS_CREDENTIALS.secretAccessKey
  try {
    const h = pluginHarness({ ssl: 'require', iamRegion: 'us-east-1' })
    const plugin = iamPlugin()
    await plugin.init!(h.services)
    assert.equal((await connect(h, plugin, endpoints[1]!)).who, 'iam_user')
  } finally {
    if (saved.id === undefined) delete env.AWS_ACCESS_KEY_ID
    else env.AWS_ACCESS_KEY_ID = saved.id
    if (saved.key === undefined) delete env.AWS_SECRET_ACCESS_KEY
    else env.AWS_SECRET_ACCESS_KEY = saved.key
  }
})

test('iam: a refused token gives the PAM error RDS sends; a refused cached token is re-signed once', async () => {
  const { h, plugin } = await setUp({ iamRegion: 'eu-west-1' })
  const before = refusals.length
  const error = await connect(h, plugin, endpoints[0]!).catch((e) => e)
  assert.equal(error.code, '28000')
  assert.equal(error.message, 'PAM authentication failed for user "iam_user"')
  assert.match(
    refusals
      .slice(before)
      .map((r) => r.reason)
      .join(),
    /region eu-west-1/,
  )

  const retry = await setUp()
  await connect(retry.h, retry.plugin, endpoints[0]!)
  let attempts = 0
  const ctx = retry.h.connectContext(endpoints[0]!, 'iam_user')
  await retry.plugin.connect!(ctx, async () => {
    if (attempts++ === 0)
      throw Object.assign(new Error('PAM authentication failed for user "iam_user"'), { code: '28000' })
  })
  assert.equal(attempts, 2)
  assert.equal(retry.signings.calls, 2)
})

test('iam: no token or AWS secret key in logs, errors or inspect output', async () => {
  const { h, plugin } = await setUp({ credentials: LAB_AWS_CREDENTIALS })
  const { ctx } = await connect(h, plugin, endpoints[0]!)
  const token = ctx.password!
  const signature = /X-Amz-Signature=([0-9a-f]+)/.exec(token)![1]!
  const refused = await setUp({ iamRegion: 'eu-west-1', credentials: LAB_AWS_CREDENTIALS })
  const error = await connect(refused.h, refused.plugin, endpoints[0]!).catch((e) => e)
  const badOption = await iamPlugin({ credentials: 'not-credentials-but-a-test-secret' as any }).init!(
    pluginHarness({ ssl: true }).services,
  )?.catch((e: unknown) => e)
  const haystack = [
    ...h.logLines,
    ...refused.h.logLines,
    inspect(plugin, { depth: Number.POSITIVE_INFINITY, showHidden: true }),
    inspect(iamOptionSpecs, { depth: Number.POSITIVE_INFINITY }),
    inspect(error, { depth: 10 }),
    inspect(badOption, { depth: 10 }),
  ].join('\n')
  assert.ok(h.logLines.some((l) => l.includes('signed a new authentication token')))
  assert.match(String((badOption as Error).message), /Invalid option credentials: got \*\*\* \(hidden\)/)
  for (const secret of [
    signature,
    LAB_AWS_CREDENTIALS.secretAccessKey,
    REAL_PASSWORD,
    'not-credentials-but-a-test-secret',
  ])
    assert.ok(!haystack.includes(secret), `leaked ${secret.slice(0, 6)}...`)
})
