/**
 * The fast path of the execute chain. A statement in the common case (the writer, no failover
 * under way, the client ready) runs on the lane: each plugin does what its `execute` hook does
 * before and after `next()`, but synchronously, with no promise per plugin; only a failed first
 * attempt enters the hooks' own logic, through {@link ExecuteLane.resume}, exactly where `execute`
 * would have been when its `next()` rejected. Built-in plugins register a lane; a plugin with an
 * `execute` hook and no lane (a user's) makes every statement take the chain.
 *
 * @module
 */
import type { ExecuteContext, HaPlugin } from './plugin.ts'

/**
 * A plugin's `execute` hook split at its first `next()`. For every context,
 * `start` → `settled` must do what `execute` does around a `next()` that resolves, and
 * `start` → `resume` what it does from a `next()` that rejects on.
 */
export interface ExecuteLane<S = unknown> {
  /** Whether a statement starting now may skip `execute` (no side effects). */
  open(ctx: ExecuteContext): boolean
  /** What `execute` does before its first `next()`; returns what `settled` and `resume` need. */
  start(ctx: ExecuteContext): S
  /** The first attempt succeeded. */
  settled(state: S): void
  /**
   * The first attempt failed (`first` rejects with its error, after the inner plugins' own
   * `resume`): carries on as `execute` would have; `next` runs another attempt through the rest
   * of the chain.
   */
  resume<T>(ctx: ExecuteContext, state: S, first: Promise<T>, next: () => Promise<T>): Promise<T>
}

const lanes = new WeakMap<HaPlugin, ExecuteLane>()

/** Registers the lane of a built-in plugin (see the module doc); returns the plugin. */
export function withLane<S>(plugin: HaPlugin, lane: ExecuteLane<S>): HaPlugin {
  lanes.set(plugin, lane as ExecuteLane)
  return plugin
}

/**
 * The lanes of the plugins that have an `execute` hook, in order, or `undefined` when one of them
 * has none (then every statement takes the chain).
 */
export function executeLanes(plugins: readonly HaPlugin[]): readonly ExecuteLane[] | undefined {
  const out: ExecuteLane[] = []
  for (const plugin of plugins) {
    if (!plugin.execute) continue
    const lane = lanes.get(plugin)
    if (!lane) return undefined
    out.push(lane)
  }
  return out
}
