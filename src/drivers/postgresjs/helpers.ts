/**
 * The query-making part of an `sql` function, shared by the client and its reserved connections:
 * tagged templates, `sql(...)` helpers, `unsafe`, `file`, `json`, `array`, `typed`, `notify`.
 *
 * @module
 */
import { readFile } from 'node:fs/promises'
import type postgres from 'postgres'
import { callerOrigin, type HaQuery, type PgQuery, type QueryHandler, queryClasses } from './query.ts'

type Options = Record<string, unknown>

/** The callable part of an `sql` and its query helpers, before client-level members are added. */
export type SqlFunction = ((first: unknown, ...rest: unknown[]) => unknown) & Record<string, unknown>

/**
 * Makes an `sql` function whose queries run through `handler`. Helpers (identifiers, builders,
 * parameters) come from `base`, a postgres.js instance on the same options that never connects:
 * their classes are module-level, so they work inside every per-host instance.
 */
export function makeSqlFunction(
  base: postgres.Sql,
  handler: QueryHandler,
  canceller: (q: PgQuery) => unknown,
): SqlFunction {
  const { HaQuery } = queryClasses(base)
  const baseFn = base as unknown as (...args: unknown[]) => unknown

  function sql(strings: unknown, ...args: unknown[]): unknown {
    if (!strings || !Array.isArray((strings as { raw?: unknown }).raw)) return baseFn(strings, ...args)
    const q = new HaQuery(strings as readonly string[], args, handler, canceller)
    q.callerOrigin = callerOrigin(q.strings, true, handler.debug, sql)
    return q
  }

  function unsafe(text: string, args?: unknown, options?: Options): HaQuery {
    ;[args, options] = argsAndOptions(args, options)
    const list = args as unknown[]
    const q = new HaQuery([text], list, handler, canceller, {
      prepare: false,
      ...options,
      simple: 'simple' in options ? options.simple : list.length === 0,
    })
    if (handler.debug) q.callerOrigin = callerOrigin(q.strings, false, true, unsafe)
    return q
  }

  function file(path: string | URL, args?: unknown, options?: Options): HaQuery {
    ;[args, options] = argsAndOptions(args, options)
    const list = args as unknown[]
    const fileHandler: QueryHandler = (q) => {
      readFile(path, 'utf8').then(
        (text) => {
          q.strings = [text]
          handler(q)
        },
        (error) => q.reject(error),
      )
    }
    fileHandler.debug = handler.debug
    return new HaQuery([], list, fileHandler, canceller, {
      ...options,
      simple: 'simple' in options ? options.simple : list.length === 0,
    })
  }

  Object.assign(sql, {
    types: base.typed,
    typed: base.typed,
    unsafe,
    file,
    json: base.json,
    array: base.array,
    async notify(channel: string, payload: unknown) {
      return await (sql(notifyStrings, channel, String(payload)) as HaQuery)
    },
  })
  return sql as unknown as SqlFunction
}

/** postgres.js's `(text, args?, options?)` where `(text, options)` is allowed too. */
function argsAndOptions(args: unknown, options: Options | undefined): [unknown[], Options] {
  if (options === undefined && args !== undefined && !Array.isArray(args)) return [[], args as Options]
  return [(args as unknown[] | undefined) ?? [], options ?? {}]
}

const notifyStrings = Object.assign(['select pg_notify(', ', ', ')'], {
  raw: ['select pg_notify(', ', ', ')'],
}) as unknown as TemplateStringsArray
