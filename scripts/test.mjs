#!/usr/bin/env node
// `npm test`: format/lint check, typecheck, JSR checks, and tests/*.test.ts on node, deno and bun.
// Usage: node scripts/test.mjs [--runtimes node,deno,bun] [--no-checks] [--jobs N] [tests/x.test.ts ...]
// Environment: TEST_JOBS (see --jobs), TEST_RETRIES (failed files run again alone; default 0).
//
// Every (runtime, test file) pair is its own process, and the checks are jobs too; a pool runs
// `--jobs` of them at once (default: twice the CPU count, at least 3; env TEST_JOBS). Most of a
// test's time is waiting on real PostgreSQL servers (labs pick free ports and their own folders),
// so files and runtimes overlap well. The longest jobs start first (their times from the last run
// are kept in .tmp/test-times.json, else those of scripts/test-times.json; a new file starts early,
// as if it were slow). Each job's wall and CPU time (.tmp/test-cpu.json) are printed with its output
// whole when it ends, then a per-runtime count and a closing "N passed, N failed".
// A file with the line `// test-runner: heavy` (it starts many servers at once) never runs beside
// another heavy job: the three runtimes' copies of it take turns. So do the copies of a file that
// takes its lab through tests/helpers/shared-lab.ts, which can then hand its lab on to the next.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { bundleForNode, removeDeadProcessFolders } from './node-bundle.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bin = (name) => join(root, 'node_modules', '.bin', name)
const RUNTIMES = ['node', 'deno', 'bun']
/** A job that runs longer than this is stopped and counted as failed (env TEST_FILE_TIMEOUT_S). */
const FILE_TIMEOUT_MS = (Number(process.env.TEST_FILE_TIMEOUT_S) || 600) * 1000
/**
 * A test file that prints nothing for this long is stopped and counted as failed (env
 * TEST_SILENCE_S). Every runtime prints each test as it ends, and no test of ours runs for a
 * minute: a silence this long is a hang, most often a handle a failed test left open (a server, a
 * client), which keeps the process alive after its last test. Stopped here, such a file costs
 * 3 minutes instead of the whole file timeout, twice (it is retried).
 */
const SILENCE_MS = (Number(process.env.TEST_SILENCE_S) || 180) * 1000

const argv = process.argv.slice(2)
let runtimes = RUNTIMES
let checks = true
let jobs = Number(process.env.TEST_JOBS) || Math.max(3, 2 * availableParallelism())
/**
 * Jobs started beyond `jobs` while the CPUs have idle time (default: as many again; none when
 * --jobs or TEST_JOBS fixes the count). Most jobs wait on servers for most of their time (the
 * CPU time beside each job says so), but some compute: a fixed count either leaves the CPUs idle
 * or overloads them. An extra job starts only when the machine (every user's processes) was less
 * than 80 % busy over the last second, and at most one a second.
 */
let extraJobs = process.env.TEST_JOBS ? 0 : jobs
const files = []
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  if (a === '--runtimes') runtimes = (argv[++i] ?? '').split(',').filter(Boolean)
  else if (a === '--no-checks') checks = false
  else if (a === '--jobs') {
    jobs = Number(argv[++i])
    extraJobs = 0
  } else if (a.startsWith('-')) usage(`unknown flag ${a}`)
  else files.push(a)
}
for (const r of runtimes) if (!RUNTIMES.includes(r)) usage(`unknown runtime ${r}; valid: node, deno, bun`)
if (!Number.isInteger(jobs) || jobs < 1) usage(`--jobs must be a whole number ≥ 1, got ${jobs}`)

function usage(message) {
  console.error(
    `${message}\nusage: node scripts/test.mjs [--runtimes node,deno,bun] [--no-checks] [--jobs N] [tests/x.test.ts ...]`,
  )
  process.exit(2)
}

const testFiles = files.length
  ? files
  : readdirSync(join(root, 'tests'))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => `tests/${f}`)

/**
 * Node runs each test file as one JavaScript bundle that esbuild (the compiler tsx itself uses)
 * builds for every file at once before the first node job, instead of through tsx: tsx's loader
 * cost 0.3-0.8 s of CPU per file (0.15 s without it for a unit-test file), on a suite that is
 * mostly CPU-bound on 2 cores. Packages stay external (node_modules as usual), each module keeps
 * its own `import.meta.url`, source maps point failures at the .ts lines. Scripts the tests
 * spawn still run through tsx. If the build fails, every node job runs through tsx as before;
 * TEST_NODE_BUNDLE=0 asks for that.
 */
const bundleDir = join(root, '.tmp', 'node-tests', String(process.pid))
let nodeBundles
function buildNodeBundles() {
  nodeBundles ??= (async () => {
    if (process.env.TEST_NODE_BUNDLE === '0') return false
    // Bundles of runs that were killed before their clean-up.
    removeDeadProcessFolders(dirname(bundleDir))
    try {
      await bundleForNode({
        entryPoints: testFiles.map((file) => join(root, file)),
        outdir: bundleDir,
        outbase: root,
      })
      return true
    } catch (error) {
      process.stderr.write(`node test bundles not built (node runs them through tsx): ${error.message}\n`)
      return false
    }
  })()
  return nodeBundles
}
/**
 * Labs a test file parked for the next file asking for the same shape (tests/helpers/shared-lab.ts,
 * lab/pool.ts): a lab start and stop cost ~0.65 s of CPU. The folder is this run's own (labs run
 * this checkout's code); labs still parked at the end are taken down.
 */
const labPool = join(root, '.tmp', 'lab-pool', String(process.pid))
process.env.PGHA_TEST_LAB_POOL = labPool
removeDeadProcessFolders(dirname(labPool))
/** The folders of the labs handed from one file to another in this run (parked now, or taken over since). */
function parkedLabDirs() {
  try {
    return [
      ...new Set(
        readFileSync(join(labPool, 'history'), 'utf8')
          .split('\n')
          .filter((line) => line.startsWith('parked '))
          .map((line) => line.slice('parked '.length)),
      ),
    ]
  } catch {
    return []
  }
}
/**
 * SIGTERM to the daemon of every lab still parked (it takes its lab down), then the folder goes.
 * Returns what the shared labs did: how many started, were adopted, were parked.
 */
function downParkedLabs() {
  const counts = { started: 0, adopted: 0, parked: 0 }
  try {
    for (const line of readFileSync(join(labPool, 'history'), 'utf8').split('\n')) {
      const what = line.split(' ')[0]
      if (what in counts) counts[what]++
    }
  } catch {}
  let shelves = []
  try {
    shelves = readdirSync(labPool).filter((name) => name !== 'history')
  } catch {}
  for (const shelf of shelves) {
    let entries = []
    try {
      entries = readdirSync(join(labPool, shelf))
    } catch {}
    for (const entry of entries) {
      try {
        const { dir } = JSON.parse(readFileSync(join(labPool, shelf, entry), 'utf8'))
        process.kill(JSON.parse(readFileSync(join(dir, 'lab.json'), 'utf8')).pid, 'SIGTERM')
      } catch {}
    }
  }
  rmSync(labPool, { recursive: true, force: true })
  return counts
}
const bundleOf = (file) => join(bundleDir, file.replace(/\.[cm]?tsx?$/, '.mjs'))

/** How each runtime runs one file, and how its output counts passes and failures. */
const runners = {
  node: {
    // Run directly (no `--test`, which would spawn a second process per file); node:test still
    // reports in TAP and exits non-zero on a failure.
    command: async (file) =>
      (await buildNodeBundles())
        ? [process.execPath, ['--enable-source-maps', '--test-reporter=tap', bundleOf(file)]]
        : [process.execPath, ['--import', 'tsx', '--test-reporter=tap', file]],
    count: (out) => ({
      passed: last(out, /^# pass (\d+)/gm),
      failed: last(out, /^# fail (\d+)/gm) + last(out, /^# cancelled (\d+)/gm),
    }),
  },
  deno: {
    command: (file) => [bin('deno'), ['test', '-A', '--no-check', file]],
    count: (out) => ({ passed: last(out, /(\d+) passed/g), failed: last(out, /(\d+) failed/g) }),
  },
  bun: {
    command: (file) => [bin('bun'), ['test', '--timeout', '120000', `./${file}`]],
    count: (out) => ({ passed: last(out, /^\s*(\d+) pass$/gm), failed: last(out, /^\s*(\d+) fail$/gm) }),
  },
}
function last(text, re) {
  let value = 0
  for (const m of text.matchAll(re)) value = Number(m[1])
  return value
}

// ---------------------------------------------------------------- CPU time per job

/**
 * Where a job's CPU time can be counted: a cgroup (v1 cpuacct, or v2) per job holds the job's
 * process and everything it starts — lab daemons and PostgreSQL servers, which leave the job's
 * process tree (detached) and whose time `wait` would never report. Without a writable cgroup
 * hierarchy (not root), jobs report no CPU time. The CPU time beside the wall time says whether a
 * slow job computes or waits.
 */
const cgroupBase = (() => {
  // Below the runner's own cgroup (/proc/self/cgroup), never beside it: on a co-mounted
  // cpu,cpuacct hierarchy or on cgroup v2, moving a job elsewhere could take it out of the CPU
  // quota of the container the suite runs in.
  let own = []
  try {
    own = readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')
  } catch {}
  const v1 = own.map((l) => l.split(':')).find(([, c]) => c?.split(',').includes('cpuacct'))
  const v2 = own.map((l) => l.split(':')).find(([id, c]) => id === '0' && c === '')
  const candidates = []
  if (v1) {
    const mount = ['/sys/fs/cgroup/cpuacct', '/sys/fs/cgroup/cpu,cpuacct'].find((m) => existsSync(m))
    if (mount) candidates.push([join(mount, v1[2]), 'cpuacct.usage', 'ns'])
  }
  if (v2) {
    for (const mount of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'])
      if (existsSync(join(mount, 'cgroup.procs'))) candidates.push([join(mount, v2[2]), 'cpu.stat', 'usec'])
  }
  for (const [dir, file, unit] of candidates) {
    // Cgroups of runs that ended with a job's processes still in them (empty now, or soon).
    try {
      for (const name of readdirSync(dir)) {
        const pid = /^postgres-ha-test-(\d+)$/.exec(name)?.[1]
        if (!pid || existsSync(`/proc/${pid}`)) continue
        for (const job of readdirSync(join(dir, name)))
          if (/^\d+$/.test(job)) cgroupRemove(join(dir, name, job))
        cgroupRemove(join(dir, name))
      }
    } catch {}
    const base = join(dir, `postgres-ha-test-${process.pid}`)
    try {
      mkdirSync(base)
      readFileSync(join(base, file))
      // A process may be moved in (not the case in every container, even for root).
      const moved = spawnSync('/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs"', base], { stdio: 'ignore' })
      if (moved.status === 0) return { base, file, unit }
    } catch {}
    cgroupRemove(base)
  }
  return undefined
})()
let cgroupCount = 0
function cgroupCreate() {
  if (!cgroupBase) return undefined
  const dir = join(cgroupBase.base, String(++cgroupCount))
  try {
    mkdirSync(dir)
    return dir
  } catch {
    return undefined
  }
}
/** CPU seconds used by every process that was in the cgroup, and how many are still in it. */
function cgroupRead(dir) {
  try {
    const text = readFileSync(join(dir, cgroupBase.file), 'utf8')
    const cpu =
      cgroupBase.unit === 'ns'
        ? Number(text) / 1e9
        : Number(/usage_usec (\d+)/.exec(text)?.[1] ?? Number.NaN) / 1e6
    const pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)
    // A lab the job handed on to a later file (parked or taken over) is no leak.
    const parked = parkedLabDirs()
    // Its servers' own processes name no folder: their parent (the postmaster) does.
    const inParkedLab = (pid, depth = 0) => {
      try {
        if (parked.some((lab) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(lab))) return true
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
        const parent = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]
        return depth < 1 && inParkedLab(parent, depth + 1)
      } catch {
        return false
      }
    }
    const left = parked.length
      ? pids.filter((pid) => existsSync(`/proc/${pid}`) && !inParkedLab(pid)).length
      : pids.length
    return { cpu, left, remain: pids.length }
  } catch {
    return { cpu: undefined, left: 0, remain: 0 }
  }
}
function cgroupRemove(dir) {
  try {
    rmdirSync(dir)
  } catch {}
}
/** Busy and total jiffies of the whole machine (every engineer's processes too), from /proc/stat. */
function machineCpu() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    const idle = f[3] + (f[4] ?? 0)
    const total = f.reduce((a, b) => a + b, 0)
    return { busy: total - idle, total }
  } catch {
    return undefined
  }
}

/**
 * Runs one command to its end, output collected; stopped after `timeoutMs`. It leads its own
 * process group, so that a stop reaches whatever it started too (a bench part, a script) and
 * none of them keeps the output pipes open. With a cgroup, a shell puts itself in it first, then
 * becomes the command: nothing the command starts escapes the count.
 */
function run(command, args, timeoutMs, silenceMs) {
  return new Promise((resolve) => {
    const started = performance.now()
    const cgroup = cgroupCreate()
    const [file, argv] = cgroup
      ? ['/bin/sh', ['-c', 'echo $$ 2>/dev/null > "$0/cgroup.procs"; exec "$@"', cgroup, command, ...args]]
      : [command, args]
    const child = spawn(file, argv, {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    const signal = (name) => {
      try {
        process.kill(-child.pid, name)
      } catch {}
    }
    let out = ''
    let timedOut = false
    let stopReason = ''
    const stop = (reason) => {
      if (timedOut) return
      timedOut = true
      stopReason = reason
      signal('SIGTERM')
      setTimeout(() => signal('SIGKILL'), 5_000).unref()
    }
    const timer = setTimeout(() => stop(`stopped after ${timeoutMs / 1000} s`), timeoutMs)
    const silenceStop = () =>
      stop(
        `stopped after ${silenceMs / 1000} s with no output: a test hangs, or something left open ` +
          '(a server, a client, a timer) keeps the process alive after its last test',
      )
    let silence = silenceMs ? setTimeout(silenceStop, silenceMs) : undefined
    const heard = (d) => {
      out += d
      if (silence) {
        clearTimeout(silence)
        silence = setTimeout(silenceStop, silenceMs)
      }
    }
    child.stdout.on('data', heard)
    child.stderr.on('data', heard)
    const done = (code) => {
      clearTimeout(timer)
      clearTimeout(silence)
      if (timedOut) out += `\n${stopReason}\n`
      const { cpu, left, remain } = cgroup ? cgroupRead(cgroup) : { cpu: undefined, left: 0, remain: 0 }
      if (left > 0) out += `\n${left} process(es) it started still run after it ended\n`
      if (cgroup && remain === 0) cgroupRemove(cgroup)
      resolve({ code: timedOut ? 1 : code, out, seconds: (performance.now() - started) / 1000, cpu })
    }
    child.on('error', (error) => {
      out += `\ncould not start ${command}: ${error.message}\n`
      done(1)
    })
    child.on('close', done)
  })
}

// ---------------------------------------------------------------- the jobs

const timesFile = join(root, '.tmp', 'test-times.json')
const cpuFile = join(root, '.tmp', 'test-cpu.json')
/**
 * Job times of a full run kept in the repository (a copy of a run's .tmp/test-times.json): a fresh
 * clone, as in CI, has no times of its own, and without these it ran the jobs in file order, the
 * slowest files among the last. Only their order matters; the checkout's own times come first.
 */
const committedTimesFile = join(root, 'scripts', 'test-times.json')
let previous = {}
for (const file of [committedTimesFile, timesFile]) {
  try {
    previous = { ...previous, ...JSON.parse(readFileSync(file, 'utf8')) }
  } catch {}
}

const jobList = []
if (checks) {
  jobList.push({
    label: 'lint',
    kind: 'check',
    steps: [[bin('biome'), ['check', '.']]],
  })
  jobList.push({
    label: 'typecheck',
    kind: 'check',
    steps: [[bin('tsc'), ['--noEmit', '-p', 'tsconfig.json']]],
  })
  // JSR readiness: every public export documented, no slow types.
  jobList.push({
    label: 'jsr (doc lint, publish dry run)',
    kind: 'check',
    steps: [
      [bin('deno'), ['doc', '--lint', 'mod.ts']],
      [bin('deno'), ['publish', '--dry-run', '--allow-dirty']],
    ],
  })
}
const heavy = new Set(
  testFiles.filter((file) => {
    try {
      return /^\/\/ test-runner: heavy$/m.test(readFileSync(join(root, file), 'utf8'))
    } catch {
      return false
    }
  }),
)
/**
 * Files that take their lab through tests/helpers/shared-lab.ts: their copies on the three runtimes
 * take turns, so that each can adopt the lab the one before it parked (same options) rather than
 * all three starting one at once and parking three that nobody takes.
 */
const sharesLabs = new Set(
  testFiles.filter((file) => {
    try {
      return readFileSync(join(root, file), 'utf8').includes('sharedLab(')
    } catch {
      return false
    }
  }),
)
for (const runtime of runtimes)
  for (const file of testFiles)
    jobList.push({
      label: `${runtime} ${file}`,
      kind: 'test',
      runtime,
      file,
      heavy: heavy.has(file),
      turns: sharesLabs.has(file),
    })
// Longest first; a job never timed before counts as long, so a new slow file cannot start last.
// A file timed on another runtime only (new since the times were kept) counts as that long.
function expected(job) {
  if (previous[job.label] !== undefined) return previous[job.label]
  const elsewhere = RUNTIMES.map((r) => previous[`${r} ${job.file}`]).filter((t) => t !== undefined)
  return elsewhere.length ? Math.max(...elsewhere) : 120
}
/**
 * Jobs that may not run beside each other form a chain that lasts as long as all of them together
 * and must start that much before the end: the heavy jobs (one at a time), and the copies of a
 * file that take turns. Such a job is ordered by its chain, any other by its own time: ordered by
 * their own times, failover-handover's three ~20 s turns started 214 s into a 281 s run, and the
 * last of them ended it.
 */
function priority(job) {
  const chain = job.heavy
    ? jobList.filter((j) => j.heavy)
    : job.turns
      ? jobList.filter((j) => j.turns && j.file === job.file)
      : [job]
  return chain.reduce((sum, j) => sum + expected(j), 0)
}
jobList.sort((a, b) => priority(b) - priority(a))

async function runJob(job) {
  if (job.kind === 'check') {
    let out = ''
    let seconds = 0
    let cpu = 0
    for (const [command, args] of job.steps) {
      const r = await run(command, args, FILE_TIMEOUT_MS)
      out += `$ ${command.split('/').pop()} ${args.join(' ')}\n${r.out}`
      seconds += r.seconds
      cpu += r.cpu ?? Number.NaN
      if (r.code !== 0) return { ...job, ok: false, out, seconds, cpu }
    }
    return { ...job, ok: true, out, seconds, cpu }
  }
  const [command, args] = await runners[job.runtime].command(job.file)
  const r = await run(command, args, FILE_TIMEOUT_MS, SILENCE_MS)
  const counts = runners[job.runtime].count(r.out)
  // A runner that crashed or exited non-zero with no failure counted still fails the file.
  if (r.code !== 0 && counts.failed === 0) counts.failed = 1
  if (counts.passed === 0 && counts.failed === 0) counts.failed = 1
  return {
    ...job,
    ...counts,
    ok: counts.failed === 0,
    out: r.out,
    seconds: r.seconds,
    cpu: r.cpu ?? Number.NaN,
  }
}

/** `12.3 s, 4.5 s CPU`: wall time, and CPU time where it was counted. */
function timing(r) {
  return `${r.seconds.toFixed(1)} s${Number.isFinite(r.cpu) ? `, ${r.cpu.toFixed(1)} s CPU` : ''}`
}

// ---------------------------------------------------------------- the pool

const started = performance.now()
const machineAtStart = machineCpu()
// Built while the first jobs (the longest, whatever their runtime) start.
if (runtimes.includes('node')) buildNodeBundles()
const results = []
const pending = [...jobList]
let heavyRunning = false
/** Files one of whose copies runs now (only those whose copies take turns). */
const filesRunning = new Set()
/** Whether `job` may start now: not a heavy one beside another, not a copy beside its file's turn. */
const startable = (job) => !(job.heavy && heavyRunning) && !(job.turns && filesRunning.has(job.file))
/** Workers waiting for a heavy job or a file's turn to end (only such jobs are left for them). */
const waiting = []
/** The next job to start: the longest pending one that may start now. */
async function take() {
  for (;;) {
    const i = pending.findIndex(startable)
    if (i >= 0) {
      const [job] = pending.splice(i, 1)
      if (job.heavy) heavyRunning = true
      if (job.turns) filesRunning.add(job.file)
      return job
    }
    if (pending.length === 0) return undefined
    await new Promise((resolve) => waiting.push(resolve))
  }
}
const running = new Set()
/** How busy the machine's CPUs were over the last second (0-1), sampled every 250 ms. */
const cpuSamples = []
let cpuBusy = 1
const sampler = setInterval(() => {
  const now = machineCpu()
  if (!now) return
  cpuSamples.push(now)
  if (cpuSamples.length > 5) cpuSamples.shift()
  const first = cpuSamples[0]
  if (cpuSamples.length === 5) cpuBusy = (now.busy - first.busy) / Math.max(1, now.total - first.total)
}, 250)
sampler.unref()
let lastExtraStart = 0
/** For an extra worker: resolves true once the CPUs have had idle time, false once nothing is left. */
async function cpuHasRoom() {
  for (;;) {
    // Nothing it may start (only jobs waiting for their turn): the regular workers take them.
    if (!pending.some(startable)) return false
    if (cpuBusy < 0.8 && performance.now() - lastExtraStart > 1_000) {
      lastExtraStart = performance.now()
      return true
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}
let peak = 0
process.stderr.write(
  `${jobList.length} jobs (${testFiles.length} files × ${runtimes.join(', ')}${checks ? ' + checks' : ''}), ${jobs} at a time${extraJobs ? `, up to ${jobs + extraJobs} while the CPUs have idle time` : ''}\n`,
)
async function worker(extra = false) {
  for (;;) {
    if (extra && !(await cpuHasRoom())) return
    const job = await take()
    if (!job) return
    peak = Math.max(peak, running.size + 1)
    running.add(job.label)
    const result = await runJob(job)
    running.delete(job.label)
    if (job.heavy) heavyRunning = false
    if (job.turns) filesRunning.delete(job.file)
    if (job.heavy || job.turns) for (const wake of waiting.splice(0)) wake()
    results.push(result)
    const counts = result.kind === 'test' ? `: ${result.passed} passed, ${result.failed} failed` : ''
    process.stdout.write(
      `\n=== ${result.label} (${timing(result)})${counts}${result.ok ? '' : ' — FAILED'}\n${result.out}`,
    )
    process.stderr.write(
      `[${results.length}/${jobList.length} at ${((performance.now() - started) / 1000).toFixed(0)} s] ` +
        `${result.ok ? 'ok  ' : 'FAIL'} ${result.label} (${timing(result)}); running: ${[...running].join(', ') || '—'}\n`,
    )
  }
}
await Promise.all([
  ...Array.from({ length: Math.min(jobs, jobList.length) }, () => worker()),
  ...Array.from({ length: extraJobs }, () => worker(true)),
])
clearInterval(sampler)

// TEST_RETRIES=N (CI sets 1): a failed test file runs again, alone, after the pool. A file that
// passes only then is reported as flaky in the summary, by name, never silently.
const retries = Number(process.env.TEST_RETRIES) || 0
const flaky = []
for (let attempt = 1; attempt <= retries; attempt++) {
  for (const first of results.filter((r) => r.kind === 'test' && !r.ok)) {
    process.stderr.write(`[retry ${attempt}] ${first.label}\n`)
    const again = await runJob(first)
    process.stdout.write(
      `\n=== retry ${attempt} of ${again.label} (${timing(again)}): ${again.passed} passed, ${again.failed} failed${again.ok ? '' : ' — FAILED'}\n${again.out}`,
    )
    if (!again.ok) continue
    results[results.indexOf(first)] = again
    flaky.push(`${first.label} (${first.failed} failed on the first run)`)
  }
}
const wallSeconds = (performance.now() - started) / 1000
const machineAtEnd = machineCpu()
rmSync(bundleDir, { recursive: true, force: true })
const sharedLabs = downParkedLabs()
/**
 * The CPU of every job and of whatever they started, from the run's own cgroup: a lab one job
 * parked and another used counts in the first job's cgroup, after that job's figure was read.
 */
let runCpu
if (cgroupBase) {
  try {
    const text = readFileSync(join(cgroupBase.base, cgroupBase.file), 'utf8')
    runCpu =
      cgroupBase.unit === 'ns'
        ? Number(text) / 1e9
        : Number(/usage_usec (\d+)/.exec(text)?.[1] ?? Number.NaN) / 1e6
  } catch {}
}
if (cgroupBase) {
  for (let i = 1; i <= cgroupCount; i++) cgroupRemove(join(cgroupBase.base, String(i)))
  cgroupRemove(cgroupBase.base)
}

try {
  mkdirSync(dirname(timesFile), { recursive: true })
  const times = { ...previous }
  for (const r of results) times[r.label] = Math.round(r.seconds * 10) / 10
  writeFileSync(timesFile, `${JSON.stringify(times, null, 1)}\n`)
  if (cgroupBase) {
    let cpuTimes = {}
    try {
      cpuTimes = JSON.parse(readFileSync(cpuFile, 'utf8'))
    } catch {}
    for (const r of results) if (Number.isFinite(r.cpu)) cpuTimes[r.label] = Math.round(r.cpu * 10) / 10
    writeFileSync(cpuFile, `${JSON.stringify(cpuTimes, null, 1)}\n`)
  }
} catch {}

// ---------------------------------------------------------------- the summary

console.log('\n=== summary')
let passed = 0
let failed = 0
for (const r of results.filter((r) => r.kind === 'check')) {
  console.log(`${r.label}: ${r.ok ? 'ok' : 'FAILED'} (${timing(r)})`)
  if (!r.ok) failed++
}
for (const runtime of runtimes) {
  const mine = results.filter((r) => r.runtime === runtime)
  const p = mine.reduce((a, r) => a + r.passed, 0)
  const f = mine.reduce((a, r) => a + r.failed, 0)
  const seconds = mine.reduce((a, r) => a + r.seconds, 0)
  const cpu = mine.reduce((a, r) => a + r.cpu, 0)
  passed += p
  failed += f
  console.log(
    `${runtime}: ${p} passed, ${f} failed (${mine.length} files, ${seconds.toFixed(1)} s of file time${Number.isFinite(cpu) ? `, ${cpu.toFixed(1)} s CPU` : ''})`,
  )
  for (const r of mine.filter((r) => !r.ok)) console.log(`  FAILED ${r.file}`)
}
const slowest = results
  .filter((r) => r.kind === 'test')
  .sort((a, b) => b.seconds - a.seconds)
  .slice(0, 5)
  .map((r) => `${r.label} ${r.seconds.toFixed(0)} s`)
console.log(`slowest: ${slowest.join(', ')}`)
console.log(
  `wall time: ${wallSeconds.toFixed(1)} s with ${jobs} jobs at a time${extraJobs ? ` (up to ${jobs + extraJobs} while the CPUs had idle time; at most ${peak} ran at once)` : ''}`,
)
// Whether the run was bound by the CPU: the jobs' own CPU time against what the cores could give,
// and how busy the machine was as a whole (other users' processes included).
const jobsCpu = Number.isFinite(runCpu) ? runCpu : results.reduce((a, r) => a + r.cpu, 0)
const cores = availableParallelism()
const machine =
  machineAtStart && machineAtEnd
    ? `; the machine was ${((100 * (machineAtEnd.busy - machineAtStart.busy)) / (machineAtEnd.total - machineAtStart.total)).toFixed(0)} % busy`
    : ''
console.log(
  `cpu: ${Number.isFinite(jobsCpu) ? `${jobsCpu.toFixed(1)} s for the jobs (${((100 * jobsCpu) / (wallSeconds * cores)).toFixed(0)} % of ${cores} cores over the wall time)` : 'not measured (no writable cgroup)'}${machine}; load average at the end ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
)
if (sharedLabs.started + sharedLabs.adopted > 0) {
  console.log(
    `shared labs (tests/helpers/shared-lab.ts): ${sharedLabs.started} started, ${sharedLabs.adopted} taken over from an earlier file, ${sharedLabs.parked} handed on`,
  )
}
if (flaky.length) console.log(`FLAKY (failed, then passed when run again alone): ${flaky.join('; ')}`)
// The Patroni tests need Debian packages; without them they skip, and the summary says so once.
const onPath = (name) => (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, name)))
const patroniTests = testFiles.filter((f) => /patroni/.test(f))
if (patroniTests.length && !['patroni', 'patronictl', 'etcd'].every(onPath)) {
  console.log(
    `patroni: NOT RUN (${patroniTests.join(', ')} skipped): apt-get update && apt-get install -y patroni etcd-server etcd-client`,
  )
}
console.log(`total: ${passed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
