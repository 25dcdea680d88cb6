import type { RouterKind, RouterLoad, RouterState } from '../../schemas/actions/router.ts'
import { topics } from '../../schemas/topics.ts'
import { collections, type RouterDoc as RegisteredRouter } from '../collections.ts'
import type { CollectionSpec, StoredDoc } from '../store/port.ts'

/** A stored router: registration (token generation) plus what it announced and reported. */
export interface RouterDoc extends RegisteredRouter {
  name: string
  online: boolean
  /** The newest presence session seen (docs/protocol/README.md#presence). */
  session?: number
  lastSeen?: string
  capabilities: RouterKind[]
  capacity: Partial<Record<RouterKind, number>>
  position?: { lat: number; lng: number }
  url?: string
  load?: RouterLoad
  createdAt: string
}

/** A stage assigned to a router; the document id is the stage id (one router per stage). */
export interface AssignmentDoc extends StoredDoc {
  stageId: string
  routerId: string
  kinds: RouterKind[]
  assignedAt: string
}

export const routerCollections = {
  routers: collections.routers,
  assignments: { name: 'router_assignments', indexes: [['routerId']] },
} satisfies Record<string, CollectionSpec>

/** The router topics' builders, named as the router service calls them; the catalogue knows their shape. */
export const routerTopics = {
  document: topics.router.build,
  assignment: topics.assignment.build,
  presence: topics.routerPresence.build,
}

export function routerState(router: RouterDoc, assignments: readonly AssignmentDoc[]): RouterState {
  const { tokenVersion: _tokenVersion, createdAt: _createdAt, session: _session, ...visible } = router
  return { ...visible, assignments: assignments.map((a) => a.stageId).sort() }
}
