/**
 * The lab every benchmark part runs on: three instances, Aurora dialect, and the ledger table.
 *
 * @module
 */
import { type Lab, type LabOptions, startLab } from '../../lab/mod.ts'
import { createLedger } from './ledger.ts'

/** The lab settings a result was measured with (they go into the JSON). */
export interface LabSettings {
  nodes: number
  promoteAfterMs: number
  endpointLagMs: number
  probeTimeoutMs: number
  pgVersion: string
}

/**
 * Starts a lab with the ledger table created. Dispose it with `await using`.
 *
 * @example
 * ```ts
 * await using lab = await openBenchLab({ promoteAfterMs: 200 })
 * ```
 */
export async function openBenchLab(options: LabOptions): Promise<Lab> {
  const lab = await startLab({ nodes: 3, ...options })
  try {
    await createLedger(lab.url('cluster'))
    return lab
  } catch (error) {
    await lab.down()
    throw error
  }
}

/** The settings of a running lab, for the JSON. */
export async function labSettings(lab: Lab): Promise<LabSettings> {
  const status = await lab.status()
  const { nodes, promoteAfterMs, endpointLagMs, probeTimeoutMs } = status.options
  return { nodes, promoteAfterMs, endpointLagMs, probeTimeoutMs, pgVersion: status.pgVersion }
}
