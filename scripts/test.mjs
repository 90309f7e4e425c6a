#!/usr/bin/env node
// `npm test`: format/lint check, typecheck, then the same tests/*.test.ts on node, deno and bun.
// Usage: node scripts/test.mjs [--runtimes node,deno,bun] [--no-checks] [tests/x.test.ts ...]
// Prints each runtime's own output, then a per-runtime count and a closing "N passed, N failed".
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bin = (name) => join(root, 'node_modules', '.bin', name)

const argv = process.argv.slice(2)
let runtimes = ['node', 'deno', 'bun']
let checks = true
const files = []
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  if (a === '--runtimes') runtimes = argv[++i].split(',')
  else if (a === '--no-checks') checks = false
  else if (a.startsWith('-')) {
    console.error(`unknown flag ${a}; valid: --runtimes node,deno,bun  --no-checks  [test files]`)
    process.exit(2)
  } else files.push(a)
}
const testFiles = files.length
  ? files
  : readdirSync(join(root, 'tests'))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => `tests/${f}`)

function run(label, command, args, env = {}) {
  return new Promise((resolve) => {
    const started = performance.now()
    process.stderr.write(`\n=== ${label}: ${command.split('/').pop()} ${args.join(' ')}\n`)
    const child = spawn(command, args, {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      process.stdout.write(d)
    })
    child.stderr.on('data', (d) => {
      out += d
      process.stderr.write(d)
    })
    child.on('close', (code) => resolve({ code, out, seconds: (performance.now() - started) / 1000 }))
  })
}

const parsers = {
  node: (out) => ({
    passed: last(out, /^# pass (\d+)/gm),
    failed: last(out, /^# fail (\d+)/gm) + last(out, /^# cancelled (\d+)/gm),
  }),
  deno: (out) => ({ passed: last(out, /(\d+) passed/g), failed: last(out, /(\d+) failed/g) }),
  bun: (out) => ({ passed: last(out, /^\s*(\d+) pass$/gm), failed: last(out, /^\s*(\d+) fail$/gm) }),
}
function last(text, re) {
  let m
  let value = 0
  for (m of text.matchAll(re)) value = Number(m[1])
  return value
}

const commands = {
  node: [
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-concurrency=1', ...testFiles],
  ],
  deno: [bin('deno'), ['test', '-A', '--no-check', ...testFiles]],
  bun: [bin('bun'), ['test', '--timeout', '120000', ...testFiles.map((f) => `./${f}`)]],
}

const summary = []
let failedSteps = 0
if (checks) {
  const lint = await run('lint', bin('biome'), ['check', '.'])
  summary.push(`lint: ${lint.code === 0 ? 'ok' : 'FAILED'} (${lint.seconds.toFixed(1)} s)`)
  if (lint.code !== 0) failedSteps++
  const types = await run('typecheck', bin('tsc'), ['--noEmit', '-p', 'tsconfig.json'])
  summary.push(`typecheck: ${types.code === 0 ? 'ok' : 'FAILED'} (${types.seconds.toFixed(1)} s)`)
  if (types.code !== 0) failedSteps++
  // JSR readiness: every public export documented, no slow types.
  const docs = await run('jsr', bin('deno'), ['doc', '--lint', 'mod.ts'])
  const publish =
    docs.code === 0 ? await run('jsr', bin('deno'), ['publish', '--dry-run', '--allow-dirty']) : docs
  summary.push(`jsr (doc lint, publish dry run): ${publish.code === 0 ? 'ok' : 'FAILED'}`)
  if (publish.code !== 0) failedSteps++
}

let passed = 0
let failed = 0
for (const runtime of runtimes) {
  const [command, args] = commands[runtime] ?? []
  if (!command) {
    console.error(`unknown runtime ${runtime}; valid: node, deno, bun`)
    process.exit(2)
  }
  const result = await run(runtime, command, args)
  const counts = parsers[runtime](result.out)
  // A runner that crashed or exited non-zero with no failure counted still fails the run.
  if (result.code !== 0 && counts.failed === 0) counts.failed = 1
  if (counts.passed === 0 && counts.failed === 0) counts.failed = 1
  passed += counts.passed
  failed += counts.failed
  summary.push(
    `${runtime}: ${counts.passed} passed, ${counts.failed} failed (${result.seconds.toFixed(1)} s)`,
  )
}

console.log('\n=== summary')
for (const line of summary) console.log(line)
console.log(`total: ${passed} passed, ${failed + failedSteps} failed`)
process.exit(failed + failedSteps > 0 ? 1 : 0)
