/**
 * A process-level hook that records every unhandled rejection and uncaught exception while a test
 * file runs: postgres-ha must never leave one (with Node's defaults either ends the process).
 */
import process from 'node:process'

/** What the hook saw so far; `stop()` removes it. */
export interface CrashWatch {
  readonly seen: unknown[]
  stop(): void
}

/** Starts recording; call `stop()` in `after`, then assert `seen` is empty. */
export function watchCrashes(): CrashWatch {
  const seen: unknown[] = []
  const record = (error: unknown) => {
    seen.push(error)
  }
  process.on('unhandledRejection', record)
  process.on('uncaughtException', record)
  return {
    seen,
    stop() {
      process.off('unhandledRejection', record)
      process.off('uncaughtException', record)
    },
  }
}

/** A readable summary of what a watch saw, for assertion messages. */
export function describeCrashes(seen: readonly unknown[]): string {
  return seen
    .map(
      (e) => `${(e as Error)?.name}: ${(e as { code?: string })?.code ?? ''} ${(e as Error)?.message ?? e}`,
    )
    .join('; ')
}
