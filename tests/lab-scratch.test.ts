// Where labs live (lab/scratch.ts): in RAM when there is a tmpfs, and a folder nobody can ever
// `down` again (its owner process and daemon both gone) is found for removal, a live one never.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { labRoot, staleLabs } from '../lab/scratch.ts'

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' })
  return Number(child.stdout.trim())
}

test('lab-scratch: labs go to /dev/shm when it is a tmpfs with room (here it is)', () => {
  const root = labRoot()
  let tmpfs = false
  try {
    const fs = statfsSync('/dev/shm')
    tmpfs = fs.type === 0x01021994 && fs.bavail * fs.bsize >= 2 * 1024 ** 3
  } catch {}
  if (process.env.PGHA_LAB_ROOT) assert.equal(root, process.env.PGHA_LAB_ROOT)
  else if (tmpfs) assert.match(root, /^\/dev\/shm\/pgha-lab-\d+$/)
  else assert.match(root, /\/\.lab$/)
})

test('lab-scratch: only a folder whose owner and daemon are both gone is stale', () => {
  const root = mkdtempSync(join(tmpdir(), 'pgha-scratch-test-'))
  try {
    const dead = deadPid()
    const make = (name: string, daemonPid?: number) => {
      mkdirSync(join(root, name, 'data'), { recursive: true })
      if (daemonPid) writeFileSync(join(root, name, 'lab.json'), JSON.stringify({ pid: daemonPid }))
    }
    make(`run-${dead}-gone`) // owner gone, daemon never wrote lab.json
    make(`run-${dead}-gone2`, dead) // owner and daemon gone
    make(`run-${dead}-daemon`, process.pid) // owner gone, daemon still cleaning up
    make(`run-${process.pid}-mine`) // owner alive
    make('default') // a named lab (the CLI's): never swept
    assert.deepEqual(staleLabs(root).sort(), [
      join(root, `run-${dead}-gone`),
      join(root, `run-${dead}-gone2`),
    ])
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})
