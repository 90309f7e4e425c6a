// @ts-nocheck -- cases ported verbatim from postgres.js's tests/index.js (porsager/postgres 3.4.9)
// biome-ignore-all lint: cases ported verbatim from postgres.js, kept as close to the original as possible
import net from 'node:net'
import { before } from 'node:test'
import { portHarness } from './helpers/passthrough-port.ts'

const h = portHarness('sql: postgres.js: ', { max_prepared_transactions: '10' })
const { t, options, idle_timeout, login_scram, delay } = h
const client = h.client
let sql
before(async () => {
  sql = await h.start()
})

t('Throws on illegal transactions', async () => {
  const sql = client({ ...options, max: 2, fetch_types: false })
  const error = await sql`begin`.catch((e) => e)
  return [error.code, 'UNSAFE_TRANSACTION']
})

t('Transaction throws', async () => {
  await sql`create table test (a int)`
  return [
    '22P02',
    await sql
      .begin(async (sql) => {
        await sql`insert into test values(1)`
        await sql`insert into test values('hej')`
      })
      .catch((x) => x.code),
    await sql`drop table test`,
  ]
})

t('Transaction rolls back', async () => {
  await sql`create table test (a int)`
  await sql
    .begin(async (sql) => {
      await sql`insert into test values(1)`
      await sql`insert into test values('hej')`
    })
    .catch(() => {
      /* ignore */
    })
  return [0, (await sql`select a from test`).count, await sql`drop table test`]
})

t('Transaction throws on uncaught savepoint', async () => {
  await sql`create table test (a int)`

  return [
    'fail',
    await sql
      .begin(async (sql) => {
        await sql`insert into test values(1)`
        await sql.savepoint(async (sql) => {
          await sql`insert into test values(2)`
          throw new Error('fail')
        })
      })
      .catch((err) => err.message),
    await sql`drop table test`,
  ]
})

t('Transaction throws on uncaught named savepoint', async () => {
  await sql`create table test (a int)`

  return [
    'fail',
    await sql
      .begin(async (sql) => {
        await sql`insert into test values(1)`
        await sql.savepoit('watpoint', async (sql) => {
          await sql`insert into test values(2)`
          throw new Error('fail')
        })
      })
      .catch(() => 'fail'),
    await sql`drop table test`,
  ]
})

t('Transaction succeeds on caught savepoint', async () => {
  await sql`create table test (a int)`
  await sql.begin(async (sql) => {
    await sql`insert into test values(1)`
    await sql
      .savepoint(async (sql) => {
        await sql`insert into test values(2)`
        throw new Error('please rollback')
      })
      .catch(() => {
        /* ignore */
      })
    await sql`insert into test values(3)`
  })

  return ['2', (await sql`select count(1) from test`)[0].count, await sql`drop table test`]
})

t('Savepoint returns Result', async () => {
  let result
  await sql.begin(async (sql) => {
    result = await sql.savepoint((sql) => sql`select 1 as x`)
  })

  return [1, result[0].x]
})

t('Prepared transaction', async () => {
  await sql`create table test (a int)`

  await sql.begin(async (sql) => {
    await sql`insert into test values(1)`
    await sql.prepare('tx1')
  })

  await sql`commit prepared 'tx1'`

  return ['1', (await sql`select count(1) from test`)[0].count, await sql`drop table test`]
})

t('Transaction requests are executed implicitly', async () => {
  const sql = client({ debug: true, idle_timeout: 1, fetch_types: false })
  return [
    'testing',
    (
      await sql.begin((sql) => [
        sql`select set_config('postgres_js.test', 'testing', true)`,
        sql`select current_setting('postgres_js.test') as x`,
      ])
    )[1][0].x,
  ]
})

t('Uncaught transaction request errors bubbles to transaction', async () => [
  '42703',
  await sql
    .begin((sql) => [sql`select wat`, sql`select current_setting('postgres_js.test') as x, ${1} as a`])
    .catch((e) => e.code),
])

t('Fragments in transactions', async () => [
  true,
  (await sql.begin((sql) => sql`select true as x where ${sql`1=1`}`))[0].x,
])

t('Transaction rejects with rethrown error', async () => [
  'WAT',
  await sql
    .begin(async (sql) => {
      try {
        await sql`select exception`
      } catch (ex) {
        throw new Error('WAT')
      }
    })
    .catch((e) => e.message),
])

t('Parallel transactions', async () => {
  await sql`create table test (a int)`
  return [
    '11',
    (await Promise.all([sql.begin((sql) => sql`select 1`), sql.begin((sql) => sql`select 1`)]))
      .map((x) => x.count)
      .join(''),
    await sql`drop table test`,
  ]
})

t('Many transactions at beginning of connection', async () => {
  const sql = client(options)
  const xs = await Promise.all(Array.from({ length: 100 }, () => sql.begin((sql) => sql`select 1`)))
  return [100, xs.length]
})

t('Transactions array', async () => {
  await sql`create table test (a int)`

  return [
    '11',
    (await sql.begin((sql) => [sql`select 1`.then((x) => x), sql`select 1`])).map((x) => x.count).join(''),
    await sql`drop table test`,
  ]
})

t('Transaction waits', async () => {
  await sql`create table test (a int)`
  await sql.begin(async (sql) => {
    await sql`insert into test values(1)`
    await sql
      .savepoint(async (sql) => {
        await sql`insert into test values(2)`
        throw new Error('please rollback')
      })
      .catch(() => {
        /* ignore */
      })
    await sql`insert into test values(3)`
  })

  return [
    '11',
    (await Promise.all([sql.begin((sql) => sql`select 1`), sql.begin((sql) => sql`select 1`)]))
      .map((x) => x.count)
      .join(''),
    await sql`drop table test`,
  ]
})

t('Helpers in Transaction', async () => {
  return ['1', (await sql.begin(async (sql) => await sql`select ${sql({ x: 1 })}`))[0].x]
})

t('Catches type serialize errors in transactions', async () => {
  const sql = client({
    idle_timeout,
    types: {
      text: {
        from: 25,
        to: 25,
        parse: (x) => x,
        serialize: () => {
          throw new Error('watSerialize')
        },
      },
    },
  })

  return [
    'watSerialize',
    await sql.begin((sql) => (sql`select 1`, sql`select ${'wat'}`)).catch((e) => e.message),
  ]
})

t('Catches type parse errors in transactions', async () => {
  const sql = client({
    idle_timeout,
    types: {
      text: {
        from: 25,
        to: 25,
        parse: () => {
          throw new Error('watParse')
        },
        serialize: (x) => x,
      },
    },
  })

  return ['watParse', await sql.begin((sql) => (sql`select 1`, sql`select 'wat'`)).catch((e) => e.message)]
})

t('Does not try rollback when commit errors', async () => {
  let notice = null
  const sql = client({ ...options, onnotice: (x) => (notice = x) })
  await sql`create table test(x int constraint test_constraint unique deferrable initially deferred)`

  await sql
    .begin('isolation level serializable', async (sql) => {
      await sql`insert into test values(1)`
      await sql`insert into test values(1)`
    })
    .catch((e) => e)

  return [notice, null, await sql`drop table test`]
})

t('Prevent premature end of connection in transaction', async () => {
  const sql = client({ max_lifetime: 0.01, idle_timeout })
  const result = await sql.begin(async (sql) => {
    await sql`select 1`
    await delay(20)
    await sql`select 1`
    return 'yay'
  })

  return ['yay', result]
})

t('reserve connection', async () => {
  const reserved = await sql.reserve()

  setTimeout(() => reserved.release(), 510)

  const xs = await Promise.all([
    reserved`select 1 as x`.then(([{ x }]) => ({ time: Date.now(), x })),
    sql`select 2 as x`.then(([{ x }]) => ({ time: Date.now(), x })),
    reserved`select 3 as x`.then(([{ x }]) => ({ time: Date.now(), x })),
  ])

  // postgres-ha: a reserved connection is a dedicated connection, not one of the pool's `max`,
  // so `sql` does not wait for the release here (postgres.js asserts it waited 500 ms).
  if (xs[0].time > xs[2].time) throw new Error('Wrong order')

  return ['123', xs.map((x) => x.x).join('')]
})

t('arrays in reserved connection', async () => {
  const reserved = await sql.reserve()
  const [{ x }] = await reserved`select array[1, 2, 3] as x`
  reserved.release()

  return ['123', x.join('')]
})

t('Copy read', async () => {
  const result = []

  await sql`create table test (x int)`
  await sql`insert into test select * from generate_series(1,10)`
  const readable = await sql`copy test to stdout`.readable()
  readable.on('data', (x) => result.push(x))
  await new Promise((r) => readable.on('end', r))

  return [result.length, 10, await sql`drop table test`]
})

t('Copy write', { timeout: 2 }, async () => {
  await sql`create table test (x int)`
  const writable = await sql`copy test from stdin`.writable()

  writable.write('1\n')
  writable.write('1\n')
  writable.end()

  await new Promise((r) => writable.on('finish', r))

  return [(await sql`select 1 from test`).length, 2, await sql`drop table test`]
})

t('Copy write as first', async () => {
  await sql`create table test (x int)`
  const first = client(options)
  const writable = await first`COPY test FROM STDIN WITH(FORMAT csv, HEADER false, DELIMITER ',')`.writable()
  writable.write('1\n')
  writable.write('1\n')
  writable.end()

  await new Promise((r) => writable.on('finish', r))

  return [(await sql`select 1 from test`).length, 2, await sql`drop table test`]
})

t('Copy from works in transaction', async () => {
  await sql`create table test(x int)`
  const xs = await sql.begin(async (sql) => {
    const writable = await sql`copy test from stdin`.writable()
    writable.end('1\n2')
    // Once the copy finished, not after a fixed 20 ms: a statement sent while the copy is still
    // going fails with COPY_IN_PROGRESS, and 20 ms is not always enough on a busy machine.
    await new Promise((r) => writable.on('finish', r))
    return sql`select 1 from test`
  })

  return [xs.length, 2, await sql`drop table test`]
})

t('query during copy error', async () => {
  const sql = client(options) // eslint-disable-line
  await sql`create table test (id serial primary key, name text)`
  const copy = await sql`copy test from stdin`.writable()
  const error = await sql`select 1`.catch((e) => e)
  await copy.end()

  return ['COPY_IN_PROGRESS', error.code, await sql`drop table test`]
})
