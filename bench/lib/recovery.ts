/**
 * When did a client write again after a writer fault? Only a write that the server itself says it
 * committed on another instance counts: each write asks the server which instance it is in the
 * same statement (`returning inst`), because a write acknowledged just after the fault may have
 * been in flight on the old writer — counting it would report a downtime of a few milliseconds
 * for a client that is in fact still cut off.
 *
 * @module
 */

/** An acknowledged (or failed, or pending) write as a loop recorded it. */
export interface AckRecord {
  /** Epoch ms of the acknowledgement; undefined while pending. */
  endMs?: number
  /** The instance that committed it, as the server answered in the same statement; undefined if unknown. */
  inst?: string
}

/** The fault a recovery is measured from. */
export interface FaultMark {
  /** The writer before the fault: its acknowledgements never count as recovery. */
  oldWriter: string
  /** Epoch ms of the fault. */
  faultMs: number
  /** The new writer, when known: then only its acknowledgements count. */
  newWriter?: string
}

/**
 * Whether `r` proves the client writes again: acknowledged after the fault by an instance that
 * is not the old writer (and is the new writer, when `fault.newWriter` is given).
 *
 * @example
 * ```ts
 * isRecoveryWrite({ endMs: fault.faultMs + 2, inst: fault.oldWriter }, fault) // false: in flight at the kill
 * ```
 */
export function isRecoveryWrite(r: AckRecord, fault: FaultMark): boolean {
  if (r.endMs === undefined || r.inst === undefined || r.endMs < fault.faultMs) return false
  if (r.inst === fault.oldWriter) return false
  return fault.newWriter === undefined || r.inst === fault.newWriter
}

/**
 * The earliest acknowledgement that {@link isRecoveryWrite}, or `undefined`.
 *
 * @example
 * ```ts
 * const first = firstRecoveryWrite(loop.records, { oldWriter: 'writer-1', faultMs })
 * const downtimeMs = first && first.endMs! - faultMs
 * ```
 */
export function firstRecoveryWrite<T extends AckRecord>(
  records: readonly T[],
  fault: FaultMark,
): T | undefined {
  let first: T | undefined
  for (const r of records)
    if (isRecoveryWrite(r, fault) && (first === undefined || r.endMs! < first.endMs!)) first = r
  return first
}
