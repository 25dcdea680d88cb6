import type { HubMetrics } from '../../broker/metrics.ts'
import type { ActionResult } from '../../schemas/action.ts'
import { hubStatus } from '../../schemas/actions/hub.ts'
import { forbidden } from '../errors.ts'
import type { RequestPipeline } from '../requests/pipeline.ts'

type Connections = ActionResult<typeof hubStatus>['connections']
const roles = ['user', 'device', 'router', 'admin'] as const

/** Open connections by role, as the broker counts them in its `stagehub_connections` gauge. */
export async function connectionsByRole(metrics: HubMetrics): Promise<Connections> {
  const counts: Connections = { user: 0, device: 0, router: 0, admin: 0, total: 0 }
  for (const { labels, value } of (await metrics.connections.get()).values) {
    const role = roles.find((r) => r === labels.role)
    if (!role) continue
    counts[role] += value
    counts.total += value
  }
  return counts
}

/** `hub.status` for admin-role tokens, from the broker's live connection counts (its metrics). */
export function registerHubStatus(
  pipeline: RequestPipeline,
  hub: {
    metrics: HubMetrics
    version: string
    store: ActionResult<typeof hubStatus>['store']
    /** In a cluster, this process's view of the deployment. */
    cluster?: (() => ActionResult<typeof hubStatus>['cluster']) | undefined
  },
): void {
  const startedAt = new Date()
  pipeline.register(hubStatus, async (ctx) => {
    if (ctx.who.role !== 'admin') throw forbidden('the hub status is for hub operators (admin-role tokens)')
    return {
      version: hub.version,
      startedAt: startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 100) / 10,
      store: hub.store,
      connections: await connectionsByRole(hub.metrics),
      ...(hub.cluster ? { cluster: hub.cluster() } : {}),
    }
  })
}
