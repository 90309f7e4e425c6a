/**
 * Reader failover: a client that targets readers moves to another live reader, or to the writer
 * when no reader is left.
 *
 * @module
 */
import { type HostAddress, hostKey, sameHost } from '../../core/host.ts'
import type { PluginServices } from '../../core/plugin.ts'

/** Another reader than `failed` that is not marked down, else the writer. */
export function pickOtherReader(
  services: PluginServices,
  failed: HostAddress | undefined,
): HostAddress | undefined {
  const readers = (services.topology()?.readers ?? []).filter(
    (h) => h.role === 'reader' && !sameHost(h, failed) && !services.isHostDown(h),
  )
  if (readers.length > 0) {
    const pick = readers[Math.floor(Math.random() * readers.length)]!
    return { host: pick.host, port: pick.port }
  }
  const writer = services.currentWriter()
  return writer && hostKey(writer) !== (failed && hostKey(failed)) ? writer : undefined
}
