/**
 * What the daemon asks of a control plane, whichever manages the cluster: the lab's own
 * (`control.ts`, Aurora-like) or Patroni (`patroni/control.ts`).
 *
 * @module
 */
import type { EventLog } from './events.ts'
import type { LabNode, LabStatus } from './types.ts'

export interface ControlPlane {
  readonly events: EventLog
  upMs: number
  up(): Promise<void>
  /** Runs `fn` after every operation queued before it (operations never interleave). */
  exclusive<T>(fn: () => Promise<T>): Promise<T>
  status(): LabStatus
  processes(): { id: string; pgPort: number; dataDir: string }[]
  waitForWriter(timeoutMs?: number): Promise<LabNode>
  kill(target: string): Promise<void>
  freeze(target: string): Promise<void>
  stop(target: string): Promise<void>
  start(id: string): Promise<void>
  switchover(id?: string): Promise<void>
  blackhole(target: string): Promise<void>
  latency(target: string, ms: number): Promise<void>
  heal(target?: string): Promise<void>
  /** Adds a streaming reader with the next free id (a base backup of the writer); its node. */
  addReader(): Promise<LabNode>
  /** Removes a reader or down instance: out of the topology, its endpoint closed, its data gone. */
  remove(id: string): Promise<void>
  down(removeDir: boolean): Promise<void>
  /** Readies the lab for its next user; false when it must go down instead (lab/pool.ts). */
  park?(): Promise<boolean>
  /** A parked lab taken by its next user, with its timings. */
  adopt?(timing?: LabTiming): Promise<void>
}

/** The options a lab reads at each use, so a parked lab takes its next user's (lab/pool.ts). */
export interface LabTiming {
  promoteAfterMs?: number
  endpointLagMs?: number
  probeTimeoutMs?: number
}
