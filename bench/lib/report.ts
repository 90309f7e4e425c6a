/**
 * What every benchmark part shares at its edges: the runtime it runs on, progress lines on
 * stderr, and the one JSON document on stdout, also written to `bench/results/<runtime>-<part>.json`.
 *
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { arch, availableParallelism, cpus, platform, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type RuntimeName, runtimeName } from '../../src/runtime/mod.ts'

/** `bench/results/`, where every part writes its JSON. */
export const resultsDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'results')

/** The runtime and its version, e.g. `{ name: 'deno', version: '2.9.6' }`. */
export interface RuntimeInfo {
  name: RuntimeName
  version: string
}

/** Which runtime this process is, and its version. */
export function runtimeInfo(): RuntimeInfo {
  const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } }
  const name = runtimeName()
  const version =
    name === 'deno' ? g.Deno!.version.deno : name === 'bun' ? g.Bun!.version : process.versions.node
  return { name, version }
}

/** A progress line on stderr, prefixed with the runtime and the part. */
export function progress(part: string, message: string): void {
  process.stderr.write(`[${runtimeName()} ${part}] ${message}\n`)
}

/**
 * Prints `doc` as the part's one JSON document on stdout and writes it to
 * `bench/results/<runtime>-<part>.json` (unless `write` is false). Returns the file's path.
 *
 * @example
 * ```ts
 * emit('idle', { part: 'idle', targetsMet: true }) // bench/results/node-idle.json
 * ```
 */
export function emit(part: string, doc: unknown, write = true): string {
  const text = JSON.stringify(doc, null, 2)
  const file = join(resultsDir, `${runtimeName()}-${part}.json`)
  if (write) {
    mkdirSync(resultsDir, { recursive: true })
    writeFileSync(file, text + '\n')
  }
  process.stdout.write(text + '\n')
  return file
}

/** The lab's event clock (lab/clock.ts): benchmark times compare with the lab's events. */
export { nowMs } from '../../lab/clock.ts'

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** The machine a result came from: what the README's table states next to it. */
export interface MachineInfo {
  cpus: number
  cpuModel: string
  platform: string
  memoryGb: number
}

/** CPU count and model (from `/proc/cpuinfo` on Linux), platform and memory. */
export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown'
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (match) cpuModel = match[1]!.trim()
  } catch {
    // Not Linux: os.cpus() is what there is.
  }
  return {
    cpus: availableParallelism(),
    cpuModel,
    platform: `${platform()} ${arch()}`,
    memoryGb: Math.round(totalmem() / 2 ** 30),
  }
}
