/**
 * The four writer faults of the failover benchmarks, how each is injected on the lab, and how the
 * lab is brought back to a full, healthy topology (writer + every reader streaming) afterwards.
 *
 * @module
 */
import type { Lab, LabEvent } from '../../lab/mod.ts'
import { nowMs } from './report.ts'

/** A fault of the writer. `kill` and `switchover` close sockets; `blackhole` and `freeze` are silent. */
export type Scenario = 'kill' | 'blackhole' | 'freeze' | 'switchover'

export const SCENARIOS: readonly Scenario[] = ['kill', 'blackhole', 'freeze', 'switchover']

/** Whether a scenario is silent (detected by host monitoring, not by a closed socket). */
export const isSilent = (s: Scenario) => s === 'blackhole' || s === 'freeze'

/** A fault as injected: the old writer and the lab's own timestamp of the fault. */
export interface Injected {
  scenario: Scenario
  oldWriter: string
  /** The lab's `fault` (or `switchover`) event time, epoch ms. */
  faultMs: number
}

/**
 * Injects `scenario` on the current writer and returns when the lab has logged it.
 *
 * @example
 * ```ts
 * const fault = await inject(lab, 'kill')
 * const ready = await lab.waitForEvent('writer-ready', { afterMs: fault.faultMs })
 * ```
 */
export async function inject(lab: Lab, scenario: Scenario): Promise<Injected> {
  const oldWriter = (await lab.status()).writer
  if (!oldWriter) throw new Error('the lab has no writer to fault')
  // The lab's clock (lab/clock.ts): waitForEvent allows for the slack between its processes.
  const before = nowMs()
  if (scenario === 'switchover') await lab.switchover()
  else await lab[scenario](oldWriter)
  const type = scenario === 'switchover' ? 'switchover' : 'fault'
  const event = await lab.waitForEvent(type, { afterMs: before, timeoutMs: 10_000 })
  return { scenario, oldWriter, faultMs: event.atMs }
}

/** The lab's `writer-ready` after the fault, or `undefined` if none came within `timeoutMs`. */
export async function writerReady(
  lab: Lab,
  fault: Injected,
  timeoutMs: number,
): Promise<LabEvent | undefined> {
  try {
    return await lab.waitForEvent('writer-ready', { afterMs: fault.faultMs, timeoutMs })
  } catch {
    return undefined
  }
}

/**
 * Brings the old writer back as a reader and waits for a writable writer with every reader
 * streaming: a fresh topology for the next trial.
 */
export async function restore(lab: Lab, fault: Injected, timeoutMs = 30_000): Promise<void> {
  const { oldWriter } = fault
  if (fault.scenario === 'switchover') {
    await lab.waitForEvent('reader-rejoined', { afterMs: fault.faultMs, node: oldWriter, timeoutMs })
  } else {
    // heal fences a replaced writer (kills it), which `start` then brings back as a reader.
    if (isSilent(fault.scenario)) await lab.heal(oldWriter)
    const node = (await lab.status()).nodes.find((n) => n.id === oldWriter)
    if (node && node.state !== 'running') await lab.start(oldWriter)
  }
  await lab.waitForWriter({ timeoutMs })
}
