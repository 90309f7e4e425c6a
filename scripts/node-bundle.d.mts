/** Builds one `.mjs` bundle per entry point under `outdir`, mirroring the paths under `outbase`. */
export function bundleForNode(options: {
  entryPoints: string[]
  outdir: string
  outbase: string
}): Promise<void>
/** Removes the folders under `parent` named `<pid>` or `<pid>-<n>` whose process is gone. */
export function removeDeadProcessFolders(parent: string): void
