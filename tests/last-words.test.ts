// The server's last words (src/drivers/postgresjs/last-words.ts): the FATAL ErrorResponse that ends
// a connection's byte stream is read back from its last chunks, wherever the chunks were cut.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { finalServerError } from '../src/drivers/postgresjs/last-words.ts'

/** An ErrorResponse ('E', length, fields, terminator) as PostgreSQL sends it. */
function errorResponse(fields: Record<string, string>): Uint8Array {
  const body = [...Object.entries(fields).map(([k, v]) => `${k}${v}\0`), '\0'].join('')
  const bytes = new TextEncoder().encode(body)
  const out = new Uint8Array(5 + bytes.length)
  out[0] = 0x45
  new DataView(out.buffer).setInt32(1, 4 + bytes.length)
  out.set(bytes, 5)
  return out
}

const FATAL = errorResponse({
  S: 'FATAL',
  V: 'FATAL',
  C: '57P04',
  M: 'terminating connection due to conflict with recovery',
  D: 'User was connected to a database that must be dropped.',
})
// A DataRow and CommandComplete before it, as a statement's answer would leave them.
const BEFORE = new Uint8Array([0x44, 0, 0, 0, 11, 0, 1, 0, 0, 0, 1, 0x45, 0x43, 0, 0, 0, 5, 0])

const join = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

test('last words: a FATAL ErrorResponse at the end of the stream, whole or cut anywhere across two chunks', () => {
  const stream = join(BEFORE, FATAL)
  for (let cut = 0; cut <= stream.length; cut++) {
    const fields = finalServerError(stream.subarray(0, cut), stream.subarray(cut))
    if (cut === stream.length) {
      assert.equal(fields, undefined, 'an empty last chunk ends nothing')
      continue
    }
    assert.equal(fields?.code, '57P04', `cut at ${cut}`)
    assert.equal(fields?.severity, 'FATAL')
    assert.equal(fields?.message, 'terminating connection due to conflict with recovery')
    assert.equal(fields?.detail, 'User was connected to a database that must be dropped.')
  }
})

test('last words: no FATAL at the very end means none — an ERROR, a ReadyForQuery after it, or other bytes', () => {
  const error = errorResponse({ S: 'ERROR', V: 'ERROR', C: '40001', M: 'canceling statement' })
  assert.equal(finalServerError(undefined, error), undefined, 'an ERROR keeps the session')
  const ready = new Uint8Array([0x5a, 0, 0, 0, 5, 0x49])
  assert.equal(finalServerError(FATAL, ready), undefined, 'something followed the FATAL')
  assert.equal(finalServerError(undefined, BEFORE), undefined)
  assert.equal(finalServerError(undefined, undefined), undefined)
})
