import { spawn } from 'node:child_process'
import { runtimeName } from '../../src/runtime/mod.ts'
import { bundleScripts } from './node-bundle.ts'

/** The command that runs a TypeScript file on the same runtime as the current test. */
export function sameRuntimeCommand(script: string): { command: string; args: string[] } {
  const runtime = runtimeName()
  const exec = runtime === 'deno' ? (globalThis as any).Deno.execPath() : process.execPath
  if (runtime === 'deno') return { command: exec, args: ['run', '-A', script] }
  if (runtime === 'bun') return { command: exec, args: [script] }
  return { command: exec, args: ['--import', 'tsx', script] }
}

/**
 * {@link sameRuntimeCommand}, with Node running an esbuild bundle of the script instead of tsx
 * (tests/helpers/node-bundle.ts: ~0.3-0.5 s less CPU per process); `done()` removes the bundle.
 */
export async function sameRuntimeProcess(
  script: string,
): Promise<{ command: string; args: string[]; done(): void }> {
  const bundles = runtimeName() === 'node' ? await bundleScripts([script]) : undefined
  if (bundles) return { command: process.execPath, args: bundles.args(script), done: bundles.remove }
  return { ...sameRuntimeCommand(script), done: () => {} }
}

/** Runs a script on the current runtime; resolves with its exit code, output and wall time. */
export async function runScript(
  script: string,
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number; timedOut: boolean }> {
  const { command, args, done } = await sameRuntimeProcess(script)
  const started = performance.now()
  return new Promise<Awaited<ReturnType<typeof runScript>>>((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const killer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(killer)
      resolve({ code, stdout, stderr, ms: performance.now() - started, timedOut })
    })
  }).finally(done)
}
