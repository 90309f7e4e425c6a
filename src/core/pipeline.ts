/**
 * Composes the plugins' `connect` and `execute` hooks into two chains, built once per client so
 * the per-statement cost is one closure call per plugin that has the hook.
 *
 * @module
 */
import type { ConnectContext, ExecuteContext, HaPlugin } from './plugin.ts'

/** Runs a connect through every plugin's `connect` hook, then `open`. */
export type ConnectChain = (ctx: ConnectContext, open: () => Promise<void>) => Promise<void>
/**
 * Runs an execution through the `execute` hooks from the `from`-th on (default: all of them),
 * then `run`.
 */
export type ExecuteChain = <T>(ctx: ExecuteContext, run: () => Promise<T>, from?: number) => Promise<T>

/**
 * Builds the connect chain: the first plugin is the outermost.
 *
 * @example
 * ```ts
 * const connect = connectChain(plugins)
 * await connect(ctx, () => driver.open(ctx))
 * ```
 */
export function connectChain(plugins: readonly HaPlugin[]): ConnectChain {
  const hooks = plugins.filter((p) => p.connect)
  return (ctx, open) => {
    const step = (i: number): Promise<void> =>
      i < hooks.length ? hooks[i]!.connect!(ctx, () => step(i + 1)) : open()
    return step(0)
  }
}

/** Builds the execute chain: the first plugin is the outermost. */
export function executeChain(plugins: readonly HaPlugin[]): ExecuteChain {
  const hooks = plugins.filter((p) => p.execute)
  if (hooks.length === 0) return (_ctx, run) => run()
  return <T>(ctx: ExecuteContext, run: () => Promise<T>, from = 0) => {
    const step = (i: number): Promise<T> =>
      i < hooks.length ? hooks[i]!.execute!(ctx, () => step(i + 1)) : run()
    return step(from)
  }
}
