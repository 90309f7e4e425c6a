import { spawn } from 'node:child_process'
import { runtimeName } from '../../src/runtime/mod.ts'

/** The command that runs a TypeScript file on the same runtime as the current test. */
export function sameRuntimeCommand(script: string): { command: string; args: string[] } {
  const runtime = runtimeName()
  const exec = runtime === 'deno' ? (globalThis as any).Deno.execPath() : process.execPath
  if (runtime === 'deno') return { command: exec, args: ['run', '-A', script] }
  if (runtime === 'bun') return { command: exec, args: [script] }
  return { command: exec, args: ['--import', 'tsx', script] }
}

/** Runs a script on the current runtime; resolves with its exit code, output and wall time. */
export function runScript(
  script: string,
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number; timedOut: boolean }> {
  const { command, args } = sameRuntimeCommand(script)
  const started = performance.now()
  return new Promise((resolve, reject) => {
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
  })
}
