import type { AssignmentState } from '../../schemas/actions/router.ts'
import { topics } from '../../schemas/topics.ts'
import type { Projection, ProjectedTopic } from '../state-publisher.ts'
import type { Store } from '../store/store.ts'
import { type AssignmentDoc, type RouterDoc, routerCollections as c, routerState } from './model.ts'

/** The router family's topics, named as this family uses them (shapes: the catalogue). */
export const routerTopics = {
  document: topics.router.build,
  assignment: topics.assignment.build,
  presence: topics.routerPresence.build,
}

export function assignmentState(doc: AssignmentDoc): AssignmentState {
  return { stageId: doc.stageId, kinds: doc.kinds, assignedAt: doc.assignedAt }
}

/**
 * Router documents (with the stages assigned to each) and assignments, projected from the routers
 * service's collections. A router's presence is its own to publish; a removed router's is cleared.
 */
export function routerProjection(store: Store): Projection {
  const document = (routerId: string): ProjectedTopic => ({
    topic: routerTopics.document(routerId),
    render: async () => {
      const [router, assignments] = await Promise.all([
        store.get<RouterDoc>(c.routers.name, routerId),
        store.find<AssignmentDoc>(c.assignments.name, { routerId }),
      ])
      return router && routerState(router, assignments)
    },
  })
  const assignment = ({ routerId, stageId }: AssignmentDoc): ProjectedTopic => ({
    topic: routerTopics.assignment(routerId, stageId),
    render: async () => {
      const doc = await store.get<AssignmentDoc>(c.assignments.name, stageId)
      return doc?.routerId === routerId ? assignmentState(doc) : null
    },
  })
  const presence = (routerId: string): ProjectedTopic => ({
    topic: routerTopics.presence(routerId),
    render: async () => ((await store.get(c.routers.name, routerId)) ? undefined : null),
  })

  return {
    name: 'routers',
    changed(changes) {
      const topics: ProjectedTopic[] = []
      for (const { collection, id, before, after } of changes) {
        if (collection === c.routers.name) {
          topics.push(document(id))
          if (!after) topics.push(presence(id))
        } else if (collection === c.assignments.name) {
          const [was, is] = [before as AssignmentDoc | null, after as AssignmentDoc | null]
          for (const doc of [was, is]) if (doc) topics.push(assignment(doc))
          // a router's document lists its stages: only a new, ended or moved assignment changes it
          if (was?.routerId !== is?.routerId)
            for (const doc of [was, is]) if (doc) topics.push(document(doc.routerId))
        }
      }
      return topics
    },
    async *topics() {
      const assignments = await store.find<AssignmentDoc>(c.assignments.name)
      for await (const router of store.scan<RouterDoc>(c.routers.name)) {
        const mine = assignments.filter((a) => a.routerId === router.id)
        yield { topic: routerTopics.document(router.id), value: routerState(router, mine) }
        for (const a of mine)
          yield { topic: routerTopics.assignment(router.id, a.stageId), value: assignmentState(a) }
      }
    },
  }
}
