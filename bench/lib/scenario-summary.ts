/**
 * Folds the trials of one scenario into the figures the JSON reports: percentiles of each time,
 * errors by class, lost and duplicated writes, and the targets, met or missed.
 *
 * @module
 */
import { addCounts } from './errors.ts'
import { isSilent, type Scenario } from './faults.ts'
import { type Summary, summarize } from './stats.ts'
import { type Target, target } from './targets.ts'
import type { TrialResult } from './trial.ts'

/** The figures of one scenario. */
export interface ScenarioSummary {
  trials: number
  promotionMs: Summary
  firstWriteMs: Summary
  driverAddedMs: Summary
  detectedMs: Summary
  writeGapMs: Summary
  /** Trials in which no write reached the new writer before the cap. */
  capped: number
  errors: Record<string, number>
  writes: number
  acknowledged: number
  lost: number
  duplicated: number
  unacknowledgedCommitted: number
}

/** Summarises the trials of one scenario. */
export function summarizeScenario(trials: readonly TrialResult[]): ScenarioSummary {
  const errors: Record<string, number> = {}
  for (const t of trials) addCounts(errors, t.errors)
  const sum = (f: (t: TrialResult) => number) => trials.reduce((a, t) => a + f(t), 0)
  return {
    trials: trials.length,
    promotionMs: summarize(trials.map((t) => t.promotionMs)),
    firstWriteMs: summarize(trials.map((t) => t.firstWriteMs)),
    driverAddedMs: summarize(trials.map((t) => t.driverAddedMs)),
    detectedMs: summarize(trials.map((t) => t.detectedMs)),
    writeGapMs: summarize(trials.map((t) => t.writeGapMs)),
    capped: trials.filter((t) => t.capped).length,
    errors,
    writes: sum((t) => t.writes),
    acknowledged: sum((t) => t.ledger.acknowledged),
    lost: sum((t) => t.ledger.lost),
    duplicated: sum((t) => t.ledger.duplicated),
    unacknowledgedCommitted: sum((t) => t.ledger.unacknowledgedCommitted),
  }
}

/**
 * The targets for postgres-ha in one scenario: driver-added downtime p50 ≤ 50 ms and
 * p99 ≤ 250 ms after a kill or a switchover; a silent writer failed over (first write on the new
 * writer) ≤ 2 s after the fault; no trial capped; 0 lost and 0 duplicated writes.
 */
export function targetsFor(scenario: Scenario, s: ScenarioSummary): Target[] {
  const timing = isSilent(scenario)
    ? [target('fault → first write on the new writer, p99 (ms)', '≤', 2000, s.firstWriteMs.p99)]
    : [
        target('driver-added downtime p50 (ms)', '≤', 50, s.driverAddedMs.p50),
        target('driver-added downtime p99 (ms)', '≤', 250, s.driverAddedMs.p99),
      ]
  return [
    ...timing,
    target('trials without a write on the new writer before the cap', '≤', 0, s.capped),
    target('lost writes', '≤', 0, s.lost),
    target('duplicated writes', '≤', 0, s.duplicated),
  ]
}
