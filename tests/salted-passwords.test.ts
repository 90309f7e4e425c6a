// The SCRAM salted-password cache of a client's pool logins: derived once per (password, salt,
// iterations), right by RFC 7677's example, replaced when any of the three changes, zeroed on end.
import assert from 'node:assert/strict'
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto'
import { test } from 'node:test'
import { createSaltedPasswords } from '../src/drivers/postgresjs/salted-passwords.ts'

function counting() {
  const calls: string[] = []
  const salted = createSaltedPasswords((password, salt, iterations) => {
    calls.push(`${salt.toString('hex')}:${iterations}`)
    return pbkdf2Sync(password, salt, iterations, 32, 'sha256')
  })
  return { salted, calls }
}

test('salted passwords: one derivation per (password, salt, iterations), however many logins', () => {
  const { salted, calls } = counting()
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64')
  const first = salted.get('pencil', salt, 4096)
  for (let i = 0; i < 9; i++) assert.equal(salted.get('pencil', Buffer.from(salt), 4096), first)
  assert.equal(calls.length, 1)
  assert.deepEqual(first, pbkdf2Sync('pencil', salt, 4096, 32, 'sha256'))
})

test('salted passwords: a rotated password, a new salt or another iteration count derive again', () => {
  const { salted, calls } = counting()
  const salt = Buffer.from('0123456789abcdef')
  const a = salted.get('old', salt, 4096)
  const b = salted.get('new', salt, 4096)
  const c = salted.get('new', Buffer.from('fedcba9876543210'), 4096)
  const d = salted.get('new', salt, 8192)
  assert.equal(calls.length, 4)
  assert.equal(new Set([a, b, c, d].map((x) => x.toString('hex'))).size, 4)
  // A handful at most: the oldest goes first and is zeroed; asking for it again derives it anew.
  for (let i = 0; i < 8; i++) salted.get(`other ${i}`, salt, 4096)
  assert.ok(a.every((byte) => byte === 0))
  assert.deepEqual(salted.get('old', salt, 4096), pbkdf2Sync('old', salt, 4096, 32, 'sha256'))
})

test('salted passwords: clear() zeroes and forgets every value', () => {
  const { salted, calls } = counting()
  const salt = Buffer.from('0123456789abcdef')
  const before = salted.get('pencil', salt, 4096)
  salted.clear()
  assert.ok(before.every((byte) => byte === 0))
  assert.deepEqual(salted.get('pencil', salt, 4096), pbkdf2Sync('pencil', salt, 4096, 32, 'sha256'))
  assert.equal(calls.length, 2)
})

test('salted passwords: the default derivation gives RFC 7677’s client proof', () => {
  // RFC 7677 section 3: user "user", password "pencil".
  const clientFirstBare = 'n=user,r=rOprNGfwEbeRWgbNEkqO'
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'
  const withoutProof = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0'
  const salted = createSaltedPasswords()
  const key = salted.get('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096)
  const hmac = (k: Buffer, text: string) => createHmac('sha256', k).update(text).digest()
  const clientKey = hmac(key, 'Client Key')
  const signature = hmac(
    createHash('sha256').update(clientKey).digest(),
    `${clientFirstBare},${serverFirst},${withoutProof}`,
  )
  const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!)).toString('base64')
  assert.equal(proof, 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=')
})
