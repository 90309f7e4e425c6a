// A `tx.file()` (or a savepoint's `sp.file()`) whose file is still being read when the transaction's
// connection is lost: once read, its statement must not reach any connection — neither the closed
// one (postgres.js would throw from a setImmediate and end the process) nor the session postgres.js
// reconnected it to (the statement would run outside the transaction and be reported as part of
// it). It rejects with TransactionResolutionUnknownError, as every later statement of a lost
// transaction does. A named pipe holds the read in flight for as long as the test needs.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import postgres from 'postgres'
import { postgresHa, TransactionResolutionUnknownError } from '../mod.ts'
import { describeCrashes } from './helpers/crash-watch.ts'
import { eventually, labClientOptions, settle, terminateBackend, within } from './helpers/ha.ts'
import { beginLosing, lossLab } from './helpers/loss-lab.ts'

const t = lossLab('file_loss')
const { table, crashes } = t

/**
 * A named pipe in a directory of its own. Reading it (`readFile`) waits until a writer opens it and
 * then until the writer closes it, so a `file()` statement's read stays in flight until
 * {@link Pipe.write}.
 */
class Pipe {
  readonly dir = mkdtempSync(join(tmpdir(), 'pgha-file-loss-'))
  readonly path = join(this.dir, 'statement.sql')
  #fd: number | undefined

  constructor() {
    execFileSync('mkfifo', [this.path])
  }

  /** Opens the writing end without blocking: ENXIO while nobody has the pipe open for reading. */
  #open(): boolean {
    try {
      this.#fd = openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK)
      return true
    } catch (error) {
      if ((error as { code?: string }).code === 'ENXIO') return false
      throw error
    }
  }

  /** Resolves once a reader has the pipe open: from then on its read waits for {@link Pipe.write}. */
  readerWaiting(): Promise<void> {
    return eventually(() => this.#open(), 10_000, 'the file() read to open the pipe')
  }

  /** Gives the waiting reader `text` and the end of the file. */
  write(text: string): void {
    if (this.#fd === undefined) throw new Error('no reader has the pipe open')
    writeSync(this.#fd, text)
    closeSync(this.#fd)
    this.#fd = undefined
  }

  remove(): void {
    // A reader still blocked on the pipe would hold a thread and the process open: it reads nothing.
    if (this.#fd === undefined) this.#open()
    if (this.#fd !== undefined) closeSync(this.#fd)
    this.#fd = undefined
    rmSync(this.dir, { recursive: true, force: true })
  }
}

const terminate = (pid: number) => terminateBackend(t.lab.url('cluster'), pid)

/** The ids in the table, read by a client of its own (nothing of postgres-ha's in the way). */
async function rowsFromFreshClient(): Promise<number[]> {
  const fresh = postgres(t.lab.url('cluster'), { max: 1, onnotice: () => {} })
  try {
    return (await fresh.unsafe(`select id from ${table} order by id`)).map((r) => r.id as number)
  } finally {
    await fresh.end()
  }
}

type Scope = postgres.TransactionSql
type Settled = Awaited<ReturnType<typeof settle>>

/**
 * In `scope`: starts `scope.file(pipe)`, waits until its read is in flight, ends the session with
 * `pg_terminate_backend`, and waits until a statement of `scope` fails (the loss is known). Resolves
 * with the file statement's promise, settled (in an object: awaiting it here would wait for the read).
 */
async function loseWhileReading(scope: Scope, pipe: Pipe): Promise<{ file: Promise<Settled> }> {
  const [{ pid }] = (await scope`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
  const reading = settle(scope.file(pipe.path) as unknown as Promise<unknown>)
  await pipe.readerWaiting()
  await terminate(pid)
  // The close reaches the client some time after the terminate: a bounded poll, not a sleep.
  await eventually(
    () =>
      scope`select 1`.then(
        () => false,
        () => true,
      ),
    10_000,
    'a statement of the transaction to fail after pg_terminate_backend',
  )
  return { file: reading }
}

function assertRefused(r: Settled | undefined, what: string): void {
  assert.ok(r, `${what} never settled`)
  assert.equal(r.ok, false, `${what} ran`)
  if (!r.ok) assert.ok(r.error instanceof TransactionResolutionUnknownError, `${what}: got ${r.error}`)
}

for (const where of ['transaction', 'savepoint'] as const) {
  const fileOf = where === 'transaction' ? 'tx.file()' : 'sp.file()'
  const id = where === 'transaction' ? 1 : 2

  test(`begin: a ${fileOf} whose file is being read when the connection is lost never reaches the closed connection`, async () => {
    const pipe = new Pipe()
    const seen = crashes.seen.length
    try {
      let file: Settled | undefined
      const result = await beginLosing(t.sql, where, async (scope: Scope) => {
        const reading = await loseWhileReading(scope, pipe)
        pipe.write(`insert into ${table} values (${id})`)
        file = await within(reading.file, `the ${fileOf} statement`)
      })
      assert.equal(describeCrashes(crashes.seen.slice(seen)), '', 'nothing thrown outside the caller')
      assertRefused(file, `the ${fileOf} statement`)
      assertRefused(result, 'sql.begin')
      assert.deepEqual(await rowsFromFreshClient(), [], 'the file statement ran')
      assert.deepEqual([...(await t.sql`select 1 as x`)], [{ x: 1 }], 'the sql works afterwards')
    } finally {
      pipe.remove()
    }
  })

  test(`begin: a ${fileOf} whose file is being read when the connection is lost never runs on the session postgres.js reconnected`, async () => {
    // One connection: the next statement reconnects the very connection the transaction was on.
    const one = postgresHa(t.lab.url('cluster'), labClientOptions({ max: 1 }))
    const pipe = new Pipe()
    const seen = crashes.seen.length
    try {
      await one`select 1`
      let file: Settled | undefined
      let lost!: () => void
      const readingAtLoss = new Promise<void>((resolve) => (lost = resolve))
      let resume!: () => void
      const resumed = new Promise<void>((resolve) => (resume = resolve))
      let bodyDone!: () => void
      const body = new Promise<void>((resolve) => (bodyDone = resolve))
      let firstPid = 0
      const result = settle(
        one.begin(async (tx) => {
          try {
            const inScope = async (scope: Scope) => {
              const [row] = (await scope`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
              firstPid = row.pid
              const reading = await loseWhileReading(scope, pipe)
              lost()
              await resumed
              pipe.write(`insert into ${table} values (${id + 10})`)
              file = await within(reading.file, `the ${fileOf} statement`)
            }
            if (where === 'transaction') await inScope(tx)
            else await tx.savepoint(inScope).catch(() => {})
          } finally {
            bodyDone()
          }
        }),
      )
      await within(readingAtLoss, 'the loss while the file is read')
      // The transaction's connection, reconnected to a new session, is the pool's again.
      const [{ pid }] = (await one`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
      assert.notEqual(pid, firstPid, 'a new session')
      resume()
      await within(body, 'the transaction body', 30_000)
      assert.deepEqual([...(await one`select 1 as x`)], [{ x: 1 }], 'the client works afterwards')
      await new Promise((r) => setTimeout(r, 300))
      assert.equal(describeCrashes(crashes.seen.slice(seen)), '', 'nothing thrown outside the caller')
      assertRefused(file, `the ${fileOf} statement`)
      assertRefused(await result, 'sql.begin')
      assert.deepEqual(await rowsFromFreshClient(), [], 'the file statement ran outside the transaction')
    } finally {
      pipe.remove()
      await one.end()
    }
  })
}

test('begin: tx.file() and sp.file() on a live connection run in the transaction as postgres.js runs them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-file-'))
  try {
    const select = join(dir, 'select.sql')
    const inserts = join(dir, 'inserts.sql')
    writeFileSync(select, 'select $1::text as x, pg_backend_pid() as pid')
    // Two statements: without arguments a file runs with the simple protocol, as in postgres.js.
    writeFileSync(inserts, `insert into ${table} values (100); insert into ${table} values (101)`)
    const seen = await t.sql.begin(async (tx) => {
      const [{ pid }] = (await tx`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
      const [row] = await tx.file(select, ['hello'])
      const values = await tx.file(select, ['v']).values()
      const missing = await tx.file(join(dir, 'missing.sql')).catch((e: { code?: string }) => e.code)
      await tx.file(inserts)
      const [inSavepoint] = await tx.savepoint((sp) => sp.file(select, ['s']))
      return { pid, row: { ...row }, values: [...values], missing, inSavepoint: { ...inSavepoint } }
    })
    assert.deepEqual(seen.row, { x: 'hello', pid: seen.pid })
    assert.deepEqual(seen.values, [['v', seen.pid]])
    assert.equal(seen.missing, 'ENOENT')
    assert.deepEqual(seen.inSavepoint, { x: 's', pid: seen.pid })
    assert.deepEqual(
      (await rowsFromFreshClient()).filter((id) => id >= 100),
      [100, 101],
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('begin: a tx.file() given no path rejects with the read error, in the transaction, without a crash', async () => {
  const seen = crashes.seen.length
  const result = await settle(
    t.sql.begin(async (tx) => {
      const error = await within(
        (tx.file(undefined as unknown as string) as unknown as Promise<unknown>).then(
          () => undefined,
          (e: unknown) => e,
        ),
        'the tx.file() statement',
      )
      // The transaction goes on: nothing reached its connection.
      const [{ x }] = await tx`select 1 as x`
      return { error, x }
    }),
  )
  assert.equal(describeCrashes(crashes.seen.slice(seen)), '', 'nothing thrown outside the caller')
  assert.ok(result.ok, `the transaction failed: ${result.ok ? '' : result.error}`)
  if (result.ok) {
    assert.equal((result.value.error as { code?: string })?.code, 'ERR_INVALID_ARG_TYPE')
    assert.equal(result.value.x, 1)
  }
})
