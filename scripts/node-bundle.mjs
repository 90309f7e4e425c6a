// One esbuild set-up for running TypeScript on Node without tsx, shared by the test runner (the
// test files) and tests/helpers/node-bundle.ts (the scripts a test spawns): tsx's loader costs
// 0.3-0.8 s of CPU per process on a suite that is mostly CPU-bound. Packages stay external
// (node_modules as usual), each module keeps its own `import.meta.url` (repoRoot, the bench's
// entry), and source maps point failures at the .ts lines. Plain JavaScript, so that the runner
// can import it without a loader (and the plugin below, which rewrites .ts files, leaves this
// file's own text alone when a test that imports it is bundled).
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/** Each TypeScript module's `import.meta.url` stays its own file's, not the bundle's. */
const keepImportMetaUrl = {
  name: 'import-meta-url',
  setup(build) {
    // A script written by a test may import the sources by file URL.
    build.onResolve({ filter: /^file:\/\// }, (args) => ({ path: fileURLToPath(args.path) }))
    build.onLoad({ filter: /\.[cm]?tsx?$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8')
      const url = JSON.stringify(pathToFileURL(args.path).href)
      return { contents: source.replaceAll('import.meta.url', url), loader: 'ts' }
    })
  },
}

/** Builds one `.mjs` bundle per entry point under `outdir`, mirroring the paths under `outbase`. */
export async function bundleForNode({ entryPoints, outdir, outbase }) {
  const esbuild = await import('esbuild')
  await esbuild.build({
    entryPoints,
    outdir,
    outbase,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    target: `node${process.versions.node}`,
    sourcemap: 'linked',
    plugins: [keepImportMetaUrl],
    logLevel: 'silent',
  })
}

/** Removes the folders under `parent` named `<pid>` or `<pid>-<n>` whose process is gone (killed before its clean-up). */
export function removeDeadProcessFolders(parent) {
  try {
    for (const name of readdirSync(parent)) {
      const pid = /^(\d+)(-\d+)?$/.exec(name)?.[1]
      if (pid && !existsSync(`/proc/${pid}`)) rmSync(join(parent, name), { recursive: true, force: true })
    }
  } catch {}
}
