/**
 * How the lab's daemon is started: a cached bundle of `lab/` (one JavaScript file, built by
 * esbuild) run by plain Node, else `node --import tsx lab/daemon.ts`.
 *
 * Why: every lab start spawns a daemon, and under tsx it compiled the ~40 TypeScript files of the
 * control plane again each time: ~0.5 s of CPU, 2–3 s of wall time on the loaded 2-core CI
 * machine, where a test run starts a hundred labs or more. The bundle is built once per content
 * of `lab/` (its name is a hash of the sources) and shared by every lab of the checkout.
 *
 * @module
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { basename, join, relative } from 'node:path'
import { repoRoot } from './pg-bin.ts'

const labDir = join(repoRoot, 'lab')

/** Every `.ts` file under `lab/`, sorted: what the bundle is built from. */
function sources(dir = labDir): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...sources(path))
    else if (entry.name.endsWith('.ts')) out.push(path)
  }
  return out.sort()
}

/** The daemon bundle's path, built if missing; undefined when it cannot be built (no esbuild). */
export function daemonBundle(): string | undefined {
  return labBundle('daemon')
}

/**
 * The bundle of `lab/<entry>.ts` (the daemon, or the CLI that tests run several times per file,
 * 0.3-0.4 s of CPU each under tsx), built if missing; undefined when it cannot be built.
 */
export function labBundle(entry: 'daemon' | 'cli'): string | undefined {
  return bundleOf(join(labDir, `${entry}.ts`), entry)
}

/**
 * The bundle of a TypeScript module under `lab/` (its name a hash of every lab source, which are
 * all it can import besides packages), built if missing; undefined when it cannot be built.
 */
function bundleOf(source: string, entry: string): string | undefined {
  try {
    const hash = createHash('sha256')
    for (const file of sources()) hash.update(file).update('\0').update(readFileSync(file)).update('\0')
    const dir = join(repoRoot, '.lab', 'daemon')
    const path = join(dir, `${entry}-${hash.digest('hex').slice(0, 16)}.mjs`)
    if (existsSync(path)) return path
    mkdirSync(dir, { recursive: true })
    // Built beside, then renamed: labs starting at once never run a half-written file.
    const tmp = `${path}.${process.pid}.tmp.mjs`
    const esbuild = join(repoRoot, 'node_modules', '.bin', 'esbuild')
    const built = spawnSync(
      esbuild,
      [
        source,
        '--bundle',
        '--platform=node',
        '--format=esm',
        '--packages=external',
        `--outfile=${tmp}`,
        '--log-level=error',
      ],
      { stdio: 'ignore', timeout: 60_000 },
    )
    if (built.status !== 0 || !existsSync(tmp)) {
      rmSync(tmp, { force: true })
      return undefined
    }
    renameSync(tmp, path)
    // Bundles of earlier sources: a daemon already running has read its own.
    for (const name of readdirSync(dir)) {
      if (new RegExp(`^${entry}-[0-9a-f]+\\.mjs$`).test(name) && join(dir, name) !== path)
        rmSync(join(dir, name), { force: true })
    }
    return path
  } catch {
    return undefined
  }
}

/**
 * How Node runs the daemon: its arguments, and the proxy startup module it is to import. A startup
 * module of the lab's own written in TypeScript (lab/aws/iam-lab-startup.ts) is bundled like the
 * daemon: under tsx, the IAM labs' daemons cost ~0.5 s more CPU each. Any other TypeScript startup
 * module still needs tsx to be imported, so the loader stays for it (the lab itself still comes
 * from the bundle).
 */
export function daemonLaunch(config: { proxyStartupModule?: string }): {
  args: string[]
  proxyStartupModule?: string
} {
  const bundle = daemonBundle()
  let startup = config.proxyStartupModule
  if (startup && /\.[cm]?tsx?$/.test(startup) && !relative(labDir, startup).startsWith('..')) {
    startup = bundleOf(startup, `startup-${basename(startup).replace(/\.[cm]?tsx?$/, '')}`) ?? startup
  }
  const needsTsx = !bundle || /\.[cm]?tsx?$/.test(startup ?? '')
  return {
    args: [...(needsTsx ? ['--import', 'tsx'] : []), bundle ?? join(labDir, 'daemon.ts')],
    ...(startup ? { proxyStartupModule: startup } : {}),
  }
}
