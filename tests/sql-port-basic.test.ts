// @ts-nocheck -- cases ported verbatim from postgres.js's tests/index.js (porsager/postgres 3.4.9)
// biome-ignore-all lint: cases ported verbatim from postgres.js, kept as close to the original as possible
import { before } from 'node:test'
import postgres from 'postgres'
import { portHarness } from './helpers/passthrough-port.ts'

const h = portHarness('sql: postgres.js: ')
const { t, options, idle_timeout, login_scram, rel } = h
const client = h.client
let sql
before(async () => {
  sql = await h.start()
})

t('Result is array', async () => [true, Array.isArray(await sql`select 1`)])

t('Result has count', async () => [1, (await sql`select 1`).count])

t('Result has command', async () => ['SELECT', (await sql`select 1`).command])

t('Create table', async () => [
  'CREATE TABLE',
  (await sql`create table test(int int)`).command,
  await sql`drop table test`,
])

t('Drop table', { timeout: 2 }, async () => {
  await sql`create table test(int int)`
  return ['DROP TABLE', (await sql`drop table test`).command]
})

t('null', async () => [null, (await sql`select ${null} as x`)[0].x])

t('Integer', async () => ['1', (await sql`select ${1} as x`)[0].x])

t('String', async () => ['hello', (await sql`select ${'hello'} as x`)[0].x])

t('Boolean false', async () => [false, (await sql`select ${false} as x`)[0].x])

t('Boolean true', async () => [true, (await sql`select ${true} as x`)[0].x])

t('Date', async () => {
  const now = new Date()
  return [0, now - (await sql`select ${now} as x`)[0].x]
})

t('Json', async () => {
  const x = (await sql`select ${sql.json({ a: 'hello', b: 42 })} as x`)[0].x
  return ['hello,42', [x.a, x.b].join()]
})

t('implicit json', async () => {
  const x = (await sql`select ${{ a: 'hello', b: 42 }}::json as x`)[0].x
  return ['hello,42', [x.a, x.b].join()]
})

t('implicit jsonb', async () => {
  const x = (await sql`select ${{ a: 'hello', b: 42 }}::jsonb as x`)[0].x
  return ['hello,42', [x.a, x.b].join()]
})

t('Empty array', async () => [true, Array.isArray((await sql`select ${sql.array([], 1009)} as x`)[0].x)])

t('String array', async () => ['123', (await sql`select ${'{1,2,3}'}::int[] as x`)[0].x.join('')])

t('Array of Integer', async () => ['3', (await sql`select ${sql.array([1, 2, 3])} as x`)[0].x[2]])

t('Array of String', async () => ['c', (await sql`select ${sql.array(['a', 'b', 'c'])} as x`)[0].x[2]])

t('Array of Date', async () => {
  const now = new Date()
  return [now.getTime(), (await sql`select ${sql.array([now, now, now])} as x`)[0].x[2].getTime()]
})

t('Array of Box', async () => [
  '(3,4),(1,2);(6,7),(4,5)',
  (await sql`select ${'{(1,2),(3,4);(4,5),(6,7)}'}::box[] as x`)[0].x.join(';'),
])

t('Nested array n2', async () => [
  '4',
  (
    await sql`select ${sql.array([
      [1, 2],
      [3, 4],
    ])} as x`
  )[0].x[1][1],
])

t('Nested array n3', async () => [
  '6',
  (await sql`select ${sql.array([[[1, 2]], [[3, 4]], [[5, 6]]])} as x`)[0].x[2][0][1],
])

t('Escape in arrays', async () => [
  'Hello "you",c:\\windows',
  (await sql`select ${sql.array(['Hello "you"', 'c:\\windows'])} as x`)[0].x.join(','),
])

t('Escapes', async () => {
  return ['hej"hej', Object.keys((await sql`select 1 as ${sql('hej"hej')}`)[0])[0]]
})

t('null for int', async () => {
  await sql`create table test (x int)`
  return [1, (await sql`insert into test values(${null})`).count, await sql`drop table test`]
})

t('Undefined values throws', async () => {
  let error

  await sql`
    select ${undefined} as x
  `.catch((x) => (error = x.code))

  return ['UNDEFINED_VALUE', error]
})

t('Transform undefined', async () => {
  const sql = client({ ...options, transform: { undefined: null } })
  return [null, (await sql`select ${undefined} as x`)[0].x]
})

t('Transform undefined in array', async () => {
  const sql = client({ ...options, transform: { undefined: null } })
  return [null, (await sql`select * from (values ${sql([undefined, undefined])}) as x(x, y)`)[0].y]
})

t('Null sets to null', async () => [null, (await sql`select ${null} as x`)[0].x])

t('Throw syntax error', async () => ['42601', (await sql`wat 1`.catch((x) => x)).code])

t('Point type', async () => {
  const sql = client({
    ...options,
    types: {
      point: {
        to: 600,
        from: [600],
        serialize: ([x, y]) => '(' + x + ',' + y + ')',
        parse: (x) =>
          x
            .slice(1, -1)
            .split(',')
            .map((x) => +x),
      },
    },
  })

  await sql`create table test (x point)`
  await sql`insert into test (x) values (${sql.types.point([10, 20])})`
  return [20, (await sql`select x from test`)[0].x[1], await sql`drop table test`]
})

t('Point type array', async () => {
  const sql = client({
    ...options,
    types: {
      point: {
        to: 600,
        from: [600],
        serialize: ([x, y]) => '(' + x + ',' + y + ')',
        parse: (x) =>
          x
            .slice(1, -1)
            .split(',')
            .map((x) => +x),
      },
    },
  })

  await sql`create table test (x point[])`
  await sql`insert into test (x) values (${sql.array([sql.types.point([10, 20]), sql.types.point([20, 30])])})`
  return [30, (await sql`select x from test`)[0].x[1][1], await sql`drop table test`]
})

t('transform column', async () => {
  const sql = client({
    ...options,
    transform: { column: (x) => x.split('').reverse().join('') },
  })

  await sql`create table test (hello_world int)`
  await sql`insert into test values (1)`
  return ['dlrow_olleh', Object.keys((await sql`select * from test`)[0])[0], await sql`drop table test`]
})

t('column toPascal', async () => {
  const sql = client({
    ...options,
    transform: { column: postgres.toPascal },
  })

  await sql`create table test (hello_world int)`
  await sql`insert into test values (1)`
  return ['HelloWorld', Object.keys((await sql`select * from test`)[0])[0], await sql`drop table test`]
})

t('column toCamel', async () => {
  const sql = client({
    ...options,
    transform: { column: postgres.toCamel },
  })

  await sql`create table test (hello_world int)`
  await sql`insert into test values (1)`
  return ['helloWorld', Object.keys((await sql`select * from test`)[0])[0], await sql`drop table test`]
})

t('column toKebab', async () => {
  const sql = client({
    ...options,
    transform: { column: postgres.toKebab },
  })

  await sql`create table test (hello_world int)`
  await sql`insert into test values (1)`
  return ['hello-world', Object.keys((await sql`select * from test`)[0])[0], await sql`drop table test`]
})

t('Transform nested json in arrays', async () => {
  const sql = client({
    ...options,
    transform: postgres.camel,
  })
  return ['aBcD', (await sql`select '[{"a_b":1},{"c_d":2}]'::jsonb as x`)[0].x.map(Object.keys).join('')]
})

t('unsafe', async () => {
  await sql`create table test (x int)`
  return [
    1,
    (await sql.unsafe('insert into test values ($1) returning *', [1]))[0].x,
    await sql`drop table test`,
  ]
})

t('unsafe simple', async () => {
  return [1, (await sql.unsafe('select 1 as x'))[0].x]
})

t('unsafe simple includes columns', async () => {
  return ['x', (await sql.unsafe('select 1 as x').values()).columns[0].name]
})

t('unsafe describe', async () => {
  const q = 'insert into test values (1)'
  await sql`create table test(a int unique)`
  await sql.unsafe(q).describe()
  const x = await sql.unsafe(q).describe()
  return [q, x.string, await sql`drop table test`]
})

t('simple query using unsafe with multiple statements', async () => {
  return ['1,2', (await sql.unsafe('select 1 as x;select 2 as x')).map((x) => x[0].x).join()]
})

t('simple query using simple() with multiple statements', async () => {
  return ['1,2', (await sql`select 1 as x;select 2 as x`.simple()).map((x) => x[0].x).join()]
})

t('has server parameters', async () => {
  return ['postgres.js', await sql`select 1`.then(() => sql.parameters.application_name)]
})

t('big query body', { timeout: 2 }, async () => {
  await sql`create table test (x int)`
  return [
    50000,
    (await sql`insert into test ${sql([...Array(50000).keys()].map((x) => ({ x })))}`).count,
    await sql`drop table test`,
  ]
})

t('let postgres do implicit cast of unknown types', async () => {
  await sql`create table test (x timestamp with time zone)`
  const [{ x }] = await sql`insert into test values (${new Date().toISOString()}) returning *`
  return [true, x instanceof Date, await sql`drop table test`]
})

t('only allows one statement', async () => ['42601', await sql`select 1; select 2`.catch((e) => e.code)])

t('await sql() throws not tagged error', async () => {
  let error
  try {
    await sql('select 1')
  } catch (e) {
    error = e.code
  }
  return ['NOT_TAGGED_CALL', error]
})

t('sql().then throws not tagged error', async () => {
  let error
  try {
    sql('select 1').then(() => {
      /* noop */
    })
  } catch (e) {
    error = e.code
  }
  return ['NOT_TAGGED_CALL', error]
})

t('little bobby tables', async () => {
  const name = "Robert'); DROP TABLE students;--"

  await sql`create table students (name text, age int)`
  await sql`insert into students (name) values (${name})`

  return [name, (await sql`select name from students`)[0].name, await sql`drop table students`]
})

t('dynamic table name', async () => {
  await sql`create table test(a int)`
  return [0, (await sql`select * from ${sql('test')}`).count, await sql`drop table test`]
})

t('dynamic schema name', async () => {
  await sql`create table test(a int)`
  return [0, (await sql`select * from ${sql('public')}.test`).count, await sql`drop table test`]
})

t('dynamic schema and table name', async () => {
  await sql`create table test(a int)`
  return [0, (await sql`select * from ${sql('public.test')}`).count, await sql`drop table test`]
})

t('dynamic column name', async () => {
  return ['!not_valid', Object.keys((await sql`select 1 as ${sql('!not_valid')}`)[0])[0]]
})

t('dynamic select as', async () => {
  return ['2', (await sql`select ${sql({ a: 1, b: 2 })}`)[0].b]
})

t('dynamic select as pluck', async () => {
  return [undefined, (await sql`select ${sql({ a: 1, b: 2 }, 'a')}`)[0].b]
})

t('dynamic insert', async () => {
  await sql`create table test (a int, b text)`
  const x = { a: 42, b: 'the answer' }

  return ['the answer', (await sql`insert into test ${sql(x)} returning *`)[0].b, await sql`drop table test`]
})

t('dynamic insert pluck', async () => {
  await sql`create table test (a int, b text)`
  const x = { a: 42, b: 'the answer' }

  return [null, (await sql`insert into test ${sql(x, 'a')} returning *`)[0].b, await sql`drop table test`]
})

t('dynamic in with empty array', async () => {
  await sql`create table test (a int)`
  await sql`insert into test values (1)`
  return [(await sql`select * from test where null in ${sql([])}`).count, 0, await sql`drop table test`]
})

t('dynamic in after insert', async () => {
  await sql`create table test (a int, b text)`
  const [{ x }] = await sql`
    with x as (
      insert into test values (1, 'hej')
      returning *
    )
    select 1 in ${sql([1, 2, 3])} as x from x
  `
  return [true, x, await sql`drop table test`]
})

t('array insert', async () => {
  await sql`create table test (a int, b int)`
  return [
    2,
    (await sql`insert into test (a, b) values ${sql([1, 2])} returning *`)[0].b,
    await sql`drop table test`,
  ]
})

t('where parameters in()', async () => {
  await sql`create table test (x text)`
  await sql`insert into test values ('a')`
  return [
    (await sql`select * from test where x in ${sql(['a', 'b', 'c'])}`)[0].x,
    'a',
    await sql`drop table test`,
  ]
})

t('where parameters in() values before', async () => {
  return [
    2,
    (
      await sql`
    with rows as (
      select * from (values (1), (2), (3), (4)) as x(a)
    )
    select * from rows where a in ${sql([3, 4])}
  `
    ).count,
  ]
})

t('dynamic multi row insert', async () => {
  await sql`create table test (a int, b text)`
  const x = { a: 42, b: 'the answer' }

  return [
    'the answer',
    (await sql`insert into test ${sql([x, x])} returning *`)[1].b,
    await sql`drop table test`,
  ]
})

t('dynamic update', async () => {
  await sql`create table test (a int, b text)`
  await sql`insert into test (a, b) values (17, 'wrong')`

  return [
    'the answer',
    (await sql`update test set ${sql({ a: 42, b: 'the answer' })} returning *`)[0].b,
    await sql`drop table test`,
  ]
})

t('dynamic update pluck', async () => {
  await sql`create table test (a int, b text)`
  await sql`insert into test (a, b) values (17, 'wrong')`

  return [
    'wrong',
    (await sql`update test set ${sql({ a: 42, b: 'the answer' }, 'a')} returning *`)[0].b,
    await sql`drop table test`,
  ]
})

t('dynamic select array', async () => {
  await sql`create table test (a int, b text)`
  await sql`insert into test (a, b) values (42, 'yay')`
  return ['yay', (await sql`select ${sql(['a', 'b'])} from test`)[0].b, await sql`drop table test`]
})

t('dynamic returning array', async () => {
  await sql`create table test (a int, b text)`
  return [
    'yay',
    (await sql`insert into test (a, b) values (42, 'yay') returning ${sql(['a', 'b'])}`)[0].b,
    await sql`drop table test`,
  ]
})

t('dynamic select args', async () => {
  await sql`create table test (a int, b text)`
  await sql`insert into test (a, b) values (42, 'yay')`
  return ['yay', (await sql`select ${sql('a', 'b')} from test`)[0].b, await sql`drop table test`]
})

t('dynamic values single row', async () => {
  const [{ b }] = await sql`
    select * from (values ${sql(['a', 'b', 'c'])}) as x(a, b, c)
  `

  return ['b', b]
})

t('dynamic values multi row', async () => {
  const [, { b }] = await sql`
    select * from (values ${sql([
      ['a', 'b', 'c'],
      ['a', 'b', 'c'],
    ])}) as x(a, b, c)
  `

  return ['b', b]
})

t('connection parameters', async () => {
  const sql = client({
    ...options,
    connection: {
      'some.var': 'yay',
    },
  })

  return ['yay', (await sql`select current_setting('some.var') as x`)[0].x]
})

t('Multiple queries', async () => {
  const sql = client(options)

  return [4, (await Promise.all([sql`select 1`, sql`select 2`, sql`select 3`, sql`select 4`])).length]
})

t('Multiple statements', async () => [
  2,
  await sql
    .unsafe(`
    select 1 as x;
    select 2 as a;
  `)
    .then(([, [x]]) => x.a),
])

t('bytea serializes and parses', async () => {
  const buf = Buffer.from('wat')

  await sql`create table test (x bytea)`
  await sql`insert into test values (${buf})`

  return [buf.toString(), (await sql`select x from test`)[0].x.toString(), await sql`drop table test`]
})

t('Transform row', async () => {
  const sql = client({
    ...options,
    transform: { row: () => 1 },
  })

  return [1, (await sql`select 'wat'`)[0]]
})

t('Transform value', async () => {
  const sql = client({
    ...options,
    transform: { value: () => 1 },
  })

  return [1, (await sql`select 'wat' as x`)[0].x]
})

t('Transform columns from', async () => {
  const sql = client({
    ...options,
    transform: postgres.fromCamel,
  })
  await sql`create table test (a_test int, b_test text)`
  await sql`insert into test ${sql([{ aTest: 1, bTest: 1 }])}`
  await sql`update test set ${sql({ aTest: 2, bTest: 2 })}`
  return [2, (await sql`select ${sql('aTest', 'bTest')} from test`)[0].a_test, await sql`drop table test`]
})

t('Transform columns to', async () => {
  const sql = client({
    ...options,
    transform: postgres.toCamel,
  })
  await sql`create table test (a_test int, b_test text)`
  await sql`insert into test ${sql([{ a_test: 1, b_test: 1 }])}`
  await sql`update test set ${sql({ a_test: 2, b_test: 2 })}`
  return [2, (await sql`select a_test, b_test from test`)[0].aTest, await sql`drop table test`]
})

t('Transform columns from and to', async () => {
  const sql = client({
    ...options,
    transform: postgres.camel,
  })
  await sql`create table test (a_test int, b_test text)`
  await sql`insert into test ${sql([{ aTest: 1, bTest: 1 }])}`
  await sql`update test set ${sql({ aTest: 2, bTest: 2 })}`
  return [2, (await sql`select ${sql('aTest', 'bTest')} from test`)[0].aTest, await sql`drop table test`]
})

t('Big result', async () => {
  return [100000, (await sql`select * from generate_series(1, 100000)`).count]
})

t('bigint is returned as String', async () => [
  'string',
  typeof (await sql`select 9223372036854777 as x`)[0].x,
])

t('int is returned as Number', async () => ['number', typeof (await sql`select 123 as x`)[0].x])

t('numeric is returned as string', async () => ['string', typeof (await sql`select 1.2 as x`)[0].x])

t('Error contains query string', async () => ['selec 1', await sql`selec 1`.catch((err) => err.query)])

t('Postgres errors are of type PostgresError', async () => [
  true,
  (await sql`bad keyword`.catch((e) => e)) instanceof sql.PostgresError,
])

t('Result has columns spec', async () => ['x', (await sql`select 1 as x`).columns[0].name])

t('Result as arrays', async () => {
  const sql = client({
    ...options,
    transform: {
      row: (x) => Object.values(x),
    },
  })

  return ['1,2', (await sql`select 1 as a, 2 as b`)[0].join(',')]
})

t('Insert empty array', async () => {
  await sql`create table tester (ints int[])`
  return [
    Array.isArray((await sql`insert into tester (ints) values (${sql.array([])}) returning *`)[0].ints),
    true,
    await sql`drop table tester`,
  ]
})

t('Insert array in sql()', async () => {
  await sql`create table tester (ints int[])`
  return [
    Array.isArray((await sql`insert into tester ${sql({ ints: sql.array([]) })} returning *`)[0].ints),
    true,
    await sql`drop table tester`,
  ]
})

t('Raw method returns rows as arrays', async () => {
  const [x] = await sql`select 1`.raw()
  return [Array.isArray(x), true]
})

t('Raw method returns values unparsed as Buffer', async () => {
  const [[x]] = await sql`select 1`.raw()
  return [x instanceof Uint8Array, true]
})

t('Array returns rows as arrays of columns', async () => {
  return [(await sql`select 1`.values())[0][0], 1]
})

t('Fragments', async () => [
  1,
  (
    await sql`
    ${sql`select`} 1 as x
  `
  )[0].x,
])

t('Result becomes array', async () => [true, (await sql`select 1`).slice() instanceof Array])

t('Describe', async () => {
  const type = (await sql`select ${1}::int as x`.describe()).types[0]
  return [23, type]
})

t('Describe a statement', async () => {
  await sql`create table tester (name text, age int)`
  const r = await sql`select name, age from tester where name like $1 and age > $2`.describe()
  return [
    '25,23/name:25,age:23',
    `${r.types.join(',')}/${r.columns.map((c) => `${c.name}:${c.type}`).join(',')}`,
    await sql`drop table tester`,
  ]
})

t('Describe a statement without parameters', async () => {
  await sql`create table tester (name text, age int)`
  const r = await sql`select name, age from tester`.describe()
  return ['0,2', `${r.types.length},${r.columns.length}`, await sql`drop table tester`]
})

t('Describe a statement without columns', async () => {
  await sql`create table tester (name text, age int)`
  const r = await sql`insert into tester (name, age) values ($1, $2)`.describe()
  return ['2,0', `${r.types.length},${r.columns.length}`, await sql`drop table tester`]
})

t('Supports fragments as dynamic parameters', async () => {
  await sql`create table test (a int, b bool)`
  await sql`insert into test values(1, true)`
  await sql`insert into test ${sql({
    a: 2,
    b: sql`exists(select 1 from test where b = ${true})`,
  })}`

  return ['1,t2,t', (await sql`select * from test`.raw()).join(''), await sql`drop table test`]
})

t('Supports nested fragments with parameters', async () => {
  await sql`create table test ${sql`(${sql('a')} ${sql`int`})`}`
  await sql`insert into test values(1)`
  return [1, (await sql`select a from test`)[0].a, await sql`drop table test`]
})

t('Supports multiple nested fragments with parameters', async () => {
  const [{ b }] = await sql`select * ${sql`from ${sql`(values (2, ${1}::int)) as x(${sql(['a', 'b'])})`}`}`
  return [1, b]
})

t('Supports arrays of fragments', async () => {
  const [{ x }] = await sql`
    ${[sql`select`, sql`1`, sql`as`, sql`x`]}
  `

  return [1, x]
})

t('Last keyword used even with duplicate keywords', async () => {
  await sql`create table test (x int)`
  await sql`insert into test values(1)`
  const [{ x }] = await sql`
    select
      1 in (1) as x
    from test
    where x in ${sql([1, 2])}
  `

  return [x, true, await sql`drop table test`]
})

t('Insert array with null', async () => {
  await sql`create table test (x int[])`
  await sql`insert into test ${sql({ x: [1, null, 3] })}`
  return [1, (await sql`select x from test`)[0].x[0], await sql`drop table test`]
})

t('Insert array with undefined throws', async () => {
  await sql`create table test (x int[])`
  return [
    'UNDEFINED_VALUE',
    await sql`insert into test ${sql({ x: [1, undefined, 3] })}`.catch((e) => e.code),
    await sql`drop table test`,
  ]
})

t('Insert array with undefined transform', async () => {
  const sql = client({ ...options, transform: { undefined: null } })
  await sql`create table test (x int[])`
  await sql`insert into test ${sql({ x: [1, undefined, 3] })}`
  return [1, (await sql`select x from test`)[0].x[0], await sql`drop table test`]
})

t('Execute', async () => {
  const result = await new Promise((resolve) => {
    const sql = client({ ...options, fetch_types: false, debug: (id, query) => resolve(query) })
    sql`select 1`.execute()
  })

  return [result, 'select 1']
})

t('Catches type serialize errors', async () => {
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

  return ['watSerialize', await sql`select ${'wat'}`.catch((e) => e.message)]
})

t('Catches type parse errors', async () => {
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

  return ['watParse', await sql`select 'wat'`.catch((e) => e.message)]
})

t('Escaping supports schemas and tables', async () => {
  await sql`create schema a`
  await sql`create table a.b (c int)`
  await sql`insert into a.b (c) values (1)`
  return [
    1,
    (await sql`select ${sql('a.b.c')} from a.b`)[0].c,
    await sql`drop table a.b`,
    await sql`drop schema a`,
  ]
})

t('prepare: false disables prepared statements', async () => {
  const sql = client({ ...options, prepare: false })
  const result = await sql`select * from pg_prepared_statements`
  return [false, result.some((x) => (x.name = result.statement.name))]
})

t('does not prepare unsafe query by default', async () => {
  const sql = client({ ...options, prepare: true })
  const result = await sql.unsafe('select * from pg_prepared_statements where name <> $1', ['bla'])
  return [false, result.some((x) => (x.name = result.statement.name))]
})

t('sql file', async () => [1, (await sql.file(rel('select.sql')))[0].x])

t('sql file throws', async () => ['ENOENT', await sql.file(rel('selectomondo.sql')).catch((x) => x.code)])

t('Parameters in file', async () => {
  const result = await sql.file(rel('select-param.sql'), ['hello'])
  return ['hello', result[0].x]
})

t('Support dynamic password function', async () => {
  return [
    true,
    (
      await client({
        ...options,
        ...login_scram,
        pass: () => 'pgha-test-secret',
      })`select true as x`
    )[0].x,
  ]
})

t('Support dynamic async password function', async () => {
  return [
    true,
    (
      await client({
        ...options,
        ...login_scram,
        pass: () => Promise.resolve('pgha-test-secret'),
      })`select true as x`
    )[0].x,
  ]
})

t('throws correct error when authentication fails', async () => {
  const sql = client({
    ...options,
    ...login_scram,
    pass: 'wrong',
  })
  return ['28P01', await sql`select 1`.catch((e) => e.code)]
})
