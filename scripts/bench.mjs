#!/usr/bin/env node
// `npm run bench`: every benchmark part on node, deno and bun, then a summary table across runtimes.
// Usage: node scripts/bench.mjs [--runtimes node,deno,bun] [--parts failover,baseline,overhead,read-scaling,recovery,idle,deno-bench]
//        [--trials 10] [--baseline-trials 3] [--recovery-trials 5] [--idle-seconds 60] [--bench-iterations 3]
//        [--overhead-rounds 12]: more rounds narrow the overhead part's intervals (about 1/√rounds)
//        and take as much longer (about 3 to 5 minutes per runtime at 12 on a loaded 2-core machine)
//        npm run bench -- --manager patroni [--runtimes ...] [--trials 5]: only the Patroni part
//        (bench/patroni.ts: postgres-ha beside postgres.js multi-host on a real Patroni cluster).
// First `npm run build`: Node and Bun measure the built dist/ (what npm users run), Deno the
// published entry mod.ts (what JSR serves); see bench/lib/entry.ts.
// Each part prints one JSON document (saved to bench/results/<runtime>-<part>.json); their progress
// goes to stderr as it happens. failover, overhead and recovery run one process at a time; the idle parts of
// the three runtimes run together, alongside the baselines (idle clients do nothing, by design).
// The default run took 7.7 min on a 2-core machine before the overhead and recovery parts grew;
// those two alone now take about 7 min on the quiet 2-core machine (7.2 min: 12 rounds, 5 trials).
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bin = (name) => join(root, 'node_modules', '.bin', name)
const ALL_RUNTIMES = ['node', 'deno', 'bun']
const ALL_PARTS = ['failover', 'baseline', 'overhead', 'read-scaling', 'recovery', 'idle', 'deno-bench']

const options = {
  runtimes: ALL_RUNTIMES,
  parts: ALL_PARTS,
  trials: 10,
  'baseline-trials': 3,
  'recovery-trials': 5,
  'overhead-rounds': 12,
  'idle-seconds': 60,
  'bench-iterations': 3,
  manager: 'lab',
}
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const name = argv[i].replace(/^--/, '')
  const value = argv[++i]
  const valid = { runtimes: ALL_RUNTIMES, parts: ALL_PARTS }[name]
  if (!(name in options) || value === undefined) usage(`unknown flag or missing value: ${argv[i - 1]}`)
  if (name === 'manager') {
    if (value !== 'lab' && value !== 'patroni') usage(`--manager must be lab or patroni, got ${value}`)
    options.manager = value
  } else if (valid) {
    options[name] = value.split(',').filter(Boolean)
    for (const item of options[name]) if (!valid.includes(item)) usage(`--${name}: unknown "${item}"`)
  } else if (!/^\d+$/.test(value)) usage(`--${name} must be a whole number, got ${value}`)
  else options[name] = Number(value)
}

function usage(message) {
  console.error(
    `${message}\nusage: node scripts/bench.mjs [--runtimes ${ALL_RUNTIMES}] [--parts ${ALL_PARTS}] ` +
      '[--trials 10] [--baseline-trials 3] [--recovery-trials 5] [--overhead-rounds 12] [--idle-seconds 60] ' +
      '[--bench-iterations 3]',
  )
  process.exit(2)
}

/** The command that runs a TypeScript file on a runtime. */
function command(runtime, file, args) {
  if (runtime === 'node') return [process.execPath, ['--import', 'tsx', file, ...args]]
  if (runtime === 'deno') return [bin('deno'), ['run', '-A', file, ...args]]
  return [bin('bun'), [file, ...args]]
}

/** Runs a child; its stderr streams to ours, its stdout is collected. Killed after `timeoutMs`. */
function run(label, cmd, args, { env = {}, timeoutMs = 300_000 } = {}) {
  return new Promise((resolve) => {
    const started = performance.now()
    process.stderr.write(`\n=== ${label}\n`)
    const child = spawn(cmd, args, {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => process.stderr.write(d))
    const timer = setTimeout(() => {
      process.stderr.write(`${label}: no result after ${timeoutMs / 1000} s, stopping it\n`)
      child.kill('SIGTERM')
      setTimeout(() => child.kill('SIGKILL'), 5_000).unref()
    }, timeoutMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      const seconds = (performance.now() - started) / 1000
      process.stderr.write(`=== ${label}: exit ${code} after ${seconds.toFixed(1)} s\n`)
      resolve({ code, stdout, seconds })
    })
  })
}

const started = performance.now()
const failures = []

if (options.manager === 'patroni') {
  const trials = argv.includes('--trials') ? options.trials : 5
  const rows = []
  for (const runtime of options.runtimes) {
    const [cmd, args] = command(runtime, 'bench/patroni.ts', ['--trials', String(trials)])
    const r = await run(`${runtime} patroni`, cmd, args, { timeoutMs: 1_800_000 })
    if (r.code !== 0) failures.push(`${runtime} patroni exited with ${r.code}`)
    try {
      const doc = JSON.parse(r.stdout)
      for (const [scenario, s] of Object.entries(doc.scenarios))
        for (const [client, c] of Object.entries(s.byClient))
          rows.push(
            `| ${runtime} | ${scenario} | ${client} | ${c.driverAddedMs.p50} | ${c.driverAddedMs.p95} | ` +
              `${c.promotionMs.p50} | ${c.lost}/${c.duplicated} | ${c.capped} |`,
          )
    } catch {}
  }
  process.stdout.write(
    '\n| runtime | fault | client | driver-added p50 ms | p95 | promotion p50 ms | lost/dup | capped |\n' +
      '| --- | --- | --- | --- | --- | --- | --- | --- |\n' +
      `${rows.join('\n')}\n\nReproduce: npm run bench -- --manager patroni   (this run: ` +
      `${((performance.now() - started) / 60_000).toFixed(1)} min)\n`,
  )
  for (const f of failures) process.stdout.write(`FAILED: ${f}\n`)
  process.exit(failures.length ? 1 : 0)
}
const partArgs = {
  failover: ['--trials', String(options.trials)],
  baseline: ['--trials', String(options['baseline-trials'])],
  overhead: ['--rounds', String(options['overhead-rounds'])],
  'read-scaling': [],
  recovery: ['--trials', String(options['recovery-trials'])],
  idle: ['--seconds', String(options['idle-seconds'])],
}

/** Parts that take longer than the default 5 minutes on a busy 2-core machine. */
const partTimeoutMs = {
  overhead: 900_000 * Math.max(1, options['overhead-rounds'] / 12),
  recovery: 600_000,
  'read-scaling': 600_000,
}

const partRun = (runtime, part, extra = {}) => {
  const [cmd, args] = command(runtime, `bench/${part}.ts`, partArgs[part])
  return run(`${runtime} ${part}`, cmd, args, { timeoutMs: partTimeoutMs[part], ...extra }).then((r) => {
    if (r.code !== 0) failures.push(`${runtime} ${part} exited with ${r.code}`)
  })
}
const wants = (part) => options.parts.includes(part)

const build = await run('npm run build', bin('tsup'), [])
if (build.code !== 0) {
  process.stdout.write('FAILED: npm run build (the benchmarks measure dist/)\n')
  process.exit(1)
}

// Timing-sensitive parts: one process at a time, nothing else running.
for (const part of ['failover', 'overhead', 'read-scaling', 'recovery'].filter(wants))
  for (const runtime of options.runtimes) await partRun(runtime, part)

// The idle parts mostly wait, so they run together, alongside the baselines, whose outcomes are
// seconds apart (DNS lag, hangs) and not disturbed by a few idle labs.
const idle = wants('idle')
  ? Promise.all(
      options.runtimes.map((runtime) =>
        partRun(runtime, 'idle', { timeoutMs: (options['idle-seconds'] + 120) * 1000 }),
      ),
    )
  : Promise.resolve()
if (wants('baseline')) for (const runtime of options.runtimes) await partRun(runtime, 'baseline')
await idle

if (wants('deno-bench')) {
  const result = await run(
    'deno bench bench/failover.bench.ts',
    bin('deno'),
    ['bench', '-A', '--json', 'bench/failover.bench.ts'],
    { env: { BENCH_ITERATIONS: String(options['bench-iterations']) } },
  )
  if (result.code === 0)
    writeFileSync(join(root, 'bench', 'results', 'deno-failover-bench.json'), result.stdout)
  else failures.push(`deno bench exited with ${result.code}`)
}

const summary = await run('summary', process.execPath, ['--import', 'tsx', 'bench/summary.ts'])
process.stdout.write(`\n${summary.stdout}`)
const minutes = (performance.now() - started) / 60_000
process.stdout.write(`\nReproduce: npm run bench   (this run: ${minutes.toFixed(1)} min)\n`)
for (const f of failures) process.stdout.write(`FAILED: ${f}\n`)
process.exit(failures.length || summary.code ? 1 : 0)
