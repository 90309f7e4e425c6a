/**
 * A throwaway server outlives no test process: one the runner kills (a file timeout, a silence)
 * runs no exit hook, and its servers used to run on for good. Both kinds: the driver tests' single
 * server (tests/helpers/pg-server.ts) and the authentication tests' scratch server
 * (lab/aws/scratch-postgres.ts), whose folders are in RAM.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import { repoRoot } from '../lab/pg-bin.ts'
import { eventually } from './helpers/ha.ts'
import { sameRuntimeProcess } from './helpers/spawn-runtime.ts'

const refuses = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })

for (const [kind, fixture] of [
  ['pg-server', 'pg-server-then-hang.ts'],
  ['scratch server', 'scratch-postgres-then-hang.ts'],
] as const)
  test(`${kind}: a killed test process leaves no server running and no folder behind`, () => orphan(fixture))

async function orphan(fixture: string): Promise<void> {
  const script = await sameRuntimeProcess(join(repoRoot, 'tests', 'fixtures', fixture))
  const child = spawn(script.command, script.args, { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const started = await new Promise<{ port: number; socketDir: string }>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`no server within 60 s: ${out}`)), 60_000)
      child.stdout!.on('data', (d) => {
        out += d
        const line = out.split('\n').find((l) => l.startsWith('{'))
        if (!line) return
        clearTimeout(timer)
        resolve(JSON.parse(line))
      })
      child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)))
    })
    assert.equal(await refuses(started.port), false, 'the server runs')
    child.kill('SIGKILL')
    await eventually(() => refuses(started.port), 10_000, 'the server stopped after its owner was killed')
    await eventually(() => !existsSync(started.socketDir), 10_000, "the server's folder removed")
    // And what watched for the owner's end has ended too (the runner reports what a file leaves).
    const watching = () =>
      execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
        .split('\n')
        .some((line) => line.includes(`tail --pid=${child.pid} `) || line.includes(` sh ${child.pid} `))
    await eventually(() => !watching(), 10_000, 'the watcher gone')
  } finally {
    child.kill('SIGKILL')
    script.done()
  }
}
