/**
 * Which router serves which stage (docs/protocol/README.md#routers-and-distribution), as pure functions over plain data. Capacity is counted
 * from the assignments themselves, never from counters a router reports, so it cannot drift.
 */
import type { RouterKind } from '../../schemas/actions/router.ts'

export interface GeoPoint {
  lat: number
  lng: number
}

export interface StageNeed {
  id: string
  audioType: 'mediasoup' | 'ov' | 'none'
  videoType: 'mediasoup' | 'none'
  preferredPosition?: GeoPoint
}

export interface RouterOffer {
  id: string
  online: boolean
  capabilities: readonly RouterKind[]
  capacity: Partial<Record<RouterKind, number>>
  position?: GeoPoint
}

export interface Assignment {
  stageId: string
  routerId: string
  kinds: readonly RouterKind[]
}

/** The router kinds a stage needs: an ov relay for ov audio, mediasoup for WebRTC audio or video. */
export function stageNeeds(stage: Pick<StageNeed, 'audioType' | 'videoType'>): RouterKind[] {
  const kinds: RouterKind[] = []
  if (stage.audioType === 'mediasoup' || stage.videoType === 'mediasoup') kinds.push('mediasoup')
  if (stage.audioType === 'ov') kinds.push('ov')
  return kinds
}

const EARTH_RADIUS_KM = 6371

/** Great-circle distance (haversine) in kilometres. */
export function greatCircleKm(a: GeoPoint, b: GeoPoint): number {
  const rad = Math.PI / 180
  const dLat = (b.lat - a.lat) * rad
  const dLng = (b.lng - a.lng) * rad
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLng / 2) ** 2
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)))
}

/** Stages assigned to each router, per kind. */
export function usage(assignments: readonly Assignment[]): Map<string, Map<RouterKind, number>> {
  const used = new Map<string, Map<RouterKind, number>>()
  for (const { routerId, kinds } of assignments) {
    const byKind = used.get(routerId) ?? new Map<RouterKind, number>()
    for (const kind of kinds) byKind.set(kind, (byKind.get(kind) ?? 0) + 1)
    used.set(routerId, byKind)
  }
  return used
}

/** Whether a router can serve these kinds: online, capable, and below its capacity for each. */
export function canServe(
  router: RouterOffer,
  kinds: readonly RouterKind[],
  used: ReadonlyMap<RouterKind, number> | undefined,
): boolean {
  return (
    router.online &&
    kinds.every(
      (kind) => router.capabilities.includes(kind) && (used?.get(kind) ?? 0) < (router.capacity[kind] ?? 0),
    )
  )
}

/**
 * The router for a stage: the nearest (great-circle distance to the stage's preferred position) that
 * can serve it; a stage without a position, or routers at equal distance, go to the router with the
 * most free capacity, then by id, so the choice is deterministic. Undefined when none can.
 */
export function chooseRouter(
  stage: StageNeed,
  routers: readonly RouterOffer[],
  used: ReadonlyMap<string, ReadonlyMap<RouterKind, number>>,
): RouterOffer | undefined {
  const kinds = stageNeeds(stage)
  if (kinds.length === 0) return undefined
  // a router that did not say where it is comes after every router that did
  const distance = (router: RouterOffer) => {
    if (!stage.preferredPosition) return 0
    return router.position ? greatCircleKm(stage.preferredPosition, router.position) : Infinity
  }
  const free = (router: RouterOffer) =>
    Math.min(...kinds.map((kind) => (router.capacity[kind] ?? 0) - (used.get(router.id)?.get(kind) ?? 0)))
  let best: RouterOffer | undefined
  for (const router of routers) {
    if (!canServe(router, kinds, used.get(router.id))) continue
    if (!best) {
      best = router
      continue
    }
    const byDistance = distance(router) === distance(best) ? 0 : distance(router) - distance(best)
    const byFree = free(best) - free(router)
    if (byDistance < 0 || (byDistance === 0 && (byFree < 0 || (byFree === 0 && router.id < best.id))))
      best = router
  }
  return best
}

export interface DistributionPlan {
  /** Assignments to withdraw: stage gone, no longer needing the router's kinds, or router lost. */
  release: Assignment[]
  /** New assignments. */
  assign: Assignment[]
  /** Stages that need a router and have none: no router can take them now. */
  waiting: string[]
}

/**
 * From the current stages, routers and assignments to the assignments there should be: an assignment
 * stays while its stage still needs exactly those kinds and its router is online and capable (a stage
 * is never moved only because a nearer router appeared: moving interrupts the performance), or is
 * offline but `returning` (after a hub restart, given time to reconnect before its stages move);
 * everything else is released, and each stage without a router gets one, in the order given (oldest
 * first). A returning router takes no new stage until it is online.
 */
export function planDistribution(
  stages: readonly StageNeed[],
  routers: readonly RouterOffer[],
  assignments: readonly Assignment[],
  returning: ReadonlySet<string> = new Set(),
): DistributionPlan {
  const stageById = new Map(stages.map((s) => [s.id, s]))
  const routerById = new Map(routers.map((r) => [r.id, r]))
  const kept: Assignment[] = []
  const release: Assignment[] = []
  for (const assignment of assignments) {
    const stage = stageById.get(assignment.stageId)
    const router = routerById.get(assignment.routerId)
    const needs = stage ? stageNeeds(stage) : []
    const same =
      needs.length === assignment.kinds.length && needs.every((kind) => assignment.kinds.includes(kind))
    const fits =
      router !== undefined &&
      (router.online || returning.has(router.id)) &&
      needs.every((kind) => router.capabilities.includes(kind))
    if (stage && same && fits) kept.push(assignment)
    else release.push(assignment)
  }
  const used = usage(kept) as Map<string, Map<RouterKind, number>>
  const served = new Set(kept.map((a) => a.stageId))
  const assign: Assignment[] = []
  const waiting: string[] = []
  for (const stage of stages) {
    const kinds = stageNeeds(stage)
    if (kinds.length === 0 || served.has(stage.id)) continue
    const router = chooseRouter(stage, routers, used)
    if (!router) {
      waiting.push(stage.id)
      continue
    }
    const assignment = { stageId: stage.id, routerId: router.id, kinds }
    assign.push(assignment)
    const byKind = used.get(router.id) ?? new Map<RouterKind, number>()
    for (const kind of kinds) byKind.set(kind, (byKind.get(kind) ?? 0) + 1)
    used.set(router.id, byKind)
  }
  return { release, assign, waiting }
}
