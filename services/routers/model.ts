import type { AssignmentState, RouterState } from '../../schemas/actions/router.ts'
import { topics } from '../../schemas/topics.ts'
import { collections, type RouterDoc as RegisteredRouter } from '../collections.ts'
import type { CollectionSpec, StoredDoc } from '../store/port.ts'

/** A stored router: registration (token generation) plus what it announced and reported. */
export interface RouterDoc extends RegisteredRouter, Omit<RouterState, 'id' | 'version' | 'assignments'> {
  /** The newest presence session seen (docs/protocol/README.md#presence). */
  session?: number
  createdAt: string
}

/** A stage assigned to a router; the document id is the stage id (one router per stage). */
export interface AssignmentDoc extends StoredDoc, AssignmentState {
  routerId: string
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
