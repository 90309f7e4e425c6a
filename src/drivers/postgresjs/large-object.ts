/**
 * `sql.largeObject(oid?, mode?)`, with the API of postgres.js's: a large object opened in a
 * transaction that stays open until `close()`. postgres.js binds its own to the instance it was
 * made by; this one runs on the client's `sql.begin`, so the transaction has `sql.begin`'s
 * failover contract (a lost connection rejects with `TransactionResolutionUnknownError`).
 *
 * @module
 */
import { Readable, Writable } from 'node:stream'
import type postgres from 'postgres'

/** `INV_WRITE | INV_READ`, PostgreSQL's open mode for reading and writing. */
const READ_WRITE = 0x00020000 | 0x00040000
const SEEK_SET = 0
const SEEK_END = 2

type Rows = postgres.RowList<postgres.Row[]>

/** An open large object (see postgres.js's `LargeObject`). */
export interface LargeObject {
  readable(options?: { highWaterMark?: number; start?: number; end?: number }): Promise<Readable>
  writable(options?: { highWaterMark?: number; start?: number }): Promise<Writable>
  /** Closes the object and commits the transaction. */
  close(): Promise<void>
  tell(): Promise<Rows>
  read(size: number): Promise<Rows>
  write(buffer: Uint8Array): Promise<Rows>
  truncate(size: number): Promise<Rows>
  seek(offset: number, whence?: number): Promise<Rows>
  size(): Promise<[{ position: bigint | number | string; size: bigint | number | string }]>
}

type Begin = (fn: (tx: postgres.TransactionSql) => Promise<unknown>) => Promise<unknown>

/**
 * Opens large object `oid` (a new one when 0 or absent) in a transaction of `begin`.
 *
 * @example
 * ```ts
 * const lo = await sql.largeObject()
 * await lo.write(Buffer.from('hello'))
 * await lo.close()
 * ```
 */
export function openLargeObject(begin: Begin, oid?: number, mode = READ_WRITE): Promise<LargeObject> {
  return new Promise<LargeObject>((resolve, reject) => {
    let opened = false
    begin(async (tx) => {
      const id = oid || (await tx`select lo_creat(-1) as oid`)[0]!.oid
      const [{ fd }] = (await tx`select lo_open(${id}, ${mode}) as fd`) as unknown as [{ fd: number }]
      let closed!: () => void
      const untilClosed = new Promise<void>((r) => {
        closed = r
      })
      const lo: LargeObject = {
        tell: () => tx`select lo_tell64(${fd}) as position`,
        read: (size) => tx`select loread(${fd}, ${size}) as data`,
        write: (buffer) => tx`select lowrite(${fd}, ${buffer as Buffer})`,
        truncate: (size) => tx`select lo_truncate64(${fd}, ${size})`,
        seek: (offset, whence = SEEK_SET) => tx`select lo_lseek64(${fd}, ${offset}, ${whence})`,
        async size() {
          const [{ position }] = (await lo.tell()) as unknown as [{ position: string }]
          const [{ size }] = (await tx`select lo_lseek64(${fd}, 0, ${SEEK_END}) as size`) as unknown as [
            { size: string },
          ]
          await lo.seek(Number(position))
          return [{ position, size }]
        },
        async close() {
          await tx`select lo_close(${fd})`
          closed()
        },
        readable: (options) => readable(lo, options),
        writable: (options) => writable(lo, options),
      }
      opened = true
      resolve(lo)
      // The transaction commits when the caller closes the object.
      await untilClosed
    }).catch((error: unknown) => {
      // Once opened, a failure shows in the caller's next call on the object.
      if (!opened) reject(error)
    })
  })
}

async function readable(
  lo: LargeObject,
  { highWaterMark = 16384, start = 0, end = Number.POSITIVE_INFINITY } = {},
): Promise<Readable> {
  if (start) await lo.seek(start)
  let left = end - start
  return new Readable({
    highWaterMark,
    read(size) {
      const want = Math.min(size, left)
      if (want <= 0) {
        this.push(null)
        return
      }
      lo.read(want).then(
        (rows) => {
          const data = (rows[0] as { data: Buffer }).data
          left -= data.length
          this.push(data)
          if (data.length < want) this.push(null)
        },
        (error: Error) => this.destroy(error),
      )
    },
  })
}

async function writable(lo: LargeObject, { highWaterMark = 16384, start = 0 } = {}): Promise<Writable> {
  if (start) await lo.seek(start)
  return new Writable({
    highWaterMark,
    write(chunk: Buffer, _encoding, callback) {
      lo.write(chunk).then(
        () => callback(),
        (error: Error) => callback(error),
      )
    },
  })
}
