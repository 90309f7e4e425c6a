/**
 * What an RDS or Aurora host name says about itself: its kind of endpoint, region and the
 * instance-endpoint pattern of its cluster. Same shapes as the AWS Advanced Wrapper drivers.
 *
 * @module
 */

/** The kind of endpoint a host name denotes. */
export type RdsEndpointKind =
  | 'cluster-writer'
  | 'cluster-reader'
  | 'cluster-custom'
  | 'proxy'
  | 'limitless'
  | 'instance'
  | 'ip'
  | 'other'

/** The parts of an RDS host name. */
export interface RdsHostParts {
  readonly kind: RdsEndpointKind
  /** First label: the cluster, instance or proxy name. */
  readonly name?: string
  /** The `abc123.us-east-1.rds.amazonaws.com` part shared by every endpoint of the account and region. */
  readonly domain?: string
  readonly region?: string
}

// One pattern per partition; the `dns` group tells cluster, reader, custom, proxy and shard-group endpoints apart.
const DNS = '(?<dns>proxy-|cluster-|cluster-ro-|cluster-custom-|shardgrp-)?'
const PATTERNS = [
  new RegExp(
    `^(?<name>[^.]+)\\.${DNS}(?<domain>[a-zA-Z0-9]+\\.(?<region>[a-zA-Z0-9-]+)\\.rds\\.amazonaws\\.com)$`,
    'i',
  ),
  new RegExp(
    `^(?<name>[^.]+)\\.${DNS}(?<domain>[a-zA-Z0-9]+\\.rds\\.(?<region>[a-zA-Z0-9-]+)\\.amazonaws\\.com\\.cn)$`,
    'i',
  ),
  new RegExp(
    `^(?<name>[^.]+)\\.${DNS}(?<domain>[a-zA-Z0-9]+\\.(?<region>[a-zA-Z0-9-]+)\\.rds\\.amazonaws\\.com\\.cn)$`,
    'i',
  ),
  new RegExp(
    `^(?<name>[^.]+)\\.${DNS}(?<domain>[a-zA-Z0-9]+\\.rds\\.(?<region>[a-zA-Z0-9-]+)\\.(amazonaws\\.com|c2s\\.ic\\.gov|sc2s\\.sgov\\.gov))$`,
    'i',
  ),
]
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/
const KIND_BY_DNS: Record<string, RdsEndpointKind> = {
  'cluster-': 'cluster-writer',
  'cluster-ro-': 'cluster-reader',
  'cluster-custom-': 'cluster-custom',
  'proxy-': 'proxy',
  'shardgrp-': 'limitless',
}

/**
 * Parses a host name into the parts RDS encodes in it.
 *
 * @example
 * ```ts
 * parseRdsHost('app.cluster-abc123.us-east-1.rds.amazonaws.com')
 * // { kind: 'cluster-writer', name: 'app', domain: 'abc123.us-east-1.rds.amazonaws.com', region: 'us-east-1' }
 * ```
 */
export function parseRdsHost(host: string): RdsHostParts {
  if (IPV4.test(host) || host.includes(':')) return { kind: 'ip' }
  for (const pattern of PATTERNS) {
    const g = pattern.exec(host)?.groups
    if (!g) continue
    const kind = g.dns ? KIND_BY_DNS[g.dns.toLowerCase()]! : 'instance'
    return { kind, name: g.name, domain: g.domain, region: g.region }
  }
  return { kind: 'other' }
}

/** The AWS region in an RDS host name, if it has one. */
export function rdsRegion(host: string): string | undefined {
  return parseRdsHost(host).region
}

/**
 * The instance-endpoint pattern of the cluster an RDS host belongs to (`?.abc123.us-east-1.rds.amazonaws.com`),
 * or `undefined` for a host that is not an RDS name.
 */
export function rdsInstanceHostPattern(host: string): string | undefined {
  const parts = parseRdsHost(host)
  return parts.domain ? `?.${parts.domain}` : undefined
}
