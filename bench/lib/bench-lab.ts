/**
 * The lab every benchmark part runs on: three instances, Aurora dialect, and the ledger table.
 *
 * @module
 */
import { type Lab, type LabOptions, startLab } from '../../lab/mod.ts'
import { sharedLab } from '../../tests/helpers/shared-lab.ts'
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
 * Starts a lab with the ledger table created. Dispose it with `await using`. With `handOn`, under
 * the test suite's runner (tests/bench-smoke.test.ts: PGHA_TEST_LAB_POOL set) the lab may be one
 * another test file parked, and is parked for the next one when the part is done
 * (tests/helpers/shared-lab.ts: a lab start and stop cost ~0.75 s of CPU); not for a part that pins
 * its lab to CPUs or times its own exit. Anywhere else (`npm run bench`) it is a fresh lab.
 *
 * @example
 * ```ts
 * await using lab = await openBenchLab({ promoteAfterMs: 200 })
 * ```
 */
export async function openBenchLab(options: LabOptions, { handOn = false } = {}): Promise<Lab> {
  const lab = await (handOn ? sharedLab : startLab)({ nodes: 3, ...options })
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
