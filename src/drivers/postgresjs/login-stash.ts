/**
 * Logins made ahead for a pool's next connections (the failover hand-over). After a writer is
 * lost, the statements that wait for the new writer open its pool all at once, and each of its
 * connections would first wait for its login (a backend started, SCRAM on both sides, on a
 * machine busy with the promotion): the pool's rate stays at what its one warm connection
 * carries until the others are in. Logging them in while the writer is being searched for, and
 * handing each to postgres.js as its `socket` asks for a new connection, keeps postgres.js's own
 * pool behaviour untouched — it opens connections when and as it always does, each with its
 * first statement, and shares its queue among those still connecting — only the login is done.
 * (Opening the connections themselves ahead would not: with every connection of a pool open,
 * postgres.js hands the queued statements to the first one that comes free.)
 *
 * A parked login is read while it waits: what the server sends meanwhile (a ParameterStatus
 * after a promotion) is handed on after the login's own answer, and one the server ended (a
 * FATAL, a close) is never handed out.
 *
 * @module
 */
import { startTimer, stopTimer, type TimerHandle } from '../../runtime/mod.ts'
import type { LoggedIn } from './login.ts'

/** The logins of one pool instance made ahead (see the module). */
export interface LoginStash {
  /** Parks a login under way (one that fails is forgotten; one that arrives after `expire` is closed). */
  add(login: Promise<LoggedIn>): void
  /**
   * A login for a connection postgres.js opens now: a parked one still usable, or `undefined`
   * (log in as usual). One still under way is not waited for: it may be stuck on a host that is
   * being restarted, where a login of its own would not be.
   */
  take(): LoggedIn | undefined
  /** Closes the logins not taken after `ms`, or at once for 0 (those under way, as they arrive). */
  expire(ms: number): void
  /**
   * Resolves once no login of the stash is under way: a pool's end waits for it, so that no
   * session opens after the caller was told the client ended.
   */
  settled(): Promise<void>
  /** Logins parked or under way (each holds at most one socket). */
  readonly size: number
}

interface Entry {
  parked?: Parked
}

interface Parked {
  loggedIn: LoggedIn
  /** What the server sent after the login's answer. */
  after: Buffer[]
  ended: boolean
  detach(): void
}

/**
 * Creates an empty stash.
 *
 * @example
 * ```ts
 * const stash = createLoginStash()
 * stash.add(loginOnNewWriter())
 * const next = stash.take() // a login, or undefined: log in as usual
 * ```
 */
export function createLoginStash(): LoginStash {
  const entries: Entry[] = []
  const underWay = new Set<Promise<unknown>>()
  let timer: TimerHandle | undefined
  // A login under way when its entry left the stash is closed as it arrives (see `add`).
  const clear = () => {
    stopTimer(timer)
    for (const entry of entries.splice(0)) if (entry.parked) close(entry.parked)
  }
  return {
    add(login) {
      // A new failover's logins: an earlier one's expiry does not apply to them.
      stopTimer(timer)
      const entry: Entry = {}
      entries.push(entry)
      const settled = login.then(
        (loggedIn) => {
          entry.parked = park(loggedIn)
          if (!entries.includes(entry)) close(entry.parked)
        },
        () => {
          const i = entries.indexOf(entry)
          if (i >= 0) entries.splice(i, 1)
        },
      )
      underWay.add(settled)
      void settled.then(() => underWay.delete(settled))
    },
    take() {
      for (let i = entries.findIndex((e) => e.parked); i >= 0; i = entries.findIndex((e) => e.parked)) {
        const [entry] = entries.splice(i, 1)
        const usable = unpark(entry!.parked!)
        if (usable) return usable
      }
      return undefined
    },
    expire(ms) {
      stopTimer(timer)
      if (ms <= 0) clear()
      else timer = startTimer(clear, ms)
    },
    async settled() {
      while (underWay.size) await Promise.all(underWay)
    },
    get size() {
      return entries.length
    },
  }
}

/** Ends a session that was never handed on, as postgres.js ends one: a Terminate, then the close. */
function close(parked: Parked): void {
  parked.detach()
  const { socket } = parked.loggedIn
  if (parked.ended || socket.destroyed) socket.destroy()
  else socket.end(TERMINATE)
}

const TERMINATE = Buffer.from([88, 0, 0, 0, 4])

/** Keeps reading a logged-in socket while it waits, so that a close or an error is seen. */
function park(loggedIn: LoggedIn): Parked {
  const { socket } = loggedIn
  const parked: Parked = {
    loggedIn,
    after: [],
    ended: false,
    detach() {
      socket.removeListener('data', onData)
      socket.removeListener('end', onEnd)
      socket.removeListener('close', onEnd)
      socket.pause()
    },
  }
  const onData = (chunk: Buffer) => void parked.after.push(chunk)
  const onEnd = () => {
    parked.ended = true
  }
  socket.on('data', onData)
  socket.on('end', onEnd)
  socket.on('close', onEnd)
  socket.resume()
  return parked
}

/** The parked login to hand on, or undefined (closed) when its session ended while it waited. */
function unpark(parked: Parked): LoggedIn | undefined {
  parked.detach()
  const { socket, replay } = parked.loggedIn
  const after = Buffer.concat(parked.after)
  if (parked.ended || socket.destroyed || hasError(after)) {
    socket.destroy()
    return undefined
  }
  return after.length ? { socket, replay: Buffer.concat([replay, after]) } : parked.loggedIn
}

/** Whether `bytes` (whole backend messages, maybe a partial last one) hold an ErrorResponse. */
function hasError(bytes: Buffer): boolean {
  for (let at = 0; at + 5 <= bytes.length; at += 1 + bytes.readInt32BE(at + 1))
    if (bytes[at] === 69) return true
  return false
}
