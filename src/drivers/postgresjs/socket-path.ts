/**
 * Where a Unix-domain socket host connects: for the connect itself and for the `path` postgres.js
 * names in its error messages.
 *
 * @module
 */

const SOCKET_FILE = /\/\.s\.PGSQL\.\d+$/

/**
 * The Unix-domain socket file of a host that is a directory (`/var/run/postgresql`: PostgreSQL's
 * `.s.PGSQL.<port>` in it) or the socket file itself (postgres.js's `path` option); `undefined`
 * for a TCP host.
 */
export function socketPath(host: string, port: number): string | undefined {
  if (!host.startsWith('/')) return undefined
  return SOCKET_FILE.test(host) ? host : `${host.replace(/\/+$/, '')}/.s.PGSQL.${port}`
}
