/**
 * A throwaway self-signed certificate for the lab's TLS endpoints, made with the `openssl` CLI
 * when first asked for and kept for the life of the process. Test-only: its key never leaves the
 * machine and clients connect to it with `ssl: { rejectUnauthorized: false }` or with `cert` as CA.
 *
 * @module
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A PEM certificate and its PEM private key. */
export interface TlsMaterial {
  readonly cert: string
  readonly key: string
}

let cached: TlsMaterial | undefined

/**
 * Returns the process's lab certificate (CN `postgres-ha-lab`, valid for localhost and
 * 127.0.0.1..127.0.0.9), generating it on first use.
 *
 * @example
 * ```ts
 * const { key, cert } = labTlsCertificate()
 * ```
 */
export function labTlsCertificate(): TlsMaterial {
  cached ??= tlsCertificateFor([
    'DNS:localhost',
    ...Array.from({ length: 9 }, (_, i) => `IP:127.0.0.${i + 1}`),
  ])
  return cached
}

/**
 * A fresh self-signed certificate (CN `postgres-ha-lab`) valid only for `altNames`
 * (`DNS:name`, `IP:address`), for tests of whose name a certificate is checked against. A client
 * trusts it by giving `cert` as its `ca`.
 *
 * @example
 * ```ts
 * const only = tlsCertificateFor(['IP:127.0.0.2'])
 * ```
 */
export function tlsCertificateFor(altNames: readonly string[]): TlsMaterial {
  const dir = mkdtempSync(join(tmpdir(), 'postgres-ha-tls-'))
  try {
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
          '-days',
          '2',
          '-subj',
          '/CN=postgres-ha-lab',
          '-addext',
          `subjectAltName=${altNames.join(',')}`,
        ],
        { stdio: 'ignore' },
      )
    } catch (e) {
      throw new Error(
        'The lab needs the openssl CLI to make a test TLS certificate for IAM endpoints; install openssl.',
        {
          cause: e,
        },
      )
    }
    return Object.freeze({
      cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
      key: readFileSync(join(dir, 'key.pem'), 'utf8'),
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
