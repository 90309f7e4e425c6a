/**
 * The `failover` plugin: when the connection to the writer is lost, find the new writer from the
 * topology already known (never waiting for DNS) and tell the caller what happened, with the AWS
 * drivers' contract: `FailoverSuccessError` (re-run), `TransactionResolutionUnknownError` (a
 * transaction's fate is unknown) or `FailoverFailedError` (no writer in time). Work that provably
 * never reached a server, and work queued during the failover, runs on the new writer unnoticed.
 *
 * @module
 */
import type { DbConnection, ErrorKind } from '../../core/connection-factory.ts'
import { readRole } from '../../core/dialect.ts'
import {
  FailoverFailedError,
  FailoverSuccessError,
  TransactionResolutionUnknownError,
} from '../../core/errors.ts'
import { withLane } from '../../core/execute-lane.ts'
import { type HostAddress, hostKey, sameHost } from '../../core/host.ts'
import { readOptions } from '../../core/option-spec.ts'
import type { ExecuteContext, HaPlugin, PluginServices } from '../../core/plugin.ts'
import { failoverOptionSpecs, type ResolvedFailoverOptions } from './options.ts'
import { pickOtherReader, type ReaderLosses, readerLosses } from './reader-switch.ts'
import { searchWriter } from './writer-search.ts'

/** Why a failover started. */
type Trigger = 'connection-lost' | 'connect-failed' | 'read-only'

function triggerOf(kind: ErrorKind, ctx: ExecuteContext): Trigger | undefined {
  if (kind === 'connection-lost' || kind === 'connect-failed') return kind
  // A write refused as read-only on a connection meant for the writer: the writer was demoted.
  if (kind === 'read-only' && ctx.targetRole === 'writer') return kind
  return undefined
}

const describe = (h: HostAddress | undefined) => (h ? hostKey(h) : undefined)

/** What {@link failoverPlugin}'s recovery returns when the attempt is to run again. */
const RETRY: unique symbol = Symbol('retry')

/** `next()`, with a synchronous throw as a rejection (as an `await` would have it). */
function callNext<T>(next: () => Promise<T>): Promise<T> {
  try {
    return next()
  } catch (error) {
    return Promise.reject(error)
  }
}

/**
 * Creates the failover plugin (it is enabled by default; this is for custom plugin lists).
 *
 * @example
 * ```ts
 * const sql = postgresHa(url, { plugins: [failoverPlugin(), 'hostMonitoring'] })
 * ```
 */
export function failoverPlugin(): HaPlugin {
  let services: PluginServices
  let options: ResolvedFailoverOptions
  let running: Promise<HostAddress> | undefined
  let generation = 0
  /**
   * One question per host at a time ("is it still the writer?"), however many statements lost
   * their connection to it or were refused a write by it.
   */
  const asking = new Map<string, Promise<boolean>>()
  let losses: ReaderLosses
  const alive = (host: HostAddress | undefined): Promise<boolean> => {
    if (!host) return Promise.resolve(false)
    const key = hostKey(host)
    let answer = asking.get(key)
    if (!answer) {
      answer = stillWritable(services, host).finally(() => asking.delete(key))
      asking.set(key, answer)
    }
    return answer
  }

  const runFailover = async (failed: HostAddress | undefined, trigger: Trigger): Promise<HostAddress> => {
    const { runtime: clock, events, logger } = services
    const started = clock.now()
    const atMs = clock.wallNow()
    events.emit('failoverStart', { from: failed, reason: trigger, atMs })
    logger.warn('failover started', { from: describe(failed), reason: trigger })
    // Unreachable now is down now; a lost connection may be one terminated backend on a healthy
    // writer, so that host is judged by the search instead.
    if (failed && trigger === 'connect-failed') services.markHostDown(failed, trigger)
    services.requestFastPolling('failover')
    const timeoutMs = options.failoverTimeoutMs
    let onlyReader: HostAddress | undefined
    // The hand-over: each host the search reaches gets one user connection while its role is
    // being probed, so the first statement on the new writer finds it open and authenticated, and
    // as many logins made ahead as the lost writer had connections open at once: the statements
    // after the first open the rest of the pool themselves, as postgres.js always does, and each
    // of those connections takes a login instead of waiting for its own (on a busy machine the
    // pool's rate stayed at what its one open connection carried for 60-100 ms). Not a whole pool
    // of open connections: postgres.js hands its queued statements to the first connection that
    // comes free once all of a pool's connections are open, so a burst of new parameterised
    // statements (each new to a fresh connection: a describe round trip first) landed in one
    // connection's pipeline and ran one after another (tests/failover-load, 100 concurrent
    // statements: 30 of 48 on one connection, 4.9 s instead of 2.0 s). Logins on the hosts that
    // were not promoted close when the search ends. With failoverLoginsAhead: false the lost
    // writer is not named, so no logins are made ahead: each of them holds a session on a reader
    // for the whole search, which a reader with a tight max_connections (or pgbouncer) cannot give.
    const like = options.failoverLoginsAhead ? failed : undefined
    const warmed: { host: HostAddress; release: (kept?: boolean) => void }[] = []
    const found = await searchWriter({
      factory: services.factory,
      runtime: services.runtime,
      candidates: () => candidateHosts(services, failed),
      reportedWriter: () => services.topology()?.writer,
      preferred: () => services.topology()?.hosts.filter((h) => h.synchronous) ?? [],
      ...(undiscoverable(services, failed) ? { onlyHostIsReader: (h: HostAddress) => (onlyReader = h) } : {}),
      onReachable: (host) => {
        if (!sameHost(host, failed)) warmed.push({ host, release: services.warmHost(host, like) })
      },
      failed,
      probeIntervalMs: options.failoverProbeIntervalMs,
      probeTimeoutMs: services.options.probeTimeoutMs,
      deadline: started + timeoutMs,
      signal: services.endSignal,
    })
    const tookMs = clock.now() - started
    for (const w of warmed) w.release(found !== undefined && sameHost(w.host, found))
    if (!found) {
      const error = onlyReader
        ? onlyReaderError(onlyReader, tookMs)
        : new FailoverFailedError(
            `No writable host found within failoverTimeoutMs (${timeoutMs} ms) after losing ${describe(failed) ?? 'the writer'}.`,
            tookMs,
          )
      events.emit('failover', { from: failed, to: undefined, ok: false, tookMs, reason: trigger, error })
      logger.error('failover failed', { from: describe(failed), tookMs })
      throw error
    }
    services.setWriter(found)
    if (failed && !sameHost(found, failed)) {
      if (trigger !== 'read-only')
        services.markHostDown(failed, `lost (${trigger}); the writer is now ${hostKey(found)}`)
      services.abortHost(failed, 'the writer moved')
      void services.refreshTopology().catch(() => {})
    }
    events.emit('failover', { from: failed, to: found, ok: true, tookMs, reason: trigger })
    logger.info('failover done', { from: describe(failed), to: describe(found), tookMs: Math.round(tookMs) })
    return found
  }

  /** Joins the failover under way, or starts one; a failure older than the last failover starts none. */
  const failoverFor = (failed: HostAddress | undefined, seenGeneration: number, trigger: Trigger) => {
    if (running) return running
    const writer = services.currentWriter()
    if (seenGeneration !== generation && writer && !sameHost(writer, failed)) return Promise.resolve(writer)
    // Callers wait on this; the probe connections alone would not keep the process alive.
    running = services.runtime.holdOpenUntil(runFailover(failed, trigger)).finally(() => {
      running = undefined
      generation++
    })
    return running
  }

  const readerFailover = async <T>(
    ctx: ExecuteContext,
    next: () => Promise<T>,
    error: unknown,
  ): Promise<T> => {
    for (;;) {
      const failed = ctx.host
      // A read that fell back to the writer says nothing the writer's own statements won't: marking
      // the writer down here would let reader trouble disturb writes.
      const onWriter = !failed || sameHost(failed, services.currentWriter())
      if (!onWriter) losses.lost(failed, 'connection lost')
      if (ctx.sent || ctx.delivered) {
        const replacement = pickOtherReader(services, failed)
        throw ctx.inTransaction
          ? new TransactionResolutionUnknownError(describe(failed), describe(replacement), { cause: error })
          : new FailoverSuccessError(describe(failed), describe(replacement) ?? 'another host', {
              cause: error,
            })
      }
      // Never sent: it runs elsewhere. Each try marks its reader down, so this ends after every
      // reader was tried; on the writer it is the writer's own error, as without postgres-ha.
      if (onWriter ? ctx.attempt >= 2 : ctx.attempt >= 16) throw error
      ctx.attempt++
      if (losses.verifying) await losses.verifying
      try {
        return await next()
      } catch (next_error) {
        if (!triggerOf(services.classify(next_error), ctx)) throw next_error
        error = next_error
      }
    }
  }

  /**
   * Runs `next` until it succeeds or {@link recover} gives up. No async frame: a statement that
   * succeeds costs one `then` here.
   */
  const attempts = <T>(ctx: ExecuteContext, next: () => Promise<T>): Promise<T> => {
    const seen = generation
    return callNext(next).then(undefined, (error) =>
      recover(ctx, next, error, seen).then((r) => (r === RETRY ? attempts(ctx, next) : (r as T))),
    )
  }

  /**
   * What a failed attempt (`seen`: the failover generation when it started) leads to: `RETRY` (run
   * it again, on the new writer or the same healthy one), a result (a reader's retry), or the
   * error the caller gets.
   */
  const recover = async <T>(
    ctx: ExecuteContext,
    next: () => Promise<T>,
    error: unknown,
    seen: number,
  ): Promise<T | typeof RETRY> => {
    const kind = services.classify(error)
    const trigger = triggerOf(kind, ctx)
    // Before the first success there is no cluster to fail over in: report the real error.
    // Once sql.end() started, lost connections are its doing (end({ timeout }) destroys them).
    if (!trigger || !services.hasConnected() || services.endSignal.aborted) throw error
    if (ctx.targetRole !== 'writer') return readerFailover(ctx, next, error)
    const failed = ctx.host
    // A read-only transaction (`begin('read only')`, SET TRANSACTION READ ONLY) refuses writes
    // on a healthy writer too: only a host that is no longer writable was demoted.
    if (trigger === 'read-only' && (await alive(failed))) throw error
    // The one host there is refused a write as a standby: no search can find another.
    if (trigger === 'read-only' && failed && undiscoverable(services, failed))
      throw onlyReaderError(failed, 0, error)
    // One connection closed on a writer that still answers as the writer (pg_terminate_backend,
    // idle_session_timeout, a proxy's idle cut): nothing to fail over. What provably never
    // reached it runs again there; a transaction's loss is TransactionResolutionUnknownError
    // as after a failover (the statement-fate contract: every later statement of it rejects
    // the same way); anything else rejects as it would without postgres-ha.
    if (
      trigger === 'connection-lost' &&
      !running &&
      seen === generation &&
      worthAsking(services, error, failed) &&
      (await alive(failed))
    ) {
      const retryable = ctx.kind !== 'reserved' || !ctx.inTransaction
      if (!ctx.sent && !ctx.delivered && retryable && ctx.attempt < 10) {
        ctx.attempt++
        return RETRY
      }
      if (ctx.inTransaction)
        throw new TransactionResolutionUnknownError(describe(failed), undefined, { cause: error })
      throw error
    }
    const neverSent = !ctx.sent && !ctx.delivered
    let to: HostAddress
    try {
      to = await failoverFor(failed, seen, trigger)
    } catch (failure) {
      throw fateOf(failure, ctx, failed, trigger, error)
    }
    if (trigger === 'read-only' && sameHost(to, failed)) throw error
    // A reserved connection outside a transaction has no session left to lose once its
    // connection failed; inside one, the transaction died with it.
    const retryable = ctx.kind !== 'reserved' || !ctx.inTransaction
    if (neverSent && retryable && ctx.attempt < 10) {
      ctx.attempt++
      return RETRY
    }
    if (ctx.inTransaction && trigger !== 'read-only')
      throw new TransactionResolutionUnknownError(describe(failed), describe(to), { cause: error })
    throw new FailoverSuccessError(describe(failed), describe(to)!, { cause: error })
  }

  const plugin: HaPlugin = {
    name: 'failover',
    init(s) {
      services = s
      losses = readerLosses(s)
      options = readOptions<ResolvedFailoverOptions>(failoverOptionSpecs, [s.options])
    },
    execute<T>(ctx: ExecuteContext, next: () => Promise<T>): Promise<T> {
      // Work that arrives during a failover waits for it and then goes to the new writer.
      if (running && ctx.targetRole === 'writer' && ctx.kind !== 'reserved')
        return running.then(() => attempts(ctx, next))
      // Reads issued after a reader was lost wait until the other readers in use are verified.
      if (ctx.targetRole !== 'writer' && losses.verifying)
        return losses.verifying.then(() => attempts(ctx, next))
      return attempts(ctx, next)
    },
  }
  // The lane: what `execute` does, for a statement that skips the chain (core/execute-lane.ts).
  return withLane<number>(plugin, {
    open: (ctx) =>
      !(running && ctx.targetRole === 'writer' && ctx.kind !== 'reserved') &&
      !(ctx.targetRole !== 'writer' && losses.verifying),
    start: () => generation,
    settled: () => {},
    resume: (ctx, seen, first, next) =>
      first.then(undefined, (error) =>
        recover(ctx, next, error, seen).then((r) => (r === RETRY ? attempts(ctx, next) : r)),
      ),
  })
}

/**
 * What a statement whose failover found no writer rejects with: `FailoverFailedError` as it is
 * only when the work provably never reached a server (or was refused as read-only); a sent
 * statement's error says it may have run; a transaction's fate is unknown, the failure its cause.
 */
function fateOf(
  failure: unknown,
  ctx: ExecuteContext,
  failed: HostAddress | undefined,
  trigger: Trigger,
  lost: unknown,
): unknown {
  if (!(failure instanceof FailoverFailedError) || trigger === 'read-only') return failure
  // A reserved connection's open transaction died with its connection, sent or not.
  const lostTransaction = ctx.inTransaction && (ctx.sent || ctx.delivered || ctx.kind === 'reserved')
  if (lostTransaction)
    return new TransactionResolutionUnknownError(describe(failed), undefined, { cause: failure })
  if (!ctx.sent && !ctx.delivered) return failure
  return new FailoverFailedError(
    `${failure.message} The statement was sent to ${describe(failed) ?? 'the database'} before the connection ` +
      'was lost: it may have run there.',
    failure.elapsedMs,
    { cause: lost, mayHaveRun: true },
  )
}

/** One host and a dialect that cannot tell of others (`pg`): no other host to fail over to. */
function undiscoverable(services: PluginServices, failed: HostAddress | undefined): boolean {
  return services.dialect() === 'pg' && candidateHosts(services, failed).length === 1
}

function onlyReaderError(host: HostAddress, tookMs: number, cause?: unknown): FailoverFailedError {
  return new FailoverFailedError(
    `${hostKey(host)} is a read-only standby and is the only host this client knows (dialect pg, one ` +
      'host): there is no writer to fail over to. List every host of the cluster in the connection ' +
      "string, or on Patroni use dialect: 'patroni' so the client learns the other members.",
    tookMs,
    cause === undefined ? undefined : { cause },
  )
}

/**
 * Whether a lost connection should first ask its host whether it is still the writer. Not when
 * postgres-ha itself dropped it (host monitoring or the tracker already judged the host), when
 * the host is marked down, or when the connection went silent (a timeout): asking a silent host
 * would only add its probe timeout to the failover. A host that closed the connection answers a
 * probe (or refuses it) at once.
 */
function worthAsking(services: PluginServices, error: unknown, failed: HostAddress | undefined): boolean {
  if (!failed || services.isHostDown(failed)) return false
  const code = (error as { code?: unknown } | null)?.code
  return code !== 'CONNECTION_DROPPED' && code !== 'QUERY_TIMEOUT' && code !== 'ETIMEDOUT'
}

/** Whether `host` answers as a writable primary, asked on a connection of its own. */
async function stillWritable(services: PluginServices, host: HostAddress | undefined): Promise<boolean> {
  if (!host) return false
  const timeoutMs = services.options.probeTimeoutMs
  let conn: DbConnection | undefined
  try {
    conn = await services.factory.connect({ host, purpose: 'probe', timeoutMs })
    return (await readRole(conn, { timeoutMs })) === 'writer'
  } catch {
    return false
  } finally {
    conn?.abort()
  }
}

/** Every host worth probing for the writer: the topology's, then the user's when there is no topology. */
function candidateHosts(services: PluginServices, failed: HostAddress | undefined): HostAddress[] {
  const topology = services.topology()
  const seen = new Set<string>()
  const out: HostAddress[] = []
  for (const h of topology?.hosts ?? []) {
    const key = hostKey(h)
    if (!seen.has(key)) {
      seen.add(key)
      out.push({ host: h.host, port: h.port })
    }
  }
  const writer = services.currentWriter()
  if (writer && !seen.has(hostKey(writer))) out.push(writer)
  if (failed && !seen.has(hostKey(failed))) out.push(failed)
  return out
}
