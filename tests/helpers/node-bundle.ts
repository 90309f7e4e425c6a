/**
 * TypeScript scripts a Node test spawns, run as esbuild bundles instead of through tsx: tsx's
 * loader cost ~0.5 s of CPU per spawned process (0.7 s against 0.12 s for the bench parts' module
 * graph), on a suite that is mostly CPU-bound on 2 cores. The runner does the same for the test
 * files themselves (scripts/test.mjs): packages stay external, each module keeps its own
 * `import.meta.url` (repoRoot, the bench's entry), source maps point failures at the .ts lines.
 *
 * @module
 */
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { repoRoot } from '../../lab/pg-bin.ts'

// Spelled in pieces: this file is itself bundled by the suite's runner, whose plugin rewrites the
// literal expression everywhere in it (the test then got the runner's URL instead of its own).
const META_URL = ['import', 'meta', 'url'].join('.')

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
  try {
    for (const name of readdirSync(parent)) {
      const pid = /^(\d+)(-\d+)?$/.exec(name)?.[1]
      if (pid && !existsSync(`/proc/${pid}`)) rmSync(join(parent, name), { recursive: true, force: true })
    }
  } catch {}
  // One folder per build: a test process may build several times, side by side.
  const dir = join(parent, n === 1 ? String(process.pid) : `${process.pid}-${n}`)
  const outOf = (script: string) => join(dir, relative(repoRoot, script).replace(/\.[cm]?tsx?$/, '.mjs'))
  try {
    const esbuild = await import('esbuild')
    await esbuild.build({
      entryPoints: scripts,
      outdir: dir,
      outbase: repoRoot,
      outExtension: { '.js': '.mjs' },
      bundle: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      target: `node${process.versions.node}`,
      sourcemap: 'linked',
      logLevel: 'silent',
      plugins: [
        {
          name: 'import-meta-url',
          setup(build) {
            // A script written by a test may import the sources by file URL.
            build.onResolve({ filter: /^file:\/\// }, (args) => ({ path: fileURLToPath(args.path) }))
            build.onLoad({ filter: /\.[cm]?tsx?$/ }, async (args) => {
              const source = await readFile(args.path, 'utf8')
              const url = JSON.stringify(pathToFileURL(args.path).href)
              return { contents: source.replaceAll(META_URL, url), loader: 'ts' }
            })
          },
        },
      ],
    })
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
