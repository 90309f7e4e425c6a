/**
 * A bounded HTTP GET of a JSON document, for sources of topology that speak HTTP (Patroni's REST
 * API). Plain `fetch` where it suffices; a custom CA, a client certificate or an unverified server
 * need each runtime's own way: `node:https` on Node, `fetch`'s `tls` option on Bun,
 * `Deno.createHttpClient` on Deno. Never holds the process open beyond the request's timeout.
 *
 * @module
 */
import { startTimer, stopTimer } from './timers.ts'

/** TLS settings of an HTTPS request, in PEM. */
export interface HttpTlsOptions {
  /** Certificate authority the server's certificate must chain to (default: the system's). */
  readonly ca?: string
  /** Client certificate, for servers that verify clients. */
  readonly cert?: string
  /** The client certificate's private key. */
  readonly key?: string
  /** Verify the server's certificate (default true). */
  readonly rejectUnauthorized?: boolean
}

/** What {@link httpGetJson} sends and how long it waits. */
export interface HttpGetOptions {
  readonly timeoutMs: number
  readonly headers?: Readonly<Record<string, string>>
  readonly tls?: HttpTlsOptions
}

/** A response: its status and, when it parsed, its JSON body. */
export interface HttpJsonResponse {
  readonly status: number
  readonly body: unknown
}

interface DenoHttp {
  createHttpClient(options: { caCerts?: string[]; cert?: string; key?: string }): { close(): void }
}

/**
 * GETs `url` and parses the body as JSON; rejects on a network error, a timeout or a body that is
 * not JSON, never on an HTTP status (the caller judges it).
 *
 * @example
 * ```ts
 * const { status, body } = await httpGetJson('http://db1:8008/cluster', { timeoutMs: 1000 })
 * ```
 */
export async function httpGetJson(url: string, options: HttpGetOptions): Promise<HttpJsonResponse> {
  const tls = options.tls
  const custom = tls && (tls.ca || tls.cert || tls.key || tls.rejectUnauthorized === false)
  const g = globalThis as { Bun?: unknown; Deno?: DenoHttp & { version?: unknown } }
  if (custom && url.startsWith('https:') && !g.Bun && !g.Deno?.version) return nodeHttpsGet(url, options)
  const abort = new AbortController()
  const timer = startTimer(
    () => abort.abort(new Error(`GET ${url} timed out after ${options.timeoutMs} ms`)),
    options.timeoutMs,
  )
  let denoClient: { close(): void } | undefined
  try {
    const init: Record<string, unknown> = { headers: options.headers, signal: abort.signal }
    if (custom && g.Bun) init['tls'] = { ...tls }
    if (custom && g.Deno?.version) {
      if (tls.rejectUnauthorized === false) {
        throw new Error(
          'Deno cannot skip server certificate verification per request; give the server CA instead',
        )
      }
      denoClient = g.Deno.createHttpClient({
        ...(tls.ca ? { caCerts: [tls.ca] } : {}),
        ...(tls.cert ? { cert: tls.cert } : {}),
        ...(tls.key ? { key: tls.key } : {}),
      })
      init['client'] = denoClient
    }
    const res = await fetch(url, init as RequestInit)
    const text = await res.text()
    return { status: res.status, body: JSON.parse(text) }
  } catch (error) {
    throw abort.signal.aborted ? abort.signal.reason : error
  } finally {
    stopTimer(timer)
    denoClient?.close()
  }
}

async function nodeHttpsGet(url: string, options: HttpGetOptions): Promise<HttpJsonResponse> {
  const https = await import('node:https')
  const tls = options.tls ?? {}
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      {
        headers: options.headers,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        rejectUnauthorized: tls.rejectUnauthorized ?? true,
        agent: false,
        timeout: options.timeoutMs,
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (text += d))
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) })
          } catch (error) {
            reject(error)
          }
        })
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${options.timeoutMs} ms`)))
    req.on('error', reject)
  })
}
