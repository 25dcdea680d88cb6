import type { RouterState } from '../../schemas/actions/router.ts'
import { type AssignmentDoc, collections, type RouterDoc as RegisteredRouter } from '../collections.ts'
import type { CollectionSpec } from '../store/port.ts'

export type { AssignmentDoc }

/** A stored router: registration (token generation) plus what it announced and reported. */
export interface RouterDoc extends RegisteredRouter, Omit<RouterState, 'id' | 'version' | 'assignments'> {
  /** The newest presence session seen (docs/protocol/README.md#presence). */
  session?: number
  createdAt: string
}

export const routerCollections = {
  routers: collections.routers,
  assignments: collections.assignments,
} satisfies Record<string, CollectionSpec>

export function routerState(router: RouterDoc, assignments: readonly AssignmentDoc[]): RouterState {
  const {
    tokenVersion: _tokenVersion,
    createdAt: _createdAt,
    session: _session,
    hub: _hub,
    ...visible
  } = router
  return { ...visible, assignments: assignments.map((a) => a.stageId).sort() }
}
