import type { Logger } from 'pino'
import { type Coordination, leaseCoordination } from './coordination.ts'
import { Lease } from './lease.ts'
import type { ClusterLink } from './link.ts'
import { Liveness } from './liveness.ts'

/** What a dead process leaves behind that the coordinator marks lost (devices, routers). */
export interface LostProcessHealer {
  markLostOf(processId: string): Promise<number>
}

export interface ClusterMembershipOptions {
  link: ClusterLink
  log: Logger
  /** The deployment declared this process dead while it was alive: its clients must start over. */
  onDeclaredDead?: () => void
  /** The live processes changed. */
  onLiveChange?: (live: readonly string[]) => void
  /** Liveness and coordinator lease ttl; default 5 s. */
  ttlMs?: number
  /** Renewal and check interval; default 1 s. */
  intervalMs?: number
}

/** How a cluster member sees the deployment, for hub.status. */
export interface ClusterView {
  processId: string
  coordinator: boolean
  /** The live processes, this one included. */
  processes: string[]
}

/**
 * This process as a member of a deployment (docs/cluster.md#leases-and-liveness): its liveness key,
 * the coordinator lease it competes for, and the coordination the once-per-deployment work follows.
 * The coordinator heals lost processes: every second it declares dead the listed processes whose
 * liveness key expired and has their devices and routers marked lost.
 */
export class ClusterMembership {
  readonly lease: Lease
  readonly liveness: Liveness
  readonly coordination: Coordination
  readonly #options: ClusterMembershipOptions

  constructor(options: ClusterMembershipOptions) {
    const { link, log, ttlMs = 5000, intervalMs = 1000 } = options
    this.#options = options
    this.lease = new Lease({
      redis: link.commands,
      key: link.key('lease:coordinator'),
      owner: link.processId,
      ttlMs,
      intervalMs,
      log: log.child({ component: 'coordinator' }),
    })
    this.liveness = new Liveness({
      link,
      log: log.child({ component: 'liveness' }),
      ttlMs,
      intervalMs,
      onDeclaredDead: options.onDeclaredDead,
      onLiveChange: options.onLiveChange,
    })
    this.coordination = leaseCoordination(this.lease, log.child({ component: 'coordinator' }))
  }

  get processId(): string {
    return this.#options.link.processId
  }

  /**
   * Whether a process is alive now, for marking offline at start what belongs to no live process.
   * This process's own id never is: whatever carries it was left by an earlier run under the same id.
   */
  async liveOthers(): Promise<(processId: string) => boolean> {
    const live = new Set(await this.liveness.liveProcesses())
    live.delete(this.processId)
    return (processId) => live.has(processId)
  }

  /** The coordinator marks lost what each dead process left online, checked every interval. */
  heal(healers: readonly LostProcessHealer[], intervalMs = 1000): void {
    const log = this.#options.log.child({ component: 'coordinator' })
    this.coordination.every('healing lost processes', intervalMs, async () => {
      for (const { id, lastRenewedAt } of await this.liveness.declareDead()) {
        const started = Date.now()
        let marked = 0
        for (const healer of healers) marked += await healer.markLostOf(id)
        await this.liveness.healed(id)
        const done = Date.now()
        log.warn(
          {
            lostProcess: id,
            marked,
            healMs: done - started,
            sinceLastRenewalMs: done - lastRenewedAt,
            term: this.lease.term,
          },
          `process ${id} stopped renewing its liveness: marked ${marked} devices and routers lost, ${((done - lastRenewedAt) / 1000).toFixed(1)} s after its last renewal`,
        )
      }
    })
  }

  /**
   * Throws, saying why, when this process should take no clients (readiness): Redis unreachable, or
   * its liveness not renewed within the ttl, so the others are declaring it dead.
   */
  checkReady(): void {
    const { commands } = this.#options.link
    if (commands.status !== 'ready')
      throw new Error(
        `Redis (REDIS_URL) is unreachable (${commands.status}): this process cannot renew its liveness`,
      )
    if (!this.liveness.current)
      throw new Error(
        `this process could not renew its liveness in Redis (REDIS_URL) for ${this.liveness.secondsSinceRenewal} s: the others take over its clients`,
      )
  }

  view(): ClusterView {
    return {
      processId: this.processId,
      coordinator: this.coordination.isCoordinator(),
      processes: [...this.liveness.live],
    }
  }

  /** Lists this process and starts competing for the coordinator lease. */
  async start(): Promise<void> {
    await this.liveness.start()
    await this.lease.start()
  }

  /** A clean stop: the lease is released and the liveness key deleted, so others take over at once. */
  async stop(): Promise<void> {
    this.coordination.stop()
    await this.lease.stop({ release: true })
    await this.liveness.stop()
  }
}
