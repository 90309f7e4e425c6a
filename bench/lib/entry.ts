/**
 * The postgres-ha the benchmarks measure is the one users run: Node and Bun import the built
 * package (`dist/mod.js`, from `npm run build`, which `npm run bench` runs first), Deno the
 * published entry (`mod.ts`, what JSR serves). `BENCH_ENTRY=source` makes Node and Bun import the
 * TypeScript sources instead (the suite's smoke test does, so that it needs no build).
 *
 * @module
 */
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type * as Published from '../../mod.ts'
import { runtimeName } from '../../src/runtime/mod.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** Which build of postgres-ha this process measures (it goes into every JSON document). */
export interface Entry {
  kind: 'dist' | 'source'
  file: string
  /** When the file was last written (for `dist`: when it was built). */
  modifiedAt: string
}

function choose(): Entry {
  const source = runtimeName() === 'deno' || process.env.BENCH_ENTRY === 'source'
  const file = source ? 'mod.ts' : 'dist/mod.js'
  const path = join(root, file)
  if (!existsSync(path))
    throw new Error(`${file} is missing: run \`npm run build\` first (or set BENCH_ENTRY=source)`)
  return { kind: source ? 'source' : 'dist', file, modifiedAt: statSync(path).mtime.toISOString() }
}

/** The entry this process imported. */
export const entry: Entry = choose()

// The sources by a literal specifier, so that a bundler includes them (the suite runs the parts
// as esbuild bundles on Node, where a computed path to a .ts file would need tsx's loader).
const mod = (
  entry.kind === 'source'
    ? await import('../../mod.ts')
    : await import(pathToFileURL(join(root, entry.file)).href)
) as typeof Published

/** `postgresHa` from {@link entry}. */
export const postgresHa: typeof Published.postgresHa = mod.postgresHa
