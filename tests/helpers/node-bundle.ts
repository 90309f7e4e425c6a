/**
 * TypeScript scripts a Node test spawns, run as esbuild bundles instead of through tsx: tsx's
 * loader cost ~0.5 s of CPU per spawned process (0.7 s against 0.12 s for the bench parts' module
 * graph), on a suite that is mostly CPU-bound on 2 cores. The runner does the same for the test
 * files themselves; both build with scripts/node-bundle.mjs.
 *
 * @module
 */
import { rmSync } from 'node:fs'
import { join, relative } from 'node:path'
import { repoRoot } from '../../lab/pg-bin.ts'
import { bundleForNode, removeDeadProcessFolders } from '../../scripts/node-bundle.mjs'

let builds = 0

/** Bundles of one build: the folder (removed by `remove`) and each script's command. */
export interface NodeBundles {
  dir: string
  /** `node` arguments that run `script` (an absolute path given to {@link bundleScripts}). */
  args(script: string): string[]
  remove(): void
}

/**
 * Builds one bundle per script, all at once; `undefined` when esbuild cannot (the caller then runs
 * them through tsx as before).
 *
 * @example
 * ```ts
 * const bundles = await bundleScripts([join(repoRoot, 'bench', 'idle.ts')])
 * spawn(process.execPath, bundles!.args(join(repoRoot, 'bench', 'idle.ts')))
 * ```
 */
export async function bundleScripts(scripts: string[]): Promise<NodeBundles | undefined> {
  // Outputs mirror the paths under the repository: a script elsewhere runs through tsx.
  if (scripts.some((script) => relative(repoRoot, script).startsWith('..'))) return undefined
  const n = ++builds
  const parent = join(repoRoot, '.tmp', 'node-scripts')
  // Bundles of test processes killed before their clean-up.
  removeDeadProcessFolders(parent)
  // One folder per build: a test process may build several times, side by side.
  const dir = join(parent, n === 1 ? String(process.pid) : `${process.pid}-${n}`)
  const outOf = (script: string) => join(dir, relative(repoRoot, script).replace(/\.[cm]?tsx?$/, '.mjs'))
  try {
    await bundleForNode({ entryPoints: scripts, outdir: dir, outbase: repoRoot })
  } catch {
    rmSync(dir, { recursive: true, force: true })
    return undefined
  }
  return {
    dir,
    args: (script) => ['--enable-source-maps', outOf(script)],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}
