/**
 * One topology monitor per cluster per process, whatever the number of clients.
 *
 * @module
 */
import { TopologyMonitor, type TopologyMonitorConfig, type TopologySubscriber } from './topology-monitor.ts'

const monitors = new Map<string, TopologyMonitor>()

/** A client's hold on its cluster's shared monitor. */
export interface MonitorLease {
  readonly monitor: TopologyMonitor
  /** Lets go of the monitor; the last lease stops it. Safe to call twice. */
  release(): void
}

/**
 * Gets the monitor of `config.clusterId`, creating it for the first client.
 *
 * @example
 * ```ts
 * const lease = acquireMonitor(config, subscriber)
 * await lease.monitor.refresh()
 * lease.release()
 * ```
 */
export function acquireMonitor(config: TopologyMonitorConfig, subscriber: TopologySubscriber): MonitorLease {
  let monitor = monitors.get(config.clusterId)
  if (!monitor) {
    monitor = new TopologyMonitor(config)
    monitors.set(config.clusterId, monitor)
  }
  const held = monitor
  held.subscribe(subscriber)
  let released = false
  return {
    monitor: held,
    release() {
      if (released) return
      released = true
      if (held.unsubscribe(subscriber) && monitors.get(config.clusterId) === held)
        monitors.delete(config.clusterId)
    },
  }
}

/** How many monitors run in this process (for tests and the idle benchmark). */
export function activeMonitorCount(): number {
  return monitors.size
}

/** The monitor of a cluster, if one runs. */
export function monitorOf(clusterId: string): TopologyMonitor | undefined {
  return monitors.get(clusterId)
}
