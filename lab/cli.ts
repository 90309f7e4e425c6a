/**
 * `npm run lab -- <command>`: the failover lab from a shell. `up`, `status` and `events` print
 * one JSON document on stdout; progress and messages go to stderr. Usage errors exit with 2,
 * failed operations with 1.
 *
 * @module
 */
import { join } from 'node:path'
import { call, forceDown, readLabFile, spawnDaemon } from './client.ts'
import { daemonConfig } from './mod.ts'
import { repoRoot } from './pg-bin.ts'
import { alive } from './procs.ts'
import type { LabOptions } from './types.ts'

const USAGE = `usage: npm run lab -- <command> [args] [flags]

commands:
  up                      start a lab (flags below); prints its status as JSON
  status                  print the lab's status as JSON
  events                  print the lab's events as JSON
  kill <id|writer>        SIGKILL the instance (postmaster and every backend at once)
  freeze <id|writer>      SIGSTOP every process of the instance (heal resumes it)
  stop <id|writer>        clean shutdown of the instance
  start <id>              start a stopped or killed instance (rejoins as a reader)
  switchover [<id>]       graceful: stop the writer, promote <id> or the most advanced reader
  blackhole <id|writer>   the instance endpoint swallows every byte, closes nothing
  latency <id|writer> <ms>  delay every byte through the instance endpoint
  heal [<id>]             remove faults of one instance, or of all
  add-reader              add a streaming reader (next free id, base backup of the writer)
  remove <id>             remove a reader: out of the topology, endpoint closed, data deleted
  down                    stop everything and remove the lab's data

flags:
  --dir PATH              lab folder (default .lab/default); every command takes it
  --nodes N               up: instances, writer included (default 3)
  --manager M             up: lab (default: the lab's own control plane) or patroni (etcd +
                          Patroni; needs apt-get install patroni etcd-server etcd-client)
  --dialect D             up: aurora-pg (default), rds-multi-az-pg or pg
  --promote-after-ms N    up: delay from writer loss to promotion (default 1000)
  --endpoint-lag-ms N     up: delay before endpoints follow a change (default 30000)
  --probe-timeout-ms N    up: a writer silent this long is lost (default 1000)
  --port N                up: the port of every endpoint (default: a free one)
  --async                 up: asynchronous replication (default: ANY 1 synchronous)
`

class UsageError extends Error {}

const arity: Record<string, [number, number]> = {
  up: [0, 0],
  status: [0, 0],
  events: [0, 0],
  kill: [1, 1],
  freeze: [1, 1],
  stop: [1, 1],
  start: [1, 1],
  switchover: [0, 1],
  blackhole: [1, 1],
  latency: [2, 2],
  heal: [0, 1],
  'add-reader': [0, 0],
  remove: [1, 1],
  down: [0, 0],
}

const numberFlags: Record<string, keyof LabOptions> = {
  '--nodes': 'nodes',
  '--promote-after-ms': 'promoteAfterMs',
  '--endpoint-lag-ms': 'endpointLagMs',
  '--probe-timeout-ms': 'probeTimeoutMs',
  '--port': 'port',
}

function parse(argv: string[]): { command: string; args: string[]; options: LabOptions; dir?: string } {
  const [command, ...rest] = argv
  if (!command || command === 'help' || command === '--help' || command === '-h') throw new UsageError('')
  if (!(command in arity)) throw new UsageError(`unknown command "${command}"`)
  const options: LabOptions = {}
  const args: string[] = []
  let dir: string | undefined
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!
    const [flag, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined]
    const value = () => {
      const v = inline ?? rest[++i]
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`)
      return v
    }
    if (flag === '--dir') dir = value()
    else if (flag === '--async') {
      if (command !== 'up') throw new UsageError(`--async applies to up only`)
      options.async = true
    } else if (flag === '--manager') {
      if (command !== 'up') throw new UsageError(`--manager applies to up only`)
      options.manager = value() as LabOptions['manager']
    } else if (flag === '--dialect') {
      if (command !== 'up') throw new UsageError(`--dialect applies to up only`)
      options.dialect = value() as LabOptions['dialect']
    } else if (flag in numberFlags) {
      if (command !== 'up') throw new UsageError(`${flag} applies to up only`)
      const v = value()
      if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a whole number, got "${v}"`)
      ;(options as any)[numberFlags[flag]!] = Number(v)
    } else if (a.startsWith('-') && !/^\d+$/.test(a)) throw new UsageError(`unknown flag "${a}"`)
    else args.push(a)
  }
  const [min, max] = arity[command]!
  if (args.length < min || args.length > max) {
    throw new UsageError(
      `${command} takes ${min === max ? min : `${min} to ${max}`} argument(s), got ${args.length}`,
    )
  }
  if (command === 'latency' && !/^\d+$/.test(args[1]!))
    throw new UsageError(`latency <ms> must be a whole number`)
  return { command, args, options, dir }
}

async function main(argv: string[]): Promise<number> {
  const { command, args, options, dir: given } = parse(argv)
  const dir = given ?? join(repoRoot, '.lab', 'default')
  if (command === 'up') {
    let config: ReturnType<typeof daemonConfig>
    try {
      config = { ...daemonConfig({ ...options, dir }), removeDir: given === undefined }
    } catch (e) {
      throw new UsageError((e as Error).message)
    }
    const kind = config.manager === 'patroni' ? 'Patroni' : config.dialect
    process.stderr.write(`starting a ${config.nodes}-node ${kind} lab in ${dir}\n`)
    const started = performance.now()
    const file = await spawnDaemon(config)
    const status = await call(file, 'status')
    const ms = Math.round(performance.now() - started)
    process.stderr.write(
      `up in ${ms} ms (cluster ${status.targets.upMs} ms; target <= ${status.targets.upTargetMs} ms); ` +
        `writer ${status.writer}; cluster endpoint ${status.clusterEndpoint.host}:${status.port}\n`,
    )
    process.stdout.write(
      `${JSON.stringify({ ...status, targets: { ...status.targets, commandMs: ms } }, null, 2)}\n`,
    )
    return 0
  }
  if (command === 'down') {
    await forceDown(dir)
    process.stderr.write(`lab in ${dir} is down\n`)
    return 0
  }
  const file = readLabFile(dir)
  if (!file?.ready || !alive(file.pid)) {
    process.stderr.write(
      `no lab is running in ${dir}; start one with: npm run lab -- up${given ? ` --dir ${given}` : ''}\n`,
    )
    return 1
  }
  const op = command === 'add-reader' ? 'addReader' : command
  const result = await call(file, op, command === 'latency' ? [args[0], Number(args[1])] : args)
  if (command === 'status' || command === 'events' || command === 'add-reader')
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
  else process.stderr.write(`${command}${args.length ? ` ${args.join(' ')}` : ''}: done\n`)
  return 0
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (e) {
  if (e instanceof UsageError) {
    if (e.message) process.stderr.write(`lab: ${e.message}\n\n`)
    process.stderr.write(USAGE)
    process.exitCode = e.message ? 2 : 0
  } else {
    process.stderr.write(`lab: ${(e as Error).message}\n`)
    process.exitCode = 1
  }
}
