// Shared memory that killed PostgreSQL servers leave behind is reclaimed (lab/shared-memory.ts):
// /dev/shm files that no process maps and that are older than a minute go; young or mapped ones
// stay. (System V segments: tests/lab.test.ts 'down leaves no ... shared memory segment behind'.)
import assert from 'node:assert/strict'
import { chownSync, existsSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { test } from 'node:test'
import { serverUser } from '../lab/pg-bin.ts'
import { removeOrphanDsmFiles } from '../lab/shared-memory.ts'

const usable = existsSync('/dev/shm')

test('shared memory: orphaned /dev/shm segment files are removed, young ones kept', { skip: !usable }, () => {
  const stamp = 900_000_000 + Math.floor(Math.random() * 99_000_000)
  const old = `/dev/shm/PostgreSQL.${stamp}`
  const young = `/dev/shm/PostgreSQL.${stamp + 1}`
  const user = serverUser()
  try {
    for (const file of [old, young]) {
      writeFileSync(file, 'x')
      if (user) chownSync(file, user.uid, user.gid)
    }
    const hourAgo = new Date(Date.now() - 3_600_000)
    utimesSync(old, hourAgo, hourAgo)
    assert.ok(removeOrphanDsmFiles() >= 1)
    assert.equal(existsSync(old), false, 'an unmapped file an hour old is an orphan')
    assert.equal(existsSync(young), true, 'a file created a moment ago may be a segment being set up')
  } finally {
    rmSync(old, { force: true })
    rmSync(young, { force: true })
  }
})
