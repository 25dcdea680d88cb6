import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Identity } from '../../broker/tokens.ts'
import {
  RouterLoad,
  RouterPresencePayload,
  routerCreate,
  routerRemove,
  routerServed,
  routerToken,
  routerUnserved,
} from '../../schemas/actions/router.ts'
import { validator } from '../../schemas/validate.ts'
import { topics } from '../../schemas/topics.ts'
import { heldElsewhere, nextPresence } from '../devices/presence.ts'
import { HubError, conflict, forbidden, notFound } from '../errors.ts'
import { KeyedQueue } from '../keyed-queue.ts'
import { parseClientMessage } from '../client-message.ts'
import type { RequestContext, RequestPipeline } from '../requests/pipeline.ts'
import type { StatePublisher } from '../state-publisher.ts'
import type { Change } from '../store/port.ts'
import type { Store, Transaction } from '../store/store.ts'
import { type StageDoc, stageCollections } from '../stages/model.ts'
import { planDistribution, stageNeeds } from './distribution.ts'
import { type AssignmentDoc, type RouterDoc, routerCollections, routerState } from './model.ts'
import { routerProjection, routerTopics } from './projection.ts'

const validPresence = validator(RouterPresencePayload)
const validLoad = validator(RouterLoad)
const MAX_MESSAGE_BYTES = 8 * 1024

export interface RoutersServiceOptions {
  store: Store
  pipeline: RequestPipeline
  publisher: StatePublisher
  routerTokenTtlSeconds: number
  /** See markAllOffline. */
  routerReturnGraceSeconds: number
  log: Logger
  /** Whether this identity is the newest connection of its client id (not superseded by a takeover). */
  isCurrent(who: Identity): boolean
  /**
   * Whether this process distributes stages (services/cluster/coordination.ts): always for one
   * process; in a cluster only the coordinator. Default: always.
   */
  isCoordinator?: () => boolean
  /** In a cluster, this process's id: a router online through it carries it (`hub`). */
  processId?: string | undefined
}

/**
 * Routers (docs/protocol/actions.md, docs/protocol/README.md#routers-and-distribution): the registry and revocable router tokens (admins), router presence with
 * sessions and last wills, load reports, and the distribution of stages over routers. Distribution
 * runs after every commit that can change it (a stage's media types or position, a stage removed, a
 * router coming, going or changing capacity), one run at a time, planned by the pure
 * planDistribution over what the store holds: failover is just the next plan after a router is lost.
 */
export class RoutersService {
  readonly #options: RoutersServiceOptions
  readonly #queue: KeyedQueue
  #distribution: Promise<void> = Promise.resolve()
  #distributionPending = false
  /** Routers that were serving stages when the hub started and have not said anything since. */
  readonly #returning = new Set<string>()
  #returnTimer: NodeJS.Timeout | undefined
  #stopped = false

  constructor(options: RoutersServiceOptions) {
    this.#options = options
    this.#queue = new KeyedQueue((err, routerId) =>
      options.log.error({ err, routerId }, 'could not apply router presence'),
    )
  }

  async start(): Promise<void> {
    const { store, publisher } = this.#options
    for (const spec of Object.values(routerCollections)) await store.ensureCollection(spec)
    publisher.project(routerProjection(store))
    this.#registerActions()
    // in a cluster every process hears every commit (the change feed); distribute() acts on the coordinator only
    store.onChange((changes) => (changesDistribution(changes) ? this.distribute() : undefined))
  }

  /**
   * At start no router is connected here: every router is offline until it says online again, except,
   * in a cluster, those online through another live process (`isLive`). Its stages stay assigned to
   * it for the grace period: a router that reconnects in time keeps them with the same relay, so no
   * ov-box gets a new configuration because the hub restarted; after it, the stages of routers still
   * away move on.
   */
  async markAllOffline(isLive: (processId: string) => boolean = () => false): Promise<void> {
    const grace = this.#options.routerReturnGraceSeconds
    for await (const router of this.#options.store.scan<RouterDoc>(routerCollections.routers.name)) {
      if (router.online && router.hub !== undefined && isLive(router.hub)) continue
      if (grace > 0) this.#returning.add(router.id)
      // checked again in the transaction: it may have come online through a live process meanwhile
      const stale = (r: RouterDoc) => r.online && !(r.hub !== undefined && isLive(r.hub))
      if (router.online) await this.#update(router.id, (r) => (stale(r) ? offline(r) : null))
    }
    if (this.#returning.size > 0) {
      this.#returnTimer = setTimeout(() => {
        this.#returning.clear()
        void this.distribute() // never rejects: it logs a failed distribution
      }, grace * 1000)
      this.#returnTimer.unref()
    }
    await this.distribute()
  }

  /**
   * Before the hub closes its connections: their ends must not move stages away (the routers are
   * not lost, the hub is going; after the next start they get the grace period above).
   */
  stop(): void {
    this.#stopped = true
    clearTimeout(this.#returnTimer)
  }

  /**
   * The coordinator's part when process `processId` died (docs/cluster.md#leases-and-liveness): each
   * router still online through it is offline in the store, its retained presence says `lost`, and
   * its stages move on (the commit triggers the distribution, with no grace: it is not coming back
   * through that process). Returns how many.
   */
  async markLostOf(processId: string): Promise<number> {
    const { store, publisher } = this.#options
    const online = await store.find<RouterDoc>(routerCollections.routers.name, { hub: processId })
    let marked = 0
    for (const router of online) {
      this.#returning.delete(router.id)
      const lost = await this.#update(router.id, (r) =>
        r.online && r.hub === processId ? { ...offline(r), lastSeen: now() } : null,
      )
      if (!lost) continue
      marked++
      await publisher.publish(routerTopics.presence(lost.id), { state: 'lost', session: lost.session ?? 0 })
    }
    return marked
  }

  /**
   * Plans and applies the distribution once more; concurrent calls share the next run. Only the
   * coordinator distributes (a cluster's other processes leave it to it).
   */
  distribute(): Promise<void> {
    if (this.#distributionPending || this.#stopped) return this.#distribution
    if (this.#options.isCoordinator && !this.#options.isCoordinator()) return this.#distribution
    this.#distributionPending = true
    this.#distribution = this.#distribution.then(async () => {
      this.#distributionPending = false
      try {
        await this.#distributeOnce()
      } catch (err) {
        this.#options.log.error({ err }, 'stage distribution failed')
      }
    })
    return this.#distribution
  }

  /** The broker's hook for router publishes; returns a reason to refuse the message. */
  inspect(who: Identity, topic: string, payload: Buffer): string | undefined {
    const presence = topics.routerPresence.parse(topic)
    const load = presence ? null : topics.routerLoad.parse(topic)
    if (!presence && !load) return undefined
    if (payload.length > MAX_MESSAGE_BYTES) return `router message of ${payload.length} bytes is too large`
    const message = parseClientMessage(payload)
    const routerId = (presence ?? load)!.r
    if (load) {
      if (!validLoad(message)) return `load: ${validLoad.describe()}`
      this.#queue.run(routerId, () => this.#update(routerId, (r) => ({ ...r, load: message })))
      return undefined
    }
    if (!validPresence(message)) return `presence: ${validPresence.describe()}`
    if (message.state !== 'online' && !this.#options.isCurrent(who))
      return 'presence of a superseded connection'
    // back (or gone again): from now on its presence decides, as for any router
    this.#returning.delete(routerId)
    const { processId } = this.#options
    this.#queue.run(routerId, () =>
      this.#update(routerId, (router) => {
        if (heldElsewhere(router, processId, message)) return null
        const next = nextPresence({ online: router.online, session: router.session ?? -1 }, message)
        // the same session online again through this process: it reconnected here, this process holds it now
        if (!next && message.state === 'online' && processId && router.online && router.hub !== processId)
          return { ...router, hub: processId, lastSeen: now() }
        if (!next) return null
        if (message.state !== 'online') return { ...offline(router), ...next, lastSeen: now() }
        const { capabilities, capacity, position, url } = message
        const hub = processId ? { hub: processId } : {}
        return { ...router, ...next, capabilities, capacity, position, url, lastSeen: now(), ...hub }
      }),
    )
    return undefined
  }

  /** The broker closed a router's connection (socket loss, keepalive, DISCONNECT). */
  disconnected(who: Identity, superseded: boolean): void {
    if (who.role !== 'router' || superseded) return
    this.#queue.run(who.id, async () => {
      const ended = await this.#update(who.id, (r) =>
        r.online && !heldElsewhere(r, this.#options.processId) ? { ...offline(r), lastSeen: now() } : null,
      )
      // no will fires on DISCONNECT: say it for the router so its retained presence does not lie
      if (ended) {
        await this.#options.publisher.publish(routerTopics.presence(ended.id), {
          state: 'offline',
          session: ended.session ?? 0,
        })
      }
    })
  }

  #registerActions(): void {
    const { pipeline, routerTokenTtlSeconds } = this.#options
    const sign = (ctx: RequestContext, router: RouterDoc) => {
      const { token, exp } = ctx.sign(
        { sub: router.id, role: 'router', ver: router.tokenVersion },
        routerTokenTtlSeconds,
      )
      return { token, expiresAt: new Date(exp * 1000).toISOString() }
    }

    pipeline.register(routerCreate, async (ctx, { name }) => {
      requireAdmin(ctx.who)
      const router = ctx.tx.insert<RouterDoc>(routerCollections.routers.name, {
        id: randomBytes(12).toString('base64url'),
        tokenVersion: 1,
        name,
        online: false,
        capabilities: [],
        capacity: {},
        createdAt: now(),
      })
      return { router: routerState(router, []), ...sign(ctx, router) }
    })

    pipeline.register(routerToken, async (ctx, { routerId }) => {
      const router = await this.#registered(ctx.who, ctx.tx, routerId)
      // the hub closes connections of older generations when this commits (see hub.ts)
      const rotated = ctx.tx.replace(routerCollections.routers.name, {
        ...router,
        tokenVersion: router.tokenVersion + 1,
      })
      return { ...sign(ctx, rotated), generation: rotated.tokenVersion }
    })

    pipeline.register(routerRemove, async (ctx, { routerId }) => {
      const router = await this.#registered(ctx.who, ctx.tx, routerId)
      ctx.tx.delete(routerCollections.routers.name, router)
      // its assignments are released (and the stages reassigned) by the distribution run this commit triggers
      return {}
    })

    pipeline.register(routerServed, async (ctx, params) => {
      const { assignment, stage } = await this.#assignedTo(ctx.who, ctx.tx, params.stageId)
      if (params.ov && !assignment.kinds.includes('ov'))
        throw new HubError('invalid_request', `stage ${stage.id} has no ov audio: it needs no ov relay`)
      if (params.media && !assignment.kinds.includes('mediasoup'))
        throw new HubError(
          'invalid_request',
          `stage ${stage.id} uses no mediasoup media: it needs no media URL`,
        )
      ctx.tx.replace(routerCollections.assignments.name, {
        ...assignment,
        ...(params.ov ? { ov: params.ov } : {}),
        ...(params.media ? { media: params.media } : {}),
      })
      return {}
    })

    pipeline.register(routerUnserved, async (ctx, { stageId }) => {
      if (ctx.who.role !== 'router') throw forbidden('only routers say which stages they stopped serving')
      const assignment = await ctx.tx.get<AssignmentDoc>(routerCollections.assignments.name, stageId)
      if (assignment?.routerId === ctx.who.id) {
        throw conflict(
          `stage ${stageId} is still assigned to you: the hub releases it by clearing routers/${ctx.who.id}/assignments/${stageId}`,
        )
      }
      // what it told the stage's members went with its assignment: nothing is left to undo
      return {}
    })
  }

  async #distributeOnce(): Promise<void> {
    await this.#options.store.transaction(async (tx) => {
      const stages = (await tx.find<StageDoc>(stageCollections.stages.name)).sort((a, b) =>
        a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : 1,
      )
      const routers = await tx.find<RouterDoc>(routerCollections.routers.name)
      const assignments = await tx.find<AssignmentDoc>(routerCollections.assignments.name)
      const plan = planDistribution(stages, routers, assignments, this.#returning)
      for (const released of plan.release as AssignmentDoc[])
        tx.delete(routerCollections.assignments.name, released)
      const assignedAt = now()
      for (const { stageId, routerId, kinds } of plan.assign) {
        // a released assignment of this stage was deleted above: insert replaces it
        tx.insert<AssignmentDoc>(routerCollections.assignments.name, {
          id: stageId,
          stageId,
          routerId,
          kinds: [...kinds],
          assignedAt,
        })
      }
    })
  }

  /** Changes a stored router; `change` returns null for no change. */
  async #update(
    routerId: string,
    change: (router: RouterDoc) => RouterDoc | null,
  ): Promise<RouterDoc | null> {
    const { value } = await this.#options.store.transaction(async (tx) => {
      const router = await tx.get<RouterDoc>(routerCollections.routers.name, routerId)
      const next = router ? change(router) : null
      return next && tx.replace(routerCollections.routers.name, next)
    })
    return value
  }

  async #registered(who: Identity, tx: Transaction, routerId: string): Promise<RouterDoc> {
    requireAdmin(who)
    const router = await tx.get<RouterDoc>(routerCollections.routers.name, routerId)
    if (!router) throw notFound(`router ${routerId}`)
    return router
  }

  async #assignedTo(who: Identity, tx: Transaction, stageId: string) {
    if (who.role !== 'router') throw forbidden('only the router a stage is assigned to may answer for it')
    const assignment = await tx.get<AssignmentDoc>(routerCollections.assignments.name, stageId)
    if (!assignment || assignment.routerId !== who.id) {
      throw forbidden(`stage ${stageId} is not assigned to router ${who.id}`)
    }
    const stage = await tx.get<StageDoc>(stageCollections.stages.name, stageId)
    if (!stage) throw notFound(`stage ${stageId}`)
    return { assignment, stage }
  }
}

/** Whether a commit can change the distribution: stage media or position, stages and routers coming and going. */
export function changesDistribution(changes: readonly Change[]): boolean {
  return changes.some(({ collection, before, after }) => {
    if (collection === stageCollections.stages.name) {
      const key = (doc: unknown) => {
        const stage = doc as StageDoc | null
        return stage ? JSON.stringify([stageNeeds(stage), stage.preferredPosition]) : null
      }
      return key(before) !== key(after)
    }
    if (collection === routerCollections.routers.name) {
      const key = (doc: unknown) => {
        const router = doc as RouterDoc | null
        return router
          ? JSON.stringify([router.online, router.capabilities, router.capacity, router.position])
          : null
      }
      return key(before) !== key(after)
    }
    return false
  })
}

function requireAdmin(who: Identity): void {
  if (who.role !== 'admin') throw forbidden('routers are managed by hub operators (admin tokens)')
}

const now = () => new Date().toISOString()

/** A router offline: online through no process. */
function offline(router: RouterDoc): RouterDoc {
  const { hub: _hub, ...rest } = router
  return { ...rest, online: false }
}
